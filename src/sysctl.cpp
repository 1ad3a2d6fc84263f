#include "sysctl.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "patchbay/error.hpp"
#include "unique_fd.hpp"

namespace patchbay::internal {

void write_sysctl(std::string_view key, std::string_view value, const std::string& node) {
  // /proc/sys/net resolves to the namespace of the thread that opens it.
  std::string path = "/proc/sys/" + std::string(key);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) {
    throw Error(ErrorKind::kKernel, node, "sysctl write " + path + " in '" + node + "'", errno);
  }
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    throw Error(ErrorKind::kKernel, node, "sysctl write " + path + " in '" + node + "'", errno);
  }
}

std::string read_sysctl(std::string_view key, const std::string& node) {
  std::string path = "/proc/sys/" + std::string(key);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    throw Error(ErrorKind::kKernel, node, "sysctl read " + path + " in '" + node + "'", errno);
  }
  char buf[256];
  ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n < 0) throw Error(ErrorKind::kKernel, node, "sysctl read " + path, errno);
  std::string out(buf, static_cast<size_t>(n));
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace patchbay::internal
