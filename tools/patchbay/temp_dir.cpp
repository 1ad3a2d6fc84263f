#include "temp_dir.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <utility>
#include <vector>

#include "exit_codes.hpp"
#include "unique_fd.hpp"

namespace patchbay::cli {
namespace fs = std::filesystem;
using patchbay::internal::UniqueFd;

TempDir TempDir::create(const fs::path& parent, const std::string& prefix) {
  std::error_code ec;
  fs::create_directories(parent, ec);
  std::string templ = (parent / (prefix + "XXXXXX")).string();
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    throw VmError(ExitCode::kSetupFailed,
                  "cannot create a directory in " + parent.string() + ": " + std::strerror(errno));
  }
  return TempDir(fs::path(buf.data()));
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_file(const fs::path& path, std::string_view contents) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) {
    throw VmError(ExitCode::kSetupFailed,
                  "cannot create " + path.string() + ": " + std::strerror(errno));
  }
  while (!contents.empty()) {
    const ssize_t n = ::write(fd.get(), contents.data(), contents.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      throw VmError(ExitCode::kSetupFailed,
                    "cannot write " + path.string() + ": " + std::strerror(errno));
    }
    contents.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::string read_file(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    throw VmError(ExitCode::kSetupFailed,
                  "cannot open " + path.string() + ": " + std::strerror(errno));
  }
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      throw VmError(ExitCode::kSetupFailed,
                    "cannot read " + path.string() + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

}  // namespace patchbay::cli
