// Runs the `patchbay` CLI from the runner tests: separate stdout and stderr, a callback on each
// stdout chunk as it arrives (to observe live streaming), a hard deadline so a broken runner
// fails the test instead of hanging it, and the child's PID for signalling it.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace patchbay::vmtest {

using Clock = std::chrono::steady_clock;

struct CliResult {
  int exit_code = -1;  // -1 if it did not exit normally
  bool killed_at_deadline = false;
  std::string out, err;
  Clock::time_point started, ended;
  double seconds() const { return std::chrono::duration<double>(ended - started).count(); }
};

struct CliRun {
  std::vector<std::string> args;  // after the CLI path
  std::string cwd;                // "" = inherit
  std::vector<std::string> env;   // KEY=VALUE added to ours
  std::chrono::seconds deadline{240};
  // Called with the stdout seen so far after each chunk, and the child's PID.
  std::function<void(const std::string& out_so_far, pid_t pid)> on_stdout;
};

inline CliResult run_cli(const CliRun& run) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  std::vector<std::string> argv_s = {PATCHBAY_CLI};
  argv_s.insert(argv_s.end(), run.args.begin(), run.args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) env_s.emplace_back(*e);
  env_s.insert(env_s.end(), run.env.begin(), run.env.end());
  std::vector<char*> envp;
  for (std::string& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  CliResult r;
  r.started = Clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    if (!run.cwd.empty() && ::chdir(run.cwd.c_str()) != 0) ::_exit(126);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  const auto deadline = r.started + run.deadline;
  bool out_open = true, err_open = true;
  while (out_open || err_open) {
    pollfd fds[2] = {{out_open ? out[0] : -1, POLLIN, 0}, {err_open ? err[0] : -1, POLLIN, 0}};
    ::poll(fds, 2, 50);
    char buf[65536];
    if (fds[0].revents) {
      const ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n <= 0) {
        out_open = false;
      } else {
        r.out.append(buf, static_cast<std::size_t>(n));
        if (run.on_stdout) run.on_stdout(r.out, pid);
      }
    }
    if (fds[1].revents) {
      const ssize_t n = ::read(err[0], buf, sizeof buf);
      if (n <= 0) {
        err_open = false;
      } else {
        r.err.append(buf, static_cast<std::size_t>(n));
      }
    }
    if (Clock::now() > deadline && !r.killed_at_deadline) {
      r.killed_at_deadline = true;
      ::kill(pid, SIGKILL);  // our own child, not yet reaped
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.ended = Clock::now();
  ::close(out[0]);
  ::close(err[0]);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

}  // namespace patchbay::vmtest
