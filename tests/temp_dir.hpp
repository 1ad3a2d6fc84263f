// TempDir: a fresh directory under the system's temporary directory for one test, removed with
// everything in it when the test ends.
//
//   pbtest::TempDir dir("pcapng-test");
//   write_file(dir.file("a.pcapng"));   // <tmp>/pcapng-test-XXXXXX/a.pcapng
#pragma once

#include <stdlib.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <system_error>

namespace pbtest {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "patchbay-test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      throw std::system_error(errno, std::generic_category(), "mkdtemp " + tmpl);
    }
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace pbtest
