// Request-target parsing and containment checks. Every path the server opens goes through
// resolve_within(), so a request can never read outside the directory it names.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace patchbay::serve {

// A request target split into raw (still percent-encoded) path segments and the query.
struct Target {
  std::vector<std::string> raw_segments;  // "/a/b%2Fc" -> {"a", "b%2Fc"}
  std::string query;                      // without '?'
};

Target split_target(std::string_view target);

// Percent-decodes one segment. nullopt for malformed escapes and for NUL bytes, which no
// legitimate file name contains and which would truncate paths in C APIs.
std::optional<std::string> percent_decode(std::string_view in);

// The value of `key` in an application/x-www-form-urlencoded query, decoded.
std::optional<std::string> query_param(std::string_view query, std::string_view key);

// Splits a decoded relative path on '/' and rejects anything that could leave its root: empty
// input, absolute paths, "." and ".." components, empty components ("a//b"), backslashes.
// Returns nullopt when the path is not acceptable.
std::optional<std::vector<std::string>> safe_components(std::string_view decoded_path);

enum class Resolve { kOk, kForbidden, kNotFound };

struct Resolved {
  Resolve result;
  std::filesystem::path path;  // canonical, set when result == kOk
};

// Resolves root/rel (rel made of safe_components) following symlinks and checks that the result
// is still inside canonical(root). A symlink that points outside is kForbidden, a missing file is
// kNotFound.
Resolved resolve_within(const std::filesystem::path& root, const std::vector<std::string>& rel);

// True if `path` equals `root` or lies beneath it (both canonical).
bool is_within(const std::filesystem::path& root, const std::filesystem::path& path);

}  // namespace patchbay::serve
