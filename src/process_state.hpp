// Shared state of one child process (behind patchbay::Process handles).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>

#include "unique_fd.hpp"

namespace patchbay::internal {

struct ProcessState {
  pid_t pid = -1;
  UniqueFd pidfd;  // pidfd_open(pid): pollable for exit
  std::filesystem::path stdout_path;
  std::filesystem::path stderr_path;

  std::mutex mu;
  std::optional<int> exit_code;  // set once reaped
  // Called once, outside `mu`, by whichever call first finds the child reaped (the lab's
  // command_exited event).
  std::function<void(pid_t pid, int exit_code)> on_exit;
  bool exit_notified = false;  // guarded by mu

  // Waits up to `timeout` (nullopt = forever) and reaps; returns the exit code.
  std::optional<int> wait_for(std::optional<std::chrono::milliseconds> timeout);
  // SIGKILL to the process group, then reap.
  void kill();
  bool running();

 private:
  void notify_exit();
  void kill_locked_and_reap();
};

}  // namespace patchbay::internal
