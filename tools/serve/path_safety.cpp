#include "path_safety.hpp"

#include <system_error>

namespace patchbay::serve {

namespace fs = std::filesystem;

Target split_target(std::string_view target) {
  Target out;
  const auto qpos = target.find('?');
  std::string_view path = target.substr(0, qpos);
  if (qpos != std::string_view::npos) out.query = std::string(target.substr(qpos + 1));
  // Drop a fragment if a client sent one; it never reaches the file system.
  if (const auto h = out.query.find('#'); h != std::string::npos) out.query.resize(h);
  std::size_t start = 0;
  if (!path.empty() && path.front() == '/') start = 1;
  while (start <= path.size()) {
    const auto slash = path.find('/', start);
    const auto end = slash == std::string_view::npos ? path.size() : slash;
    out.raw_segments.emplace_back(path.substr(start, end - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  // "/" and "/api/runs/" end in an empty segment that carries no meaning.
  if (!out.raw_segments.empty() && out.raw_segments.back().empty()) out.raw_segments.pop_back();
  return out;
}

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::optional<std::string> percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return std::nullopt;
      const int hi = hex_value(in[i + 1]);
      const int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0') return std::nullopt;
    out.push_back(c);
  }
  return out;
}

std::optional<std::string> query_param(std::string_view query, std::string_view key) {
  std::size_t start = 0;
  while (start <= query.size()) {
    const auto amp = query.find('&', start);
    const auto end = amp == std::string_view::npos ? query.size() : amp;
    const auto pair = query.substr(start, end - start);
    const auto eq = pair.find('=');
    const auto k = pair.substr(0, eq);
    if (k == key) {
      std::string v(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
      for (auto& ch : v) {
        if (ch == '+') ch = ' ';
      }
      return percent_decode(v);
    }
    if (amp == std::string_view::npos) break;
    start = amp + 1;
  }
  return std::nullopt;
}

std::optional<std::vector<std::string>> safe_components(std::string_view decoded_path) {
  if (decoded_path.empty() || decoded_path.front() == '/') return std::nullopt;
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    const auto slash = decoded_path.find('/', start);
    const auto end = slash == std::string_view::npos ? decoded_path.size() : slash;
    const auto part = decoded_path.substr(start, end - start);
    if (part.empty() || part == "." || part == ".." || part.find('\\') != std::string_view::npos ||
        part.find('\0') != std::string_view::npos) {
      return std::nullopt;
    }
    parts.emplace_back(part);
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return parts;
}

bool is_within(const fs::path& root, const fs::path& path) {
  auto r = root.begin();
  auto p = path.begin();
  for (; r != root.end(); ++r, ++p) {
    // A trailing "/" on root shows up as an empty element.
    if (r->empty()) continue;
    if (p == path.end() || *r != *p) return false;
  }
  return true;
}

Resolved resolve_within(const fs::path& root, const std::vector<std::string>& rel) {
  std::error_code ec;
  const fs::path canonical_root = fs::canonical(root, ec);
  if (ec) return {Resolve::kNotFound, {}};
  fs::path joined = canonical_root;
  for (const auto& part : rel) joined /= part;
  // weakly_canonical resolves every symlink along the existing prefix, so a link pointing
  // outside the root is caught even if its target does not exist.
  const fs::path resolved = fs::weakly_canonical(joined, ec);
  if (ec) return {Resolve::kNotFound, {}};
  if (!is_within(canonical_root, resolved)) return {Resolve::kForbidden, {}};
  if (!fs::exists(resolved, ec)) {
    // weakly_canonical stops at a dangling symlink. Report one that points outside as
    // forbidden: it would start serving outside data as soon as its target appears.
    fs::path walk = canonical_root;
    for (const auto& part : rel) {
      walk /= part;
      if (!fs::is_symlink(fs::symlink_status(walk, ec))) continue;
      fs::path target = fs::read_symlink(walk, ec);
      if (ec) break;
      if (target.is_relative()) target = walk.parent_path() / target;
      if (!is_within(canonical_root, fs::weakly_canonical(target.lexically_normal(), ec))) {
        return {Resolve::kForbidden, {}};
      }
    }
    return {Resolve::kNotFound, {}};
  }
  return {Resolve::kOk, resolved};
}

}  // namespace patchbay::serve
