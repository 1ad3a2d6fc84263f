#include "file_serving.hpp"

#include <charconv>
#include <fstream>
#include <stdexcept>

#include "log_listing.hpp"

namespace patchbay::serve {

namespace fs = std::filesystem;

namespace {

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::uint64_t v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

ParsedRange parse_range(std::string_view header, std::uint64_t size) {
  header = trim(header);
  constexpr std::string_view kPrefix = "bytes=";
  if (header.substr(0, kPrefix.size()) != kPrefix) return {};
  const auto spec = trim(header.substr(kPrefix.size()));
  if (spec.find(',') != std::string_view::npos) return {};
  const auto dash = spec.find('-');
  if (dash == std::string_view::npos) return {};
  const auto a = trim(spec.substr(0, dash));
  const auto b = trim(spec.substr(dash + 1));
  if (a.empty()) {
    const auto n = parse_u64(b);
    if (!n) return {};
    if (*n == 0) return {RangeResult::kUnsatisfiable, {}};
    const auto len = std::min(*n, size);
    if (len == 0) return {RangeResult::kUnsatisfiable, {}};
    return {RangeResult::kSatisfiable, {size - len, len}};
  }
  const auto first = parse_u64(a);
  if (!first) return {};
  std::uint64_t last = size == 0 ? 0 : size - 1;
  if (!b.empty()) {
    const auto l = parse_u64(b);
    if (!l || *l < *first) return {};
    last = std::min(*l, last);
  }
  if (*first >= size) return {RangeResult::kUnsatisfiable, {}};
  return {RangeResult::kSatisfiable, {*first, last - *first + 1}};
}

std::string read_file_range(const fs::path& path, std::uint64_t first, std::uint64_t length) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  in.seekg(static_cast<std::streamoff>(first));
  std::string buf(static_cast<std::size_t>(length), '\0');
  in.read(buf.data(), static_cast<std::streamsize>(length));
  // The file may have shrunk between stat and read; send what is there.
  buf.resize(static_cast<std::size_t>(in.gcount()));
  return buf;
}

std::string content_type_for_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string sample(kSampleBytes, '\0');
  in.read(sample.data(), static_cast<std::streamsize>(sample.size()));
  sample.resize(static_cast<std::size_t>(in.gcount()));
  const auto name = path.filename().string();
  if (looks_like_pcap(name, sample) || !is_valid_utf8(sample, /*allow_truncated_tail=*/true)) {
    return "application/octet-stream";
  }
  return "text/plain; charset=utf-8";
}

std::string content_type_for_asset(const fs::path& path) {
  const auto ext = path.extension().string();
  if (ext == ".html" || ext == ".htm") return "text/html; charset=utf-8";
  if (ext == ".js" || ext == ".mjs") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".json" || ext == ".map") return "application/json";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".png") return "image/png";
  if (ext == ".ico") return "image/x-icon";
  if (ext == ".woff2") return "font/woff2";
  if (ext == ".woff") return "font/woff";
  if (ext == ".txt") return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

}  // namespace patchbay::serve
