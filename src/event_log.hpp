// EventLog: the lab's events.jsonl, one JSON object per line, in the order things happened.
//
//   EventLog log(outdir / "events.jsonl");
//   log.emit("router_added", {{"name", "home"}, {"nat", "home"}});
//   // {"opid":0,"timestamp":"2026-11-25T07:01:02.123456789Z","kind":"router_added",...}
//
// Each line starts with `opid` (0, 1, 2, ... per lab), `timestamp` (RFC 3339, UTC, nanoseconds)
// and `kind`, then the payload's keys in their given order. Every line is written and flushed
// before emit() returns: a test that fails (or a process that is killed) right after an
// operation still leaves its event on disk, and a reader tailing the file (`patchbay serve`)
// sees only whole lines. Thread-safe: commands exit on the nodes' threads.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>

namespace patchbay::internal {

class EventLog {
 public:
  using Payload = nlohmann::ordered_json;

  // A log that writes nothing (the lab has no output directory of the user's).
  EventLog() = default;
  // Creates (truncates) `path`. Throws Error(kInvalidArgument) naming the path if it cannot.
  explicit EventLog(const std::filesystem::path& path);
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  bool enabled() const { return file_ != nullptr; }
  // Appends one event; returns its opid (0 when disabled). `payload` must be an object.
  std::uint64_t emit(std::string_view kind, const Payload& payload = Payload::object());
  // opid of the last event (-1: none yet).
  std::int64_t last_opid() const;

 private:
  mutable std::mutex mu_;
  std::FILE* file_ = nullptr;
  std::uint64_t next_opid_ = 0;
};

// "2026-11-25T07:01:02.123456789Z" for the current time.
std::string rfc3339_now();

}  // namespace patchbay::internal
