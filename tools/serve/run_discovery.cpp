#include "run_discovery.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <system_error>

#include "path_safety.hpp"

namespace patchbay::serve {

namespace fs = std::filesystem;

namespace {

constexpr int kMaxDepth = 3;

std::optional<std::string> string_field(const nlohmann::json& j, const char* key) {
  if (j.is_object() && j.contains(key) && j[key].is_string()) return j[key].get<std::string>();
  return std::nullopt;
}

// Reads label and status from state.json. A missing or half-written file (the writer renames
// atomically, but upstream-era writers may not) leaves both null.
void read_state(RunInfo& run) {
  // Same containment rule as the state endpoint: a state.json symlinked out of the run must not
  // leak its label into the run list.
  const auto resolved = resolve_within(run.dir, {"state.json"});
  if (resolved.result != Resolve::kOk) return;
  std::ifstream in(resolved.path, std::ios::binary);
  if (!in) return;
  std::stringstream ss;
  ss << in.rdbuf();
  const auto j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  run.label = string_field(j, "label");
  run.status = string_field(j, "status");
}

void stat_events(RunInfo& run) {
  struct stat st {};
  if (::stat((run.dir / "events.jsonl").c_str(), &st) == 0) {
    run.events_inode = static_cast<std::uint64_t>(st.st_ino);
    run.events_size = static_cast<std::uintmax_t>(st.st_size);
  }
}

bool has_events(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::symlink_status(dir / "events.jsonl", ec));
}

void scan(const fs::path& base, const fs::path& dir, int depth, std::vector<RunInfo>& out) {
  if (depth > kMaxDepth) return;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return;
  for (const auto& entry : it) {
    std::error_code sec;
    // symlink_status: `latest -> sim-...` and links leaving the base are not followed.
    if (!fs::is_directory(entry.symlink_status(sec))) continue;
    const fs::path& child = entry.path();
    if (has_events(child)) {
      RunInfo run;
      run.dir = child;
      run.name = fs::relative(child, base, sec).generic_string();
      if (depth > 1) run.invocation = run.name.substr(0, run.name.find('/'));
      out.push_back(std::move(run));
    } else {
      scan(base, child, depth + 1, out);
    }
  }
}

}  // namespace

std::vector<RunInfo> discover_runs(const fs::path& base) {
  std::vector<RunInfo> runs;
  std::error_code ec;
  const fs::path root = fs::canonical(base, ec);
  if (ec) return runs;
  if (has_events(root)) {
    RunInfo run;
    run.dir = root;
    run.name = root.filename().string();
    runs.push_back(std::move(run));
  } else {
    scan(root, root, 1, runs);
  }
  for (auto& run : runs) {
    read_state(run);
    stat_events(run);
  }
  std::sort(runs.begin(), runs.end(),
            [](const RunInfo& a, const RunInfo& b) { return a.name > b.name; });
  return runs;
}

nlohmann::json runs_to_json(const std::vector<RunInfo>& runs) {
  auto arr = nlohmann::json::array();
  auto opt = [](const std::optional<std::string>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
  };
  for (const auto& run : runs) {
    arr.push_back({{"name", run.name},
                   {"label", opt(run.label)},
                   {"status", opt(run.status)},
                   {"invocation", opt(run.invocation)}});
  }
  return arr;
}

bool run_list_changed(const std::vector<RunInfo>& before, const std::vector<RunInfo>& after) {
  if (before.size() != after.size()) return true;
  for (std::size_t i = 0; i < before.size(); ++i) {
    const auto& a = before[i];
    const auto& b = after[i];
    if (a.name != b.name || a.status != b.status || a.label != b.label ||
        a.events_inode != b.events_inode || b.events_size < a.events_size) {
      return true;
    }
  }
  return false;
}

RunLocation locate_run(const fs::path& base, const std::string& name) {
  std::error_code ec;
  const fs::path root = fs::canonical(base, ec);
  if (ec) return {RunLookup::kNotFound, {}};
  if (has_events(root)) {
    // Single-run mode: nothing below the base is a run.
    if (name == "." || name == root.filename().string()) return {RunLookup::kOk, root};
    if (!safe_components(name)) return {RunLookup::kForbidden, {}};
    return {RunLookup::kNotFound, {}};
  }
  const auto parts = safe_components(name);
  if (!parts) return {RunLookup::kForbidden, {}};
  if (parts->size() > static_cast<std::size_t>(kMaxDepth)) return {RunLookup::kNotFound, {}};
  const auto resolved = resolve_within(root, *parts);
  if (resolved.result == Resolve::kForbidden) return {RunLookup::kForbidden, {}};
  if (resolved.result != Resolve::kOk || !fs::is_directory(resolved.path, ec) ||
      !has_events(resolved.path)) {
    return {RunLookup::kNotFound, {}};
  }
  return {RunLookup::kOk, resolved.path};
}

}  // namespace patchbay::serve
