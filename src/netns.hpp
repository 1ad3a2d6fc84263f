// Network namespaces held by file descriptor only (no /run/netns, no bind mounts).
#pragma once

#include <sys/types.h>

#include <string>

#include "unique_fd.hpp"

namespace patchbay::internal {

// Moves the calling thread into a brand-new network namespace and returns an fd to it.
// The thread stays inside; `what` names the namespace in errors.
UniqueFd create_netns_on_this_thread(const std::string& what);

// Moves the calling thread into the namespace `fd` (setns CLONE_NEWNET).
void enter_netns(int fd, const std::string& what);

// Scope guard: the control thread hops into a node's namespace and must always come back to the
// lab root, where it creates the next namespaces. Never throws (it runs during unwinding).
class ReturnToRoot {
 public:
  explicit ReturnToRoot(int root_fd) : fd_(root_fd) {}
  ~ReturnToRoot();
  ReturnToRoot(const ReturnToRoot&) = delete;
  ReturnToRoot& operator=(const ReturnToRoot&) = delete;

 private:
  int fd_;
};

// Inode number identifying the namespace behind `fd` (or of the calling thread if fd < 0).
ino_t netns_inode(int fd);

}  // namespace patchbay::internal
