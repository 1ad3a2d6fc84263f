#include "router.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

#include "event_tail.hpp"
#include "file_serving.hpp"
#include "log_listing.hpp"
#include "path_safety.hpp"
#include "run_discovery.hpp"

namespace patchbay::serve {

namespace fs = std::filesystem;

namespace {

// Files are sent from memory; beyond this a client has to ask for a Range.
constexpr std::uint64_t kMaxWholeFile = 256ull * 1024 * 1024;

constexpr std::string_view kPlaceholderPage = R"(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>patchbay</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>patchbay</h1>
<p>The devtools UI is not built, so only the JSON API is available.
Build the UI and pass its directory with <code>--ui DIR</code>.</p>
<p>Run list: <a href="/api/runs">/api/runs</a></p>
</body></html>
)";

template <typename T>
std::optional<T> parse_int(std::string_view s) {
  T v{};
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

bool is_run_endpoint(std::string_view s) {
  return s == "state" || s == "events" || s == "events.json" || s == "logs" || s == "files";
}

// Decodes every segment and joins them with '/'. Segments may themselves contain an encoded
// '/', which safe_components() later checks like any other separator.
std::optional<std::string> decode_join(const std::vector<std::string>& segs, std::size_t from,
                                       std::size_t to) {
  std::string out;
  for (std::size_t i = from; i < to; ++i) {
    auto d = percent_decode(segs[i]);
    if (!d) return std::nullopt;
    if (i != from) out += '/';
    out += *d;
  }
  return out;
}

bool host_is_loopback(std::string_view host) {
  // Strip the port: "[::1]:7421", "127.0.0.1:7421", "localhost".
  std::string_view name = host;
  if (!name.empty() && name.front() == '[') {
    const auto close = name.find(']');
    if (close == std::string_view::npos) return false;
    name = name.substr(0, close + 1);
  } else if (const auto colon = name.rfind(':'); colon != std::string_view::npos) {
    name = name.substr(0, colon);
  }
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower == "localhost" || lower == "127.0.0.1" || lower == "[::1]" ||
         lower.ends_with(".localhost");
}

std::string read_whole(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Reply Router::json_error(unsigned status, std::string_view message) {
  Reply r;
  r.status = status;
  r.body = nlohmann::json{{"error", message}}.dump();
  return r;
}

Router::Router(ServerOptions options, bool loopback_only)
    : options_(std::move(options)), check_host_(options_.check_host && loopback_only) {}

Reply file_reply(const fs::path& path, std::optional<std::string_view> range, std::uint64_t after) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Router::json_error(404, "file not found");
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  Reply r;
  r.content_type = content_type_for_file(path);
  r.headers.emplace_back("Accept-Ranges", "bytes");
  // Logs grow while a lab runs; a cached copy would hide new lines.
  r.headers.emplace_back("Cache-Control", "no-cache");
  std::uint64_t first = std::min(after, size);
  std::uint64_t length = size - first;
  if (range) {
    const auto parsed = parse_range(*range, size);
    if (parsed.result == RangeResult::kUnsatisfiable) {
      Reply e = Router::json_error(416, "range not satisfiable");
      e.headers.emplace_back("Content-Range", "bytes */" + std::to_string(size));
      return e;
    }
    if (parsed.result == RangeResult::kSatisfiable) {
      first = parsed.range.first;
      length = parsed.range.length;
      r.status = 206;
      r.headers.emplace_back("Content-Range", "bytes " + std::to_string(first) + "-" +
                                                  std::to_string(first + length - 1) + "/" +
                                                  std::to_string(size));
    }
  }
  if (length > kMaxWholeFile) {
    return Router::json_error(413, "file too large to send at once; request a Range");
  }
  try {
    r.body = read_file_range(path, first, length);
  } catch (const std::exception&) {
    return Router::json_error(404, "file not readable");
  }
  return r;
}

Routed Router::route(const RequestView& req) const {
  if (check_host_ && req.host && !host_is_loopback(*req.host)) {
    return json_error(403, "forbidden host");
  }
  if (req.method != "GET" && req.method != "HEAD") {
    Reply r = json_error(405, "method not allowed");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  if (req.target.empty() || req.target.front() != '/') return json_error(400, "bad target");
  const Target t = split_target(req.target);
  if (!t.raw_segments.empty() && t.raw_segments[0] == "api") {
    return route_api(req, t.raw_segments, t.query);
  }
  return route_static(t.raw_segments);
}

Routed Router::route_api(const RequestView& req, const std::vector<std::string>& segs,
                         std::string_view query) const {
  const fs::path& base = options_.base_dir;
  if (segs.size() >= 2 && segs[1] == "runs") {
    if (segs.size() == 2) {
      Reply r;
      r.body = runs_to_json(discover_runs(base)).dump();
      return r;
    }
    if (segs.size() == 3 && segs[2] == "subscribe") return SseRuns{};
    // Run names contain '/': clients send them as one %2F-encoded segment, but a plain
    // "a/b/state" is accepted too. Try the shortest name first; runs never nest, so at most
    // one split names a run.
    bool matched_endpoint = false;
    for (std::size_t k = 1; k <= 3 && 2 + k < segs.size(); ++k) {
      const auto& endpoint = segs[2 + k];
      if (!is_run_endpoint(endpoint)) continue;
      matched_endpoint = true;
      const auto name = decode_join(segs, 2, 2 + k);
      if (!name) return json_error(403, "forbidden");
      const auto loc = locate_run(base, *name);
      if (loc.result == RunLookup::kForbidden) return json_error(403, "forbidden");
      if (loc.result == RunLookup::kNotFound) continue;
      const std::vector<std::string> rest(segs.begin() + static_cast<std::ptrdiff_t>(3 + k),
                                          segs.end());
      return route_run(req, loc.dir, endpoint, rest, query);
    }
    if (matched_endpoint) return json_error(404, "run not found");
    // A lone encoded segment that does not name a run, or a traversal attempt without endpoint.
    if (segs.size() >= 3) {
      const auto name = decode_join(segs, 2, segs.size());
      if (!name || !safe_components(*name)) return json_error(403, "forbidden");
    }
    return json_error(404, "not found");
  }
  if (segs.size() == 4 && segs[1] == "invocations" && segs[3] == "combined-results") {
    const auto name = percent_decode(segs[2]);
    const auto parts = name ? safe_components(*name) : std::nullopt;
    if (!parts || parts->size() != 1) return json_error(403, "forbidden");
    const auto resolved = resolve_within(base, {(*parts)[0], "combined-results.json"});
    if (resolved.result == Resolve::kForbidden) return json_error(403, "forbidden");
    Reply r;
    if (resolved.result != Resolve::kOk || !fs::is_regular_file(resolved.path)) {
      r.status = 404;
      r.body = R"({"runs":[]})";
      return r;
    }
    r.body = read_whole(resolved.path);
    return r;
  }
  return json_error(404, "not found");
}

Routed Router::route_run(const RequestView& req, const fs::path& run_dir, std::string_view endpoint,
                         const std::vector<std::string>& rest, std::string_view query) const {
  if (endpoint == "state" || endpoint == "events" || endpoint == "events.json") {
    if (!rest.empty()) return json_error(404, "not found");
    if (endpoint == "state") {
      const auto resolved = resolve_within(run_dir, {"state.json"});
      if (resolved.result == Resolve::kForbidden) return json_error(403, "forbidden");
      if (resolved.result != Resolve::kOk) return json_error(404, "state.json not found");
      Reply r = file_reply(resolved.path, std::nullopt, 0);
      if (r.status == 404) return json_error(404, "state.json not found");
      r.content_type = "application/json";
      return r;
    }
    // "after=N" means opid >= N (upstream's opid > N skipped lab_created at after=0); a
    // reconnecting EventSource sends Last-Event-ID = the last opid it saw.
    std::int64_t min_opid = 0;
    if (const auto after = query_param(query, "after")) {
      const auto v = parse_int<std::int64_t>(*after);
      if (!v) return json_error(400, "invalid after: " + *after);
      min_opid = *v;
    }
    if (req.last_event_id) {
      if (const auto v = parse_int<std::int64_t>(*req.last_event_id)) {
        min_opid = std::max(min_opid, *v + 1);
      }
    }
    const auto resolved = resolve_within(run_dir, {"events.jsonl"});
    if (resolved.result == Resolve::kForbidden) return json_error(403, "forbidden");
    if (resolved.result != Resolve::kOk) return json_error(404, "events.jsonl not found");
    if (endpoint == "events") return SseEvents{resolved.path, min_opid};
    std::string body = "[";
    bool first = true;
    for (const auto& ev : read_events(resolved.path, min_opid)) {
      if (!first) body += ',';
      first = false;
      body += ev.json;
    }
    body += ']';
    Reply r;
    r.body = std::move(body);
    return r;
  }
  if (endpoint == "logs" && rest.empty()) {
    Reply r;
    r.body = logs_to_json(list_logs(run_dir)).dump();
    return r;
  }
  // logs/{path} and files/{path}
  if (rest.empty()) return json_error(404, "not found");
  const auto decoded = decode_join(rest, 0, rest.size());
  const auto parts = decoded ? safe_components(*decoded) : std::nullopt;
  if (!parts) return json_error(403, "forbidden");
  const auto resolved = resolve_within(run_dir, *parts);
  if (resolved.result == Resolve::kForbidden) return json_error(403, "forbidden");
  if (resolved.result != Resolve::kOk) return json_error(404, "file not found");
  std::uint64_t after = 0;
  if (endpoint == "logs") {
    if (const auto a = query_param(query, "after")) {
      const auto v = parse_int<std::uint64_t>(*a);
      if (!v) return json_error(400, "invalid after: " + *a);
      after = *v;
    }
  }
  return file_reply(resolved.path, req.range, after);
}

Reply Router::route_static(const std::vector<std::string>& segs) const {
  const auto decoded = decode_join(segs, 0, segs.size());
  if (!decoded) return json_error(403, "forbidden");
  const bool is_root = decoded->empty() || *decoded == "index.html";
  if (!options_.ui_dir) {
    if (!is_root) return json_error(404, "not found");
    Reply r;
    r.content_type = "text/html; charset=utf-8";
    r.body = std::string(kPlaceholderPage);
    return r;
  }
  std::vector<std::string> parts{"index.html"};
  if (!decoded->empty()) {
    const auto p = safe_components(*decoded);
    if (!p) return json_error(403, "forbidden");
    parts = *p;
  }
  auto resolved = resolve_within(*options_.ui_dir, parts);
  if (resolved.result == Resolve::kForbidden) return json_error(403, "forbidden");
  std::error_code ec;
  if (resolved.result != Resolve::kOk || !fs::is_regular_file(resolved.path, ec)) {
    // Client-side routes ("/run/x") get the app; a missing asset ("/app.js") stays a 404 so a
    // broken build is visible instead of parsing HTML as JavaScript.
    if (parts.back().find('.') != std::string::npos) return json_error(404, "not found");
    resolved = resolve_within(*options_.ui_dir, {"index.html"});
    if (resolved.result != Resolve::kOk) return json_error(404, "index.html not found");
  }
  Reply r;
  r.content_type = content_type_for_asset(resolved.path);
  r.body = read_whole(resolved.path);
  return r;
}

}  // namespace patchbay::serve
