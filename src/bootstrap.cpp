#include "patchbay/bootstrap.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>

#include "patchbay/error.hpp"

namespace patchbay {
namespace {

// Writes `text` to a /proc file; returns errno (0 on success).
int write_proc_file(const char* path, const std::string& text) {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = n == static_cast<ssize_t>(text.size()) ? 0 : errno;
  ::close(fd);
  return err;
}

BootstrapReport do_enter() {
  BootstrapReport report;
  report.outer_uid = ::geteuid();
  report.outer_gid = ::getegid();
  int threads = current_thread_count();
  if (threads > 1) {
    report.error =
        "user namespace bootstrap needs a single-threaded process, but this process "
        "already has " +
        std::to_string(threads) +
        " threads: call patchbay::enter_user_namespace() at the start of main(), "
        "before anything starts a thread";
    return report;
  }
  // CLONE_NEWNS together with CLONE_NEWUSER: the mount namespace is owned by the new user
  // namespace, so later private mounts (DNS overlays, sysfs) are ours to make.
  if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
    int err = errno;
    report.error =
        std::string("unshare(CLONE_NEWUSER | CLONE_NEWNS) failed: ") + std::strerror(err);
    if (err == EPERM || err == ENOSPC) {
      report.error +=
          " (unprivileged user namespaces may be disabled: check "
          "kernel.unprivileged_userns_clone, user.max_user_namespaces and "
          "kernel.apparmor_restrict_unprivileged_userns)";
    }
    return report;
  }
  // setgroups must be denied before an unprivileged process may write gid_map.
  if (int err = write_proc_file("/proc/self/setgroups", "deny"); err != 0 && err != ENOENT) {
    report.error = std::string("write /proc/self/setgroups: ") + std::strerror(err);
    return report;
  }
  if (int err =
          write_proc_file("/proc/self/uid_map", "0 " + std::to_string(report.outer_uid) + " 1");
      err != 0) {
    report.error = std::string("write /proc/self/uid_map: ") + std::strerror(err);
    return report;
  }
  if (int err =
          write_proc_file("/proc/self/gid_map", "0 " + std::to_string(report.outer_gid) + " 1");
      err != 0) {
    report.error = std::string("write /proc/self/gid_map: ") + std::strerror(err);
    return report;
  }
  if (::geteuid() != 0) {
    report.error = "userns bootstrap finished without UID 0 mapping";
    return report;
  }
  // Nothing mounted from here on may propagate back to the host's mount namespace.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    report.error = std::string("making mounts private failed: ") + std::strerror(errno);
    return report;
  }
  report.entered = true;
  return report;
}

std::once_flag g_once;
BootstrapReport g_report;

}  // namespace

int current_thread_count() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

const BootstrapReport& try_enter_user_namespace() noexcept {
  std::call_once(g_once, [] {
    try {
      g_report = do_enter();
    } catch (...) {
      g_report.error = "unexpected failure while entering the user namespace";
    }
  });
  return g_report;
}

const BootstrapReport& enter_user_namespace() {
  const BootstrapReport& report = try_enter_user_namespace();
  if (!report.entered) throw Error(ErrorKind::kBootstrap, "", report.error);
  return report;
}

}  // namespace patchbay
