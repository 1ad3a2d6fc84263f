#include "log_listing.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <system_error>

namespace patchbay::serve {

namespace fs = std::filesystem;

namespace {

// Sub-directories deeper than this are not listed; run dirs hold certs/<id>/ and files/<id>/.
constexpr int kMaxListDepth = 4;

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::vector<std::string_view> lines_of(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (start < s.size()) {
    auto nl = s.find('\n', start);
    if (nl == std::string_view::npos) nl = s.size();
    auto line = s.substr(start, nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.push_back(line);
    start = nl + 1;
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

nlohmann::json parse(std::string_view s) {
  return nlohmann::json::parse(s.begin(), s.end(), nullptr, /*allow_exceptions=*/false);
}

bool is_qlog_header(const nlohmann::json& j) {
  if (!j.is_object()) return false;
  const auto fs_it = j.find("file_schema");
  const auto sf_it = j.find("serialization_format");
  return fs_it != j.end() && fs_it->is_string() &&
         fs_it->get<std::string>().find("qlog:file") != std::string::npos && sf_it != j.end() &&
         sf_it->is_string() && sf_it->get<std::string>().find("JSON-SEQ") != std::string::npos;
}

int kind_rank(std::string_view kind) {
  static constexpr std::array<std::string_view, 8> kOrder = {
      "tracing_jsonl", "lab_events", "jsonl", "json", "qlog", "ansi_text", "text", "pcap"};
  for (std::size_t i = 0; i < kOrder.size(); ++i) {
    if (kOrder[i] == kind) return static_cast<int>(i);
  }
  return static_cast<int>(kOrder.size());
}

std::string read_sample(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::string buf(kSampleBytes, '\0');
  in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
  buf.resize(static_cast<std::size_t>(in.gcount()));
  return buf;
}

void walk(const fs::path& run_dir, const fs::path& dir, int depth, std::vector<LogEntry>& out) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return;
  for (const auto& entry : it) {
    std::error_code sec;
    const auto st = entry.symlink_status(sec);
    if (fs::is_directory(st)) {
      if (depth < kMaxListDepth) walk(run_dir, entry.path(), depth + 1, out);
      continue;
    }
    if (!fs::is_regular_file(st) || entry.file_size(sec) == 0 || sec) continue;
    const auto name = entry.path().filename().string();
    auto kind = classify_log(name, read_sample(entry.path()));
    if (kind.empty()) continue;
    out.push_back({node_of(name), std::move(kind),
                   fs::relative(entry.path(), run_dir, sec).generic_string()});
  }
}

}  // namespace

bool is_valid_utf8(std::string_view s, bool allow_truncated_tail) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    if (c < 0x80) {
      len = 1;
    } else if ((c & 0xE0) == 0xC0 && c >= 0xC2) {
      len = 2;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
    } else if ((c & 0xF8) == 0xF0 && c <= 0xF4) {
      len = 4;
    } else {
      return false;
    }
    if (i + len > s.size()) return allow_truncated_tail;  // a sample may cut a character
    for (std::size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

bool looks_like_pcap(std::string_view name, std::string_view sample) {
  if (ends_with(name, ".pcap") || ends_with(name, ".pcapng")) return true;
  if (sample.size() < 4) return false;
  static constexpr std::array<std::string_view, 5> kMagic = {
      std::string_view("\xd4\xc3\xb2\xa1", 4), std::string_view("\xa1\xb2\xc3\xd4", 4),
      std::string_view("\x4d\x3c\xb2\xa1", 4), std::string_view("\xa1\xb2\x3c\x4d", 4),
      std::string_view("\x0a\x0d\x0d\x0a", 4)};
  return std::find(kMagic.begin(), kMagic.end(), sample.substr(0, 4)) != kMagic.end();
}

std::string classify_log(std::string_view name, std::string_view sample) {
  if (looks_like_pcap(name, sample)) return "pcap";
  if (!is_valid_utf8(sample, /*allow_truncated_tail=*/true)) return "";
  if (name == "events.jsonl") return "lab_events";
  if (ends_with(name, ".tracing.jsonl")) return "tracing_jsonl";
  const auto lines = lines_of(sample);
  std::vector<std::string_view> non_empty;
  for (auto l : lines) {
    if (!trim(l).empty()) non_empty.push_back(l);
  }
  auto strip_rs = [](std::string_view l) {
    if (!l.empty() && l.front() == '\x1e') l.remove_prefix(1);
    return l;
  };
  if (ends_with(name, ".qlog") || name.find(".qlog-") != std::string_view::npos ||
      (!lines.empty() && is_qlog_header(parse(strip_rs(lines.front()))))) {
    return "qlog";
  }
  for (std::size_t i = 0; i < non_empty.size() && i < 5; ++i) {
    const auto j = parse(non_empty[i]);
    if (j.is_object() && j.contains("timestamp") && j.contains("level") && j.contains("target")) {
      return "tracing_jsonl";
    }
  }
  if (ends_with(name, ".jsonl")) return "jsonl";
  if (!non_empty.empty() &&
      std::all_of(non_empty.begin(), non_empty.end(),
                  [&](std::string_view l) { return !parse(strip_rs(l)).is_discarded(); })) {
    // Deviation from rule 5: a one-line "x.json" is a JSON document, not a one-record jsonl.
    if (non_empty.size() > 1 || !ends_with(name, ".json")) return "jsonl";
  }
  if (ends_with(name, ".json") || !parse(sample).is_discarded()) return "json";
  if (sample.find("\x1b[") != std::string_view::npos) return "ansi_text";
  return "text";
}

std::string node_of(std::string_view name) {
  const auto first_dot = name.find('.');
  if (first_dot == std::string_view::npos) return "_run";
  const auto kind = name.substr(0, first_dot);
  if (kind != "device" && kind != "router") return "_run";
  const auto rest = name.substr(first_dot + 1);
  const auto second_dot = rest.find('.');
  const auto node = rest.substr(0, second_dot);
  if (node.empty()) return "_run";
  return std::string(node);
}

std::vector<LogEntry> list_logs(const fs::path& run_dir) {
  std::vector<LogEntry> out;
  walk(run_dir, run_dir, 1, out);
  std::sort(out.begin(), out.end(), [](const LogEntry& a, const LogEntry& b) {
    if (a.node != b.node) return a.node < b.node;
    if (kind_rank(a.kind) != kind_rank(b.kind)) return kind_rank(a.kind) < kind_rank(b.kind);
    return a.path < b.path;
  });
  return out;
}

nlohmann::json logs_to_json(const std::vector<LogEntry>& logs) {
  auto arr = nlohmann::json::array();
  for (const auto& l : logs) arr.push_back({{"node", l.node}, {"kind", l.kind}, {"path", l.path}});
  return arr;
}

}  // namespace patchbay::serve
