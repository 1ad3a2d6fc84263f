// Finding lab run directories under the served base (formats.md 10.1) and detecting changes to
// that list for /api/runs/subscribe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace patchbay::serve {

struct RunInfo {
  std::string
      name;  // path relative to the base, '/'-separated; the base dir name in single-run mode
  std::optional<std::string> label;
  std::optional<std::string> status;
  std::optional<std::string> invocation;
  std::filesystem::path dir;
  // Identity of events.jsonl: a new inode, or a file that shrank, means the run was replaced
  // (a test re-ran into the same directory).
  std::uint64_t events_inode = 0;
  std::uintmax_t events_size = 0;
};

// Scans `base`: the base itself if it holds events.jsonl, else directories up to 3 levels deep
// (symlinks not followed, runs not descended into). Sorted by name, descending. Unreadable
// directories are skipped rather than failing the whole listing.
std::vector<RunInfo> discover_runs(const std::filesystem::path& base);

nlohmann::json runs_to_json(const std::vector<RunInfo>& runs);

// True if a subscriber should be told: a run appeared or vanished, a status or label changed,
// or a run's events.jsonl was replaced.
bool run_list_changed(const std::vector<RunInfo>& before, const std::vector<RunInfo>& after);

enum class RunLookup { kOk, kForbidden, kNotFound };

struct RunLocation {
  RunLookup result;
  std::filesystem::path dir;  // canonical run directory when kOk
};

// Maps a decoded run name from a URL to its directory. Accepts any directory under the base
// that holds events.jsonl (so a run created since the last rescan is reachable at once), and in
// single-run mode the base's own name or ".". Names with "..", absolute names and directories
// that resolve outside the base are kForbidden.
RunLocation locate_run(const std::filesystem::path& base, const std::string& name);

}  // namespace patchbay::serve
