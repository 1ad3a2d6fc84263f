// Reading events.jsonl for the events endpoints: complete lines only, filtered by opid, and a
// tail that picks up appended lines and notices when the file is replaced.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace patchbay::serve {

struct EventLine {
  std::optional<std::int64_t> opid;  // absent for records without a numeric opid
  std::string json;                  // the line as written, without the newline
};

// One SSE message: "id: <opid>" (so browsers resume with Last-Event-ID) and "data: <json>".
std::string format_sse_event(const EventLine& e);

// Follows one events.jsonl from the start. Each poll() returns the complete lines appended since
// the previous poll whose opid is >= min_opid; a trailing line without '\n' is held back until
// the writer finishes it. The read offset is the only state, so history and live tail come from
// one sequence of reads and no event can fall between them.
class EventFileTail {
 public:
  EventFileTail(std::filesystem::path file, std::int64_t min_opid);

  std::vector<EventLine> poll();

  // True after poll() noticed a replaced file (new inode or shorter than what was read) and
  // restarted from its beginning with min_opid 0: a re-run's opids start again at 0.
  bool replaced() const { return replaced_; }

 private:
  std::filesystem::path file_;
  std::int64_t min_opid_;
  std::uint64_t offset_ = 0;
  std::uint64_t inode_ = 0;
  bool replaced_ = false;
};

// All complete events with opid >= min_opid (for events.json).
std::vector<EventLine> read_events(const std::filesystem::path& file, std::int64_t min_opid);

}  // namespace patchbay::serve
