// Byte ranges and content types for raw file responses.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace patchbay::serve {

struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t length = 0;
};

enum class RangeResult { kNone, kSatisfiable, kUnsatisfiable };

struct ParsedRange {
  RangeResult result = RangeResult::kNone;
  ByteRange range;
};

// Parses a Range header against a file size. Supports one range: "bytes=a-b", "bytes=a-" and
// "bytes=-N" (the UI's last-256-KiB request). Malformed headers and multiple ranges yield kNone,
// which RFC 9110 allows (serve the whole file); a start beyond the end is kUnsatisfiable (416).
ParsedRange parse_range(std::string_view header, std::uint64_t size);

// Reads [first, first+length) from a file; throws std::runtime_error naming the file on error.
std::string read_file_range(const std::filesystem::path& path, std::uint64_t first,
                            std::uint64_t length);

// "application/octet-stream" for captures and anything that is not UTF-8, else a text type.
std::string content_type_for_file(const std::filesystem::path& path);

// Content type for UI assets by extension.
std::string content_type_for_asset(const std::filesystem::path& path);

}  // namespace patchbay::serve
