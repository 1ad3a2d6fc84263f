// Maps a request to a response. Pure request -> decision logic with no sockets, so every path
// check is in one place and the session only has to carry bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "patchbay_serve/server.hpp"

namespace patchbay::serve {

struct Reply {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Stream events.jsonl of one run from min_opid on.
struct SseEvents {
  std::filesystem::path events_file;
  std::int64_t min_opid = 0;
};

// Stream "data: update" whenever the run list changes.
struct SseRuns {};

using Routed = std::variant<Reply, SseEvents, SseRuns>;

struct RequestView {
  std::string_view method;  // "GET", "HEAD", ...
  std::string_view target;  // raw request-target
  std::optional<std::string_view> host;
  std::optional<std::string_view> range;
  std::optional<std::string_view> last_event_id;
};

class Router {
 public:
  // `loopback_only`: whether Host headers are checked (the server is bound to loopback).
  Router(ServerOptions options, bool loopback_only);

  Routed route(const RequestView& req) const;

  const ServerOptions& options() const { return options_; }

  static Reply json_error(unsigned status, std::string_view message);

 private:
  Routed route_api(const RequestView& req, const std::vector<std::string>& segs,
                   std::string_view query) const;
  Routed route_run(const RequestView& req, const std::filesystem::path& run_dir,
                   std::string_view endpoint, const std::vector<std::string>& rest,
                   std::string_view query) const;
  Reply route_static(const std::vector<std::string>& segs) const;

  ServerOptions options_;
  bool check_host_;
};

// Serves a file (or part of it) with Range support; `after` is a byte offset to start at.
Reply file_reply(const std::filesystem::path& path, std::optional<std::string_view> range,
                 std::uint64_t after);

}  // namespace patchbay::serve
