// PidNamespace: a tiny init process heading a PID namespace of its own. Every command a lab
// starts is forked into this namespace, so when the init dies — because the lab killed it, or
// because the test process died (its pipe closes and PR_SET_PDEATHSIG fires), even by SIGKILL
// — the kernel kills every process in the namespace, grandchildren included.
#pragma once

#include <sys/types.h>

#include "unique_fd.hpp"

namespace patchbay::internal {

class PidNamespace {
 public:
  // Forks the init (clone with CLONE_NEWPID). Call it from a thread that lives as long as the
  // namespace should (the lab's control thread): PR_SET_PDEATHSIG is tied to that thread.
  static PidNamespace start();

  PidNamespace(PidNamespace&&) noexcept = default;
  PidNamespace& operator=(PidNamespace&&) noexcept = default;
  // Kills the init (and so the whole namespace) and reaps it.
  ~PidNamespace();

  // fd of the namespace, for setns(fd, CLONE_NEWPID) before forking children into it.
  int ns_fd() const { return ns_fd_.get(); }
  pid_t init_pid() const { return init_pid_; }

 private:
  PidNamespace() = default;
  pid_t init_pid_ = -1;
  UniqueFd ns_fd_;
  UniqueFd lifeline_;  // write end of the pipe the init watches
};

}  // namespace patchbay::internal
