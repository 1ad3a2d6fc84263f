#include "netns.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <exception>

#include "patchbay/error.hpp"

namespace patchbay::internal {

UniqueFd create_netns_on_this_thread(const std::string& what) {
  if (::unshare(CLONE_NEWNET) != 0) {
    int err = errno;
    std::string hint =
        err == EPERM ? " (call patchbay::enter_user_namespace() first, or run as root)" : "";
    throw Error(ErrorKind::kKernel, what,
                "cannot create network namespace for '" + what + "'" + hint, err);
  }
  // /proc/thread-self names this thread's namespace even though other threads live elsewhere.
  UniqueFd fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    throw Error(ErrorKind::kKernel, what, "cannot open namespace of '" + what + "'", errno);
  }
  return fd;
}

void enter_netns(int fd, const std::string& what) {
  if (::setns(fd, CLONE_NEWNET) != 0) {
    throw Error(ErrorKind::kKernel, what, "cannot enter network namespace of '" + what + "'",
                errno);
  }
}

ino_t netns_inode(int fd) {
  struct stat st {};
  int rc = fd >= 0 ? ::fstat(fd, &st) : ::stat("/proc/thread-self/ns/net", &st);
  return rc == 0 ? st.st_ino : 0;
}

ReturnToRoot::~ReturnToRoot() {
  try {
    enter_netns(fd_, "lab root");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "patchbay: control thread cannot return to the lab root: %s\n", e.what());
  }
}

}  // namespace patchbay::internal
