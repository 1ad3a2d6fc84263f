#include "event_log.hpp"

#include <time.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "patchbay/error.hpp"

namespace patchbay::internal {

std::string rfc3339_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  tm utc{};
  ::gmtime_r(&ts.tv_sec, &utc);
  char buf[64];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(buf + n, sizeof buf - n, ".%09ldZ", static_cast<long>(ts.tv_nsec));
  return buf;
}

EventLog::EventLog(const std::filesystem::path& path) {
  file_ = std::fopen(path.c_str(), "we");
  if (file_ == nullptr) {
    const int err = errno;
    throw Error(ErrorKind::kInvalidArgument, path.string(),
                "cannot create the event log '" + path.string() + "'", err);
  }
}

EventLog::~EventLog() {
  if (file_ != nullptr) std::fclose(file_);
}

std::uint64_t EventLog::emit(std::string_view kind, const Payload& payload) {
  if (file_ == nullptr) return 0;
  std::lock_guard lock(mu_);
  const std::uint64_t opid = next_opid_++;
  Payload line = Payload::object();
  line["opid"] = opid;
  line["timestamp"] = rfc3339_now();
  line["kind"] = kind;
  for (const auto& [key, value] : payload.items()) line[key] = value;
  const std::string text =
      line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  // One fwrite + fflush: one write(2), so a concurrent reader never sees half a line unless the
  // disk is full (a reader must skip an incomplete last line anyway).
  std::fwrite(text.data(), 1, text.size(), file_);
  std::fflush(file_);
  return opid;
}

std::int64_t EventLog::last_opid() const {
  std::lock_guard lock(mu_);
  return static_cast<std::int64_t>(next_opid_) - 1;
}

}  // namespace patchbay::internal
