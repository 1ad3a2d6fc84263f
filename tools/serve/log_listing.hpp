// The per-run log listing of formats.md 10.3, plus pcap captures and files in sub-directories.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace patchbay::serve {

struct LogEntry {
  std::string node;  // "client" for device.client.*, "_run" for files not named after a node
  std::string kind;  // lab_events, tracing_jsonl, qlog, jsonl, json, ansi_text, text, pcap
  std::string path;  // relative to the run dir, '/'-separated
};

// Bytes sampled from the start of each file to decide its kind.
inline constexpr std::size_t kSampleBytes = 16 * 1024;

bool is_valid_utf8(std::string_view s, bool allow_truncated_tail);
bool looks_like_pcap(std::string_view name, std::string_view sample);

// Kind of a file from its name and sample; "" if it is excluded (not UTF-8 and not a capture).
std::string classify_log(std::string_view file_name, std::string_view sample);

std::string node_of(std::string_view file_name);

// Lists regular non-empty files in the run dir and its sub-directories (symlinks are skipped,
// so a listing never names a file outside the run).
std::vector<LogEntry> list_logs(const std::filesystem::path& run_dir);

nlohmann::json logs_to_json(const std::vector<LogEntry>& logs);

}  // namespace patchbay::serve
