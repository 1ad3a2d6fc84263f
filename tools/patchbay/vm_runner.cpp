#include "vm_runner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <iostream>
#include <sstream>
#include <system_error>

#include "exit_codes.hpp"
#include "guest_command.hpp"
#include "guest_image.hpp"
#include "guest_kernel.hpp"
#include "kvm_probe.hpp"
#include "qemu_command.hpp"
#include "subprocess.hpp"
#include "temp_dir.hpp"

extern char** environ;

namespace patchbay::cli {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// The fds QEMU sees its output pipes as; /dev/fd/<n> in its -chardev options.
constexpr int kQemuStdoutFd = 3;
constexpr int kQemuStderrFd = 4;

// Blocks termination signals and delivers them through an fd instead, so the runner can kill
// QEMU before exiting; the previous mask comes back when the run ends.
class SignalCatcher {
 public:
  SignalCatcher() {
    sigemptyset(&set_);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&set_, s);
    ::sigprocmask(SIG_BLOCK, &set_, &old_);
    fd_.reset(::signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK));
  }
  ~SignalCatcher() {
    fd_.reset();
    ::sigprocmask(SIG_SETMASK, &old_, nullptr);
  }
  SignalCatcher(const SignalCatcher&) = delete;
  SignalCatcher& operator=(const SignalCatcher&) = delete;
  int fd() const { return fd_.get(); }
  int read_signal() {
    signalfd_siginfo info{};
    if (::read(fd_.get(), &info, sizeof info) != sizeof info) return 0;
    return static_cast<int>(info.ssi_signo);
  }

 private:
  sigset_t set_{}, old_{};
  UniqueFd fd_;
};

// Copies one output pipe to one of our fds; a reader that went away (EPIPE) stops the copying,
// not the draining, so QEMU is never blocked on a full pipe.
struct Stream {
  UniqueFd read_end;
  int to = -1;
  bool open = true;

  void pump() {
    char buf[65536];
    const ssize_t n = ::read(read_end.get(), buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
      open = false;
      return;
    }
    for (ssize_t off = 0; to >= 0 && off < n;) {
      const ssize_t w = ::write(to, buf + off, static_cast<std::size_t>(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        to = -1;
        break;
      }
      off += w;
    }
  }
};

std::string tail_lines(const fs::path& path, std::size_t count) {
  std::string text;
  try {
    text = read_file(path);
  } catch (const VmError&) {
    return "(no " + path.filename().string() + ")\n";
  }
  std::deque<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
    if (lines.size() > count) lines.pop_front();
  }
  std::string out;
  for (const std::string& l : lines) out += "  | " + l + "\n";
  return out.empty() ? "  (empty)\n" : out;
}

std::optional<int> read_exit_code(const fs::path& rc_file) {
  std::error_code ec;
  if (!fs::exists(rc_file, ec)) return std::nullopt;
  try {
    const std::string text = read_file(rc_file);
    std::size_t used = 0;
    const int rc = std::stoi(text, &used);
    if (rc >= 0 && rc <= 255) return rc;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

std::vector<GuestShare> guest_shares(const std::vector<fs::path>& paths) {
  std::vector<GuestShare> shares;
  for (const fs::path& p : paths) {
    std::error_code ec;
    const fs::path abs = fs::canonical(p, ec);
    if (ec || !fs::is_directory(abs, ec)) {
      throw VmError(ExitCode::kUsage, "--share " + p.string() + ": not an existing directory");
    }
    shares.push_back({"share" + std::to_string(shares.size()), abs});
  }
  return shares;
}

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) out += (out.empty() ? "" : " ") + shell_quote(w);
  return out;
}

}  // namespace

int run_vm(const VmOptions& o) {
  const Clock::time_point start = Clock::now();
  const auto qemu = find_executable(o.qemu);
  if (!qemu) {
    throw VmError(ExitCode::kQemuMissing,
                  o.qemu + " not found in PATH (install the Debian package qemu-system-x86)");
  }
  const GuestKernel kernel =
      locate_guest_kernel(o.kernel, o.kernel_release, o.boot_dir, o.modules_root);
  const GuestImage image =
      prepare_guest_image(kernel, o.cache_dir ? *o.cache_dir : default_cache_root(), o.verbose);

  bool kvm = o.accel == Accel::kKvm;
  if (o.accel == Accel::kAuto) {
    const KvmProbe probe = probe_kvm();
    kvm = probe.usable;
    if (o.verbose && !kvm) std::cerr << "patchbay vm: TCG, KVM unusable: " << probe.reason << "\n";
  }

  std::error_code ec;
  const fs::path cwd = fs::current_path(ec);
  if (ec)
    throw VmError(ExitCode::kSetupFailed, "cannot read the working directory: " + ec.message());
  TempDir run = TempDir::create(fs::temp_directory_path(), "patchbay-vm.");
  const std::vector<GuestShare> shares = guest_shares(o.shares);
  write_file(run.path() / "mounts.sh", mounts_script(shares));
  write_file(
      run.path() / "cmd.sh",
      command_script({o.command, cwd, filtered_environment(environ, cwd, o.env)}, image.busybox));

  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    throw VmError(ExitCode::kSetupFailed, std::string("pipe: ") + std::strerror(errno));
  }
  Stream out{UniqueFd(out_pipe[0]), STDOUT_FILENO};
  Stream err{UniqueFd(err_pipe[0]), STDERR_FILENO};
  UniqueFd out_w(out_pipe[1]), err_w(err_pipe[1]);
  const fs::path qemu_log = run.path() / "qemu.log";
  UniqueFd qemu_log_fd(::open(qemu_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!qemu_log_fd.valid()) {
    throw VmError(ExitCode::kSetupFailed,
                  "cannot create " + qemu_log.string() + ": " + std::strerror(errno));
  }

  QemuSetup setup{.qemu = *qemu,
                  .kvm = kvm,
                  .memory_mib = o.memory_mib,
                  .cpus = o.cpus,
                  .kernel = image.kernel,
                  .initramfs = image.initramfs,
                  .append = o.append,
                  .run_dir = run.path(),
                  .shares = shares,
                  .console_log = run.path() / "console.log",
                  .stdout_fd = kQemuStdoutFd,
                  .stderr_fd = kQemuStderrFd};
  const std::vector<std::string> argv = qemu_command(setup);
  if (o.verbose) std::cerr << "patchbay vm: " << join(argv) << "\n";

  SignalCatcher signals;
  // Ignored, not blocked: a closed stdout must show up as EPIPE on write, not end the runner
  // before it has killed QEMU.
  ::signal(SIGPIPE, SIG_IGN);
  SpawnSpec spec;
  spec.argv = argv;
  spec.stdout_fd = qemu_log_fd.get();
  spec.stderr_fd = qemu_log_fd.get();
  spec.extra_fds = {{out_w.get(), kQemuStdoutFd}, {err_w.get(), kQemuStderrFd}};
  spec.own_process_group = true;
  Child child = spawn(spec);
  out_w.reset();  // QEMU holds the only write ends now, so its exit is EOF here
  err_w.reset();
  if (o.pid_file) write_file(*o.pid_file, std::to_string(child.pid()) + "\n");

  const Clock::time_point deadline = Clock::now() + o.timeout;
  bool timed_out = false;
  int caught_signal = 0;
  while (out.open || err.open || child.running()) {
    std::vector<pollfd> fds;
    if (out.open) fds.push_back({out.read_end.get(), POLLIN, 0});
    if (err.open) fds.push_back({err.read_end.get(), POLLIN, 0});
    if (child.running()) {
      fds.push_back({child.pidfd(), POLLIN, 0});
      fds.push_back({signals.fd(), POLLIN, 0});
    }
    int wait_ms = -1;
    if (child.running()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      wait_ms = static_cast<int>(std::max<long long>(0, std::min<long long>(left, 60'000)));
      if (child.pidfd() < 0) wait_ms = std::min(wait_ms, 100);  // no pidfd: poll the status
    }
    if (::poll(fds.data(), fds.size(), wait_ms) < 0 && errno != EINTR) {
      throw VmError(ExitCode::kSetupFailed, std::string("poll: ") + std::strerror(errno));
    }
    for (const pollfd& p : fds) {
      if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (p.fd == out.read_end.get()) out.pump();
      if (p.fd == err.read_end.get()) err.pump();
      if (p.fd == signals.fd()) caught_signal = signals.read_signal();
    }
    if (child.running()) child.try_wait();
    if (child.running() && (caught_signal != 0 || Clock::now() >= deadline)) {
      timed_out = caught_signal == 0;
      child.kill_and_wait();
    }
  }
  const int status = child.wait();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (o.verbose) {
    std::cerr << "patchbay vm: QEMU (" << (kvm ? "KVM" : "TCG") << ") ended after " << seconds
              << " s: " << describe_wait_status(status) << "\n";
  }

  if (caught_signal != 0) {
    std::cerr << "patchbay vm: " << ::strsignal(caught_signal) << "; killed QEMU (pid "
              << child.pid() << ")\n";
    return 128 + caught_signal;
  }
  if (timed_out) {
    std::cerr << "patchbay vm: timed out after " << o.timeout.count() << " s; killed QEMU (pid "
              << child.pid() << "). Last guest console lines:\n"
              << tail_lines(run.path() / "console.log", 20);
    return static_cast<int>(ExitCode::kTimeout);
  }
  if (const auto rc = read_exit_code(run.path() / "rc")) return *rc;
  std::cerr << "patchbay vm: the guest ended without an exit code (QEMU "
            << describe_wait_status(status) << " after " << seconds
            << " s). Last guest console lines:\n"
            << tail_lines(run.path() / "console.log", 30) << "QEMU said:\n"
            << tail_lines(qemu_log, 10);
  return static_cast<int>(ExitCode::kVmFailed);
}

}  // namespace patchbay::cli
