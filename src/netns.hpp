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

// Inode number identifying the namespace behind `fd` (or of the calling thread if fd < 0).
ino_t netns_inode(int fd);

}  // namespace patchbay::internal
