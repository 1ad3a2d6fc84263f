#include "patchbay/process.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

#include "patchbay/error.hpp"
#include "process_state.hpp"

namespace patchbay {
namespace internal {
namespace {

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::string describe(pid_t pid) { return "process " + std::to_string(pid); }

// waitpid() that retries on EINTR and records the exit code. Caller holds state.mu. Returns
// false if the child has not exited yet (only with WNOHANG); throws if it cannot be waited for.
bool reap_locked(ProcessState& state, int options) {
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(state.pid, &status, options);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  if (r < 0) {
    throw Error(ErrorKind::kProcess, "", "cannot wait for " + describe(state.pid), errno);
  }
  state.exit_code = decode_status(status);
  return true;
}

}  // namespace

void ProcessState::notify_exit() {
  std::function<void(pid_t, int)> fn;
  int code = 0;
  {
    std::lock_guard lock(mu);
    if (!exit_code || exit_notified) return;
    exit_notified = true;
    fn = on_exit;
    code = *exit_code;
  }
  if (fn) fn(pid, code);
}

std::optional<int> ProcessState::wait_for(std::optional<std::chrono::milliseconds> timeout) {
  std::optional<int> reaped;
  {
    std::lock_guard lock(mu);
    reaped = exit_code;
  }
  if (reaped) {
    notify_exit();
    return reaped;
  }
  // Wait on the pidfd without holding the mutex, so kill() or another waiter can proceed; only
  // the reaping itself is serialized (a second waiter then finds exit_code set).
  auto deadline = std::chrono::steady_clock::now() + timeout.value_or(std::chrono::milliseconds(0));
  for (;;) {
    int wait_ms = -1;
    if (timeout) {
      auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      wait_ms = static_cast<int>(std::max<std::chrono::milliseconds::rep>(
          0, std::min<std::chrono::milliseconds::rep>(left.count(), 1 << 30)));
    }
    struct pollfd p {
      pidfd.get(), POLLIN, 0
    };
    int n = ::poll(&p, 1, wait_ms);
    if (n > 0) break;
    if (n < 0 && errno != EINTR) {
      throw Error(ErrorKind::kProcess, "", "cannot wait for " + describe(pid), errno);
    }
    if (n == 0 && timeout && std::chrono::steady_clock::now() >= deadline) {
      notify_exit();
      std::lock_guard lock(mu);
      return exit_code;  // kill() may have reaped it meanwhile
    }
  }
  std::optional<int> code;
  {
    std::lock_guard lock(mu);
    if (!exit_code) reap_locked(*this, 0);  // the pidfd is readable: this does not block
    code = exit_code;
  }
  notify_exit();
  return code;
}

void ProcessState::kill() {
  kill_locked_and_reap();
  notify_exit();
}

void ProcessState::kill_locked_and_reap() {
  std::lock_guard lock(mu);
  if (exit_code) return;
  // Signal only while the child is provably unreaped (running or a zombie): then its pid, and
  // so its process group id, cannot have been recycled for an unrelated process.
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    exit_code = 128 + SIGKILL;  // reaped behind our back; nothing left to signal
    return;
  }
  // The child called setpgid(0, 0): its group holds the helpers it forked, too.
  ::kill(-pid, SIGKILL);
  if (pidfd.valid()) {
    ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
  } else {
    ::kill(pid, SIGKILL);
  }
  try {
    reap_locked(*this, 0);
  } catch (const Error&) {
    exit_code = 128 + SIGKILL;  // kill() is used on teardown paths and must not throw
  }
}

bool ProcessState::running() {
  bool alive = false;
  {
    std::lock_guard lock(mu);
    if (!exit_code) {
      try {
        alive = !reap_locked(*this, WNOHANG);
      } catch (const Error&) {
        alive = false;
      }
    }
  }
  if (!alive) notify_exit();
  return alive;
}

}  // namespace internal

namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

pid_t Process::pid() const { return state_->pid; }

bool Process::running() const { return state_->running(); }

int Process::wait() {
  std::optional<int> code = state_->wait_for(std::nullopt);
  return code.value_or(-1);  // wait_for without timeout always reaps or throws
}

std::optional<int> Process::wait_for(std::chrono::milliseconds timeout) {
  return state_->wait_for(timeout);
}

void Process::kill() { state_->kill(); }

std::optional<int> Process::exit_code() const {
  state_->running();  // reaps the child if it has exited but nobody waited yet
  std::lock_guard lock(state_->mu);
  return state_->exit_code;
}

std::string Process::stdout_text() const { return read_file(state_->stdout_path); }

std::string Process::stderr_text() const { return read_file(state_->stderr_path); }

const std::filesystem::path& Process::stdout_path() const { return state_->stdout_path; }

const std::filesystem::path& Process::stderr_path() const { return state_->stderr_path; }

}  // namespace patchbay
