#include "pid_namespace.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

#include "patchbay/error.hpp"

namespace patchbay::internal {
namespace {

// Everything the init does runs in a child cloned from a multithreaded process without glibc's
// fork handlers: another thread may have held a malloc, stdio or sanitizer lock at clone time.
// So the init uses nothing but raw system calls through syscall() (no libc wrappers a sanitizer
// might intercept, no allocation) and is excluded from sanitizer instrumentation, whose runtime
// may not be in a usable state.
#define PB_INIT_FN __attribute__((noinline, no_sanitize("address", "undefined")))

[[noreturn]] PB_INIT_FN void init_exit(int code) {
  for (;;) ::syscall(SYS_exit_group, code);
}

// Keeps only `keep` open. The init must not hold copies of the test process's descriptors: a
// write end of some other pipe (say Boost.Process's exec-error pipe of a concurrent spawn) would
// never see EOF while the init lives.
PB_INIT_FN void close_all_but(int keep) {
  bool ok = true;
  if (keep > 0 && ::syscall(SYS_close_range, 0U, static_cast<unsigned>(keep - 1), 0U) != 0) {
    ok = false;
  }
  if (ok && ::syscall(SYS_close_range, static_cast<unsigned>(keep + 1), ~0U, 0U) == 0) return;
  // Kernels before 5.9 lack close_range: close one by one up to the descriptor limit.
  struct rlimit lim {};
  unsigned long max_fd = 65536;
  if (::syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, nullptr, &lim) == 0 &&
      lim.rlim_cur != RLIM_INFINITY) {
    max_fd = lim.rlim_cur;
  }
  for (unsigned long fd = 0; fd < max_fd; ++fd) {
    if (static_cast<int>(fd) != keep) ::syscall(SYS_close, fd);
  }
}

// The init: reaps orphans reparented to it and exits when the lifeline pipe closes (the test
// process died) — the kernel then SIGKILLs every process in the namespace.
[[noreturn]] PB_INIT_FN void run_init(int lifeline) {
  // Covers the control thread (or the whole process) dying; SIGKILL from an ancestor namespace
  // is the one signal an init cannot ignore.
  ::syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  close_all_but(lifeline);
  // Block everything: signals from inside the namespace then never run handlers inherited from
  // the test process, and SIGCHLD is consumed through the signalfd.
  std::uint64_t all = ~std::uint64_t{0};
  if (::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, nullptr, sizeof(all)) != 0) init_exit(1);
  std::uint64_t chld = std::uint64_t{1} << (SIGCHLD - 1);
  long sfd = ::syscall(SYS_signalfd4, -1, &chld, sizeof(chld), SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) init_exit(1);
  for (;;) {
    struct pollfd fds[2] = {{lifeline, POLLIN, 0}, {static_cast<int>(sfd), POLLIN, 0}};
    long n = ::syscall(SYS_ppoll, fds, 2, nullptr, nullptr, 0);
    if (n < 0) {
      if (errno == EINTR) continue;  // a stop/continue; everything else is blocked
      init_exit(1);
    }
    // The parent never writes, so any event on the lifeline (EOF, HUP, ERR) means it is gone.
    if (fds[0].revents != 0) init_exit(0);
    if (fds[1].revents != 0) {
      char buf[sizeof(struct signalfd_siginfo) * 8];
      while (::syscall(SYS_read, sfd, buf, sizeof(buf)) > 0) {
      }
      // SIGCHLD coalesces: reap every exited child, not one per signal.
      while (::syscall(SYS_wait4, -1, nullptr, WNOHANG | __WALL, nullptr) > 0) {
      }
    }
  }
}

ino_t inode_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// Reaps this process's own children that live in the namespace `ns_inode`. Needed only when
// someone forked into the namespace and did not reap: a dying init waits in the kernel until
// every process of its namespace is released, including zombies whose parent is outside — so
// waiting for the init would otherwise hang forever.
int reap_stray_children(ino_t ns_inode) {
  int reaped = 0;
  DIR* tasks = ::opendir("/proc/self/task");
  if (tasks == nullptr) return 0;
  while (struct dirent* task = ::readdir(tasks)) {
    if (task->d_name[0] == '.') continue;
    std::ifstream children(std::string("/proc/self/task/") + task->d_name + "/children");
    pid_t child = 0;
    while (children >> child) {
      if (inode_of("/proc/" + std::to_string(child) + "/ns/pid") != ns_inode) continue;
      if (::waitpid(child, nullptr, WNOHANG) == child) {
        std::fprintf(stderr,
                     "patchbay: PID namespace destroyed before its member %d was reaped; reaped "
                     "it now\n",
                     static_cast<int>(child));
        ++reaped;
      }
    }
  }
  ::closedir(tasks);
  return reaped;
}

}  // namespace

PidNamespace PidNamespace::start() {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    throw Error(ErrorKind::kKernel, "", "cannot create the PID namespace's lifeline pipe", errno);
  }
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);

  // Raw clone, not fork(): fork() would run atfork handlers and glibc's child bookkeeping, and
  // CLONE_NEWPID is not expressible through it. With newsp == 0 the child continues on a copy of
  // this stack, like fork. Argument order (flags, newsp, ...) is the same on every ABI for the
  // first two, and the rest are zero.
  long pid = ::syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0);
  if (pid < 0) {
    throw Error(ErrorKind::kKernel, "", "cannot create a PID namespace (clone CLONE_NEWPID)",
                errno);
  }
  if (pid == 0) run_init(read_end.get());

  read_end.reset();
  PidNamespace ns;
  ns.init_pid_ = static_cast<pid_t>(pid);
  ns.lifeline_ = std::move(write_end);  // from here on, ~PidNamespace kills and reaps the init
  std::string path = "/proc/" + std::to_string(pid) + "/ns/pid";
  ns.ns_fd_ = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns.ns_fd_.valid()) {
    throw Error(ErrorKind::kKernel, "", "cannot open " + path, errno);
  }
  return ns;
}

PidNamespace::~PidNamespace() {
  // The defaulted move leaves init_pid_ behind in the source but takes the lifeline: only the
  // object holding the lifeline owns the init.
  if (!lifeline_.valid() || init_pid_ <= 0) return;
  ::kill(init_pid_, SIGKILL);
  ino_t ns_inode = 0;
  if (ns_fd_.valid()) {
    struct stat st {};
    if (::fstat(ns_fd_.get(), &st) == 0) ns_inode = st.st_ino;
  }
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, init_pid_, 0)));
  if (pidfd.valid() && ns_inode != 0) {
    // The init becomes waitable only once all members are gone; unreaped children of ours in
    // the namespace would block that forever (see reap_stray_children).
    for (;;) {
      struct pollfd p {
        pidfd.get(), POLLIN, 0
      };
      int n = ::poll(&p, 1, 200);
      if (n > 0) break;
      if (n < 0 && errno != EINTR) break;
      if (n == 0) reap_stray_children(ns_inode);
    }
  }
  while (::waitpid(init_pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace patchbay::internal
