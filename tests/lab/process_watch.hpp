// Helpers for tests that watch processes and threads of a lab from outside.
#pragma once

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include <gtest/gtest.h>

#include "patchbay/gtest.hpp"

namespace patchbay_test {

// Waits until `pid` has exited (its pidfd becomes readable) or the deadline passes; true if it
// is gone. Works for processes that are not our children.
inline bool wait_gone(pid_t pid, std::chrono::milliseconds deadline) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH;
  pollfd p{fd, POLLIN, 0};
  int rc = ::poll(&p, 1, static_cast<int>(deadline.count()));
  ::close(fd);
  return rc == 1;
}

// Base for tests that create labs themselves (not through LabTest) and need the bootstrap.
class NeedsLabs : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto reason = patchbay::testing::lab_unavailable_reason()) GTEST_SKIP() << *reason;
  }
};

}  // namespace patchbay_test
