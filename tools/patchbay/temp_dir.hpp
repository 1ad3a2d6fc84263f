// A directory made with mkdtemp and removed with everything in it when the handle goes, unless
// it was released (e.g. renamed into place as a finished cache entry).
//
// Example:
//   TempDir run = TempDir::create(std::filesystem::temp_directory_path(), "patchbay-vm.");
//   write_file(run.path() / "cmd.sh", script);
#pragma once

#include <filesystem>
#include <string>

namespace patchbay::cli {

class TempDir {
 public:
  // Throws VmError(kSetupFailed) naming the parent directory.
  static TempDir create(const std::filesystem::path& parent, const std::string& prefix);
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&&) = delete;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  const std::filesystem::path& path() const { return path_; }
  // Ownership ends here: the directory stays.
  void release() { path_.clear(); }

 private:
  explicit TempDir(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

// Writes a whole file or throws VmError(kSetupFailed) naming it.
void write_file(const std::filesystem::path& path, std::string_view contents);
// Reads a whole file or throws VmError(kSetupFailed) naming it.
std::string read_file(const std::filesystem::path& path);

}  // namespace patchbay::cli
