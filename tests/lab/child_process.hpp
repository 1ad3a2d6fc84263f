// Runs a test binary (or a tool) as a child process for tests that check what a whole process
// leaves behind: the child's own PATCHBAY_* settings are exactly the ones the test gives it.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace pbtest {

struct ChildResult {
  int status = 0;      // as waitpid() reports it
  std::string output;  // stdout and stderr, interleaved

  bool exited_with(int code) const { return WIFEXITED(status) && WEXITSTATUS(status) == code; }
};

// Runs argv[0] (a path) with this process's environment minus every PATCHBAY_* variable, plus
// `env` ("NAME=value" entries), and waits for it.
inline ChildResult run_child(const std::vector<std::string>& argv,
                             const std::vector<std::string>& env = {}) {
  std::vector<std::string> env_entries = env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "PATCHBAY_", 9) != 0) env_entries.emplace_back(*e);
  }
  std::vector<char*> envp;
  for (auto& s : env_entries) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argvp;
  for (auto& s : args) argvp.push_back(s.data());
  argvp.push_back(nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw std::runtime_error("pipe2: " + std::string(strerror(errno)));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, args[0].c_str(), &actions, nullptr, argvp.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  ChildResult result;
  if (rc != 0) {
    ::close(fds[0]);
    throw std::runtime_error("posix_spawn " + args[0] + ": " + strerror(rc));
  }
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    result.output.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  while (::waitpid(pid, &result.status, 0) < 0 && errno == EINTR) {
  }
  return result;
}

}  // namespace pbtest
