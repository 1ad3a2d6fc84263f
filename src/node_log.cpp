#include "node_log.hpp"

#include <time.h>

#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/null_sink.h>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>

namespace patchbay::internal {
namespace {

const char* level_name(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "TRACE";
    case spdlog::level::debug:
      return "DEBUG";
    case spdlog::level::info:
      return "INFO";
    case spdlog::level::warn:
      return "WARN";
    default:
      return "ERROR";  // error and critical: the five levels of the format
  }
}

// The colours of the text format (formats.md §4.4).
const char* level_colour(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "\x1b[35m";
    case spdlog::level::debug:
      return "\x1b[34m";
    case spdlog::level::info:
      return "\x1b[32m";
    case spdlog::level::warn:
      return "\x1b[33m";
    default:
      return "\x1b[31m";
  }
}

// "2026-11-25T07:01:02.123456Z": microseconds, as the format wants.
std::string timestamp(spdlog::log_clock::time_point t) {
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const time_t secs = static_cast<time_t>(us / 1'000'000);
  tm utc{};
  ::gmtime_r(&secs, &utc);
  char buf[40];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(buf + n, sizeof buf - n, ".%06ldZ", static_cast<long>(us % 1'000'000));
  return buf;
}

// Writes both files of one node; opened on the first line, flushed after each.
class NodeFileSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  NodeFileSink(std::filesystem::path jsonl, std::filesystem::path text)
      : jsonl_path_(std::move(jsonl)), text_path_(std::move(text)) {}
  ~NodeFileSink() override {
    if (jsonl_) std::fclose(jsonl_);
    if (text_) std::fclose(text_);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (!jsonl_) {
      jsonl_ = std::fopen(jsonl_path_.c_str(), "ae");
      text_ = std::fopen(text_path_.c_str(), "ae");
      if (!jsonl_ || !text_) return;  // logging must never fail the caller
    }
    const std::string_view message(msg.payload.data(), msg.payload.size());
    const std::string_view target(msg.logger_name.data(), msg.logger_name.size());
    const std::string ts = timestamp(msg.time);
    // nlohmann::json keeps keys sorted, as the format asks.
    nlohmann::json line = {{"fields", {{"message", message}}},
                           {"level", level_name(msg.level)},
                           {"target", target},
                           {"timestamp", ts}};
    const std::string json =
        line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    std::fwrite(json.data(), 1, json.size(), jsonl_);
    std::fflush(jsonl_);
    std::fprintf(text_, "\x1b[2m%s\x1b[0m %s%5s\x1b[0m \x1b[2m%.*s:\x1b[0m %.*s\n", ts.c_str(),
                 level_colour(msg.level), level_name(msg.level), static_cast<int>(target.size()),
                 target.data(), static_cast<int>(message.size()), message.data());
    std::fflush(text_);
  }
  void flush_() override {}

 private:
  std::filesystem::path jsonl_path_;
  std::filesystem::path text_path_;
  std::FILE* jsonl_ = nullptr;
  std::FILE* text_ = nullptr;
};

}  // namespace

spdlog::level::level_enum node_log_level_from_env() {
  const char* env = std::getenv("PATCHBAY_LOG");
  if (env == nullptr || *env == '\0') return spdlog::level::info;
  const spdlog::level::level_enum level = spdlog::level::from_str(env);
  // from_str answers "off" for anything it does not know; only an explicit "off" means off.
  if (level == spdlog::level::off && std::string_view(env) != "off") return spdlog::level::info;
  return level;
}

NodeLogFiles NodeLogFiles::create(const std::filesystem::path& outdir, const std::string& kind,
                                  const std::string& name) {
  NodeLogFiles files;
  if (!outdir.empty()) {
    const std::string stem = kind + "." + name;
    files.sink_ = std::make_shared<NodeFileSink>(outdir / (stem + ".tracing.jsonl"),
                                                 outdir / (stem + ".tracing.log"));
  }
  return files;
}

std::shared_ptr<spdlog::logger> NodeLogFiles::logger(const std::string& target) const {
  std::shared_ptr<spdlog::sinks::sink> sink = sink_;
  if (!sink) sink = std::make_shared<spdlog::sinks::null_sink_mt>();
  auto log = std::make_shared<spdlog::logger>(target, std::move(sink));
  log->set_level(sink_ ? node_log_level_from_env() : spdlog::level::off);
  return log;
}

}  // namespace patchbay::internal
