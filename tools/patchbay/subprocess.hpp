// Child processes of the CLI: spawned with an explicit fd layout, tied to our lifetime with
// PR_SET_PDEATHSIG (so even a SIGKILLed `patchbay` leaves no QEMU behind), and owned by a handle
// that kills and reaps only the PID it started.
//
// Example:
//   Child xz = spawn({.argv = {"xz", "-dc", path}, .stdout_fd = out.get()});
//   int status = xz.wait();
//
// Only the CLI spawns processes; the library never does.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "unique_fd.hpp"

namespace patchbay::cli {

using patchbay::internal::UniqueFd;

struct SpawnSpec {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH unless it contains a '/'
  int stdin_fd = -1;              // -1: /dev/null
  int stdout_fd = -1;             // -1: inherit ours
  int stderr_fd = -1;             // -1: inherit ours
  // Further descriptors the child gets, as {parent fd, child fd}; child fds must be >= 3.
  std::vector<std::pair<int, int>> extra_fds;
  // A new process group, so a terminal's Ctrl-C reaches only us and we decide what to kill.
  bool own_process_group = false;
};

class Child {
 public:
  Child() = default;
  Child(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  Child(Child&& other) noexcept;
  Child& operator=(Child&& other) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  // A child still running when its handle goes is killed and reaped: nothing outlives us.
  ~Child();

  pid_t pid() const { return pid_; }
  // Readable once the child has exited (for poll()).
  int pidfd() const { return pidfd_.get(); }
  bool running() const { return pid_ > 0 && !status_; }
  // Blocks until the child exits; returns the raw wait status.
  int wait();
  // Non-blocking; the wait status once the child has exited.
  std::optional<int> try_wait();
  // SIGKILL to this child only (through its pidfd, so never to a recycled PID), then reap it.
  void kill_and_wait();

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  std::optional<int> status_;
};

// Throws VmError(kSetupFailed) if fork/exec fails; the message names argv[0] and errno.
Child spawn(const SpawnSpec& spec);

// Runs a helper to completion and returns its stdout; throws VmError(kSetupFailed) naming the
// command, its exit status and its stderr if it fails.
std::string run_capture(const std::vector<std::string>& argv);

// The absolute path of an executable found in PATH (or the name itself if it has a '/').
std::optional<std::string> find_executable(const std::string& name);

// "exit code 3" / "killed by signal 9" for a wait status.
std::string describe_wait_status(int status);

}  // namespace patchbay::cli
