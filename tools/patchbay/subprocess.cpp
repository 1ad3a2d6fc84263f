#include "subprocess.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "exit_codes.hpp"

namespace patchbay::cli {
namespace {

constexpr std::size_t kMaxExtraFds = 16;  // the child cannot allocate, so a fixed array

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

int pidfd_send_signal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

[[noreturn]] void child_fail(int report_fd, int err) {
  // Only async-signal-safe calls here: we are between fork and exec.
  (void)!::write(report_fd, &err, sizeof err);
  ::_exit(127);
}

std::string read_all(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

}  // namespace

Child::Child(Child&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      status_(std::exchange(other.status_, std::nullopt)) {}

Child& Child::operator=(Child&& other) noexcept {
  if (this != &other) {
    if (running()) kill_and_wait();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

Child::~Child() {
  if (running()) kill_and_wait();
}

int Child::wait() {
  if (status_) return *status_;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR) {
      status = 0;
      break;
    }
  }
  status_ = status;
  return status;
}

std::optional<int> Child::try_wait() {
  if (status_) return status_;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) status_ = status;
  return status_;
}

void Child::kill_and_wait() {
  if (!running()) return;
  if (pidfd_.valid()) {
    pidfd_send_signal(pidfd_.get(), SIGKILL);
  } else {
    ::kill(pid_, SIGKILL);  // still unreaped, so the PID cannot have been recycled
  }
  wait();
}

Child spawn(const SpawnSpec& spec) {
  if (spec.argv.empty()) throw VmError(ExitCode::kSetupFailed, "spawn: empty command");
  if (spec.extra_fds.size() > kMaxExtraFds) {
    throw VmError(ExitCode::kSetupFailed, "spawn: too many extra fds for " + spec.argv[0]);
  }
  // Everything the child needs is prepared before fork: after it only async-signal-safe calls.
  std::vector<char*> argv;
  for (const std::string& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    throw VmError(ExitCode::kSetupFailed, std::string("pipe: ") + std::strerror(errno));
  }
  UniqueFd report_read(report[0]), report_write(report[1]);
  const pid_t parent = ::getpid();
  const bool search = spec.argv[0].find('/') == std::string::npos;

  const pid_t pid = ::fork();
  if (pid < 0) {
    throw VmError(ExitCode::kSetupFailed, "fork for " + spec.argv[0] + ": " + std::strerror(errno));
  }
  if (pid == 0) {
    // The report pipe moves above every target fd first, or a dup2 to fd 3 or 4 could close it.
    constexpr int kHigh = 64;
    int rep = ::fcntl(report_write.get(), F_DUPFD_CLOEXEC, kHigh);
    if (rep < 0) rep = report_write.get();
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(rep, errno);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
    if (spec.own_process_group) ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);  // our signalfd mask must not reach the child
    // Move every source above any target first, so a dup2 never overwrites a later source.
    int moved_in = -1, moved_out = -1, moved_err = -1;
    if (spec.stdin_fd >= 0 && (moved_in = ::fcntl(spec.stdin_fd, F_DUPFD, kHigh)) < 0) {
      child_fail(rep, errno);
    }
    if (spec.stdout_fd >= 0 && (moved_out = ::fcntl(spec.stdout_fd, F_DUPFD, kHigh)) < 0) {
      child_fail(rep, errno);
    }
    if (spec.stderr_fd >= 0 && (moved_err = ::fcntl(spec.stderr_fd, F_DUPFD, kHigh)) < 0) {
      child_fail(rep, errno);
    }
    int moved_extra[kMaxExtraFds];
    const std::size_t n_extra = spec.extra_fds.size();
    for (std::size_t i = 0; i < n_extra; ++i) {
      if ((moved_extra[i] = ::fcntl(spec.extra_fds[i].first, F_DUPFD, kHigh)) < 0) {
        child_fail(rep, errno);
      }
    }
    if (moved_in < 0) moved_in = ::open("/dev/null", O_RDONLY);
    if (moved_in < 0 || ::dup2(moved_in, 0) < 0) child_fail(rep, errno);
    if (moved_out >= 0 && ::dup2(moved_out, 1) < 0) child_fail(rep, errno);
    if (moved_err >= 0 && ::dup2(moved_err, 2) < 0) child_fail(rep, errno);
    int max_target = 2;
    for (std::size_t i = 0; i < n_extra; ++i) {
      const int target = spec.extra_fds[i].second;
      if (::dup2(moved_extra[i], target) < 0) child_fail(rep, errno);
      if (target > max_target) max_target = target;
    }
    // Nothing else of ours leaks into the child, except the report pipe (close-on-exec).
    ::close_range(max_target + 1, rep - 1, 0);  // rep >= 64 > max_target
    ::close_range(rep + 1, ~0u, 0);
    if (search) {
      ::execvp(argv[0], argv.data());
    } else {
      ::execv(argv[0], argv.data());
    }
    child_fail(rep, errno);
  }
  report_write.reset();
  int child_errno = 0;
  ssize_t n;
  while ((n = ::read(report_read.get(), &child_errno, sizeof child_errno)) < 0 && errno == EINTR) {
  }
  Child child(pid, UniqueFd(pidfd_open(pid)));
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    child.wait();
    throw VmError(ExitCode::kSetupFailed,
                  "cannot run " + spec.argv[0] + ": " + std::strerror(child_errno));
  }
  return child;
}

std::string run_capture(const std::vector<std::string>& argv) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    throw VmError(ExitCode::kSetupFailed, std::string("pipe: ") + std::strerror(errno));
  }
  UniqueFd out_r(out[0]), out_w(out[1]), err_r(err[0]), err_w(err[1]);
  SpawnSpec spec;
  spec.argv = argv;
  spec.stdout_fd = out_w.get();
  spec.stderr_fd = err_w.get();
  Child child = spawn(spec);
  out_w.reset();
  err_w.reset();
  // Helpers write little to stderr, so reading stdout to EOF first cannot deadlock in practice;
  // stderr is drained after.
  std::string stdout_text = read_all(out_r.get());
  std::string stderr_text = read_all(err_r.get());
  const int status = child.wait();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string cmd;
    for (const std::string& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
    throw VmError(ExitCode::kSetupFailed,
                  "'" + cmd + "' failed (" + describe_wait_status(status) + "): " + stderr_text);
  }
  return stdout_text;
}

std::optional<std::string> find_executable(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (::access(name.c_str(), X_OK) == 0) return name;
    return std::nullopt;
  }
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
  // modprobe lives in /usr/sbin, which an ordinary user's PATH may lack.
  std::string all = std::string(dirs) + ":/usr/sbin:/sbin";
  std::string_view rest = all;
  while (!rest.empty()) {
    const std::size_t colon = rest.find(':');
    std::string dir(rest.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return std::nullopt;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           ::strsignal(WTERMSIG(status)) + ")";
  }
  return "wait status " + std::to_string(status);
}

}  // namespace patchbay::cli
