#include "event_tail.hpp"

#include <sys/stat.h>

#include <fstream>

#include <nlohmann/json.hpp>

namespace patchbay::serve {

namespace fs = std::filesystem;

std::string format_sse_event(const EventLine& e) {
  std::string out;
  if (e.opid) out += "id: " + std::to_string(*e.opid) + "\n";
  out += "data: " + e.json + "\n\n";
  return out;
}

EventFileTail::EventFileTail(fs::path file, std::int64_t min_opid)
    : file_(std::move(file)), min_opid_(min_opid) {}

std::vector<EventLine> EventFileTail::poll() {
  std::vector<EventLine> out;
  struct stat st {};
  if (::stat(file_.c_str(), &st) != 0) return out;
  const auto size = static_cast<std::uint64_t>(st.st_size);
  const auto inode = static_cast<std::uint64_t>(st.st_ino);
  if ((inode_ != 0 && inode != inode_) || size < offset_) {
    offset_ = 0;
    min_opid_ = 0;
    replaced_ = true;
  }
  inode_ = inode;
  if (size == offset_) return out;

  std::ifstream in(file_, std::ios::binary);
  if (!in) return out;
  in.seekg(static_cast<std::streamoff>(offset_));
  std::string chunk(static_cast<std::size_t>(size - offset_), '\0');
  in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  chunk.resize(static_cast<std::size_t>(in.gcount()));

  const auto last_nl = chunk.rfind('\n');
  if (last_nl == std::string::npos) return out;  // only a half-written line so far
  offset_ += last_nl + 1;

  std::size_t start = 0;
  while (start <= last_nl) {
    const auto nl = chunk.find('\n', start);
    std::string line = chunk.substr(start, nl - start);
    start = nl + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    // A corrupt line is dropped rather than forwarded: clients JSON.parse every message.
    if (!j.is_object()) continue;
    EventLine ev;
    const auto it = j.find("opid");
    if (it != j.end() && it->is_number_integer()) ev.opid = it->get<std::int64_t>();
    if (ev.opid && *ev.opid < min_opid_) continue;
    ev.json = std::move(line);
    out.push_back(std::move(ev));
  }
  return out;
}

std::vector<EventLine> read_events(const fs::path& file, std::int64_t min_opid) {
  EventFileTail tail(file, min_opid);
  return tail.poll();
}

}  // namespace patchbay::serve
