// Commands run inside a node: what to run (Command) and the running child (Process).
//
//   patchbay::Process server = srv.spawn_command({"iperf3", "-s", "-1"});
//   patchbay::CommandResult r = pc.run_command({"ping", "-c", "1", srv.ip()->to_string()});
//   EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
//   server.wait_for(std::chrono::seconds(10));
//
// stdout and stderr go to files in the lab's output directory
// (`<kind>.<node>.<label>[.<n>].stdout.log`, e.g. `device.laptop.ping.stdout.log`), so they survive
// as artifacts when a test fails. Every child is killed when its lab is destroyed, and also when
// the test process dies, even by SIGKILL.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace patchbay {

namespace internal {
struct ProcessState;
}

class Command {
 public:
  Command(std::initializer_list<std::string> argv) : argv_(argv) {}
  explicit Command(std::vector<std::string> argv) : argv_(std::move(argv)) {}

  Command& arg(std::string a) {
    argv_.push_back(std::move(a));
    return *this;
  }
  // Adds or overrides one environment variable; the rest is inherited from the test process.
  Command& env(std::string key, std::string value) {
    env_.emplace_back(std::move(key), std::move(value));
    return *this;
  }
  // Names the log files; defaults to the program's file name.
  Command& label(std::string l) {
    label_ = std::move(l);
    return *this;
  }

  const std::vector<std::string>& argv() const { return argv_; }
  const std::vector<std::pair<std::string, std::string>>& env() const { return env_; }
  const std::string& label() const { return label_; }

 private:
  std::vector<std::string> argv_;
  std::vector<std::pair<std::string, std::string>> env_;
  std::string label_;
};

struct CommandResult {
  int exit_code = -1;  // 128 + signal number when killed by a signal, as shells report it
  std::string stdout_text;
  std::string stderr_text;
  bool success() const { return exit_code == 0; }
};

// A child process started in a node. Copies share the same child. Destroying the handle does
// not stop the child; the lab does when it goes away.
class Process {
 public:
  pid_t pid() const;
  bool running() const;
  // Waits for exit; returns the exit code (128 + signal for signals).
  int wait();
  // Waits at most `timeout`; nullopt if the child is still running.
  std::optional<int> wait_for(std::chrono::milliseconds timeout);
  // Sends SIGKILL to the child's process group and reaps it.
  void kill();
  // The exit code once the child has exited.
  std::optional<int> exit_code() const;

  // Output written so far (the whole output once the child has exited).
  std::string stdout_text() const;
  std::string stderr_text() const;
  const std::filesystem::path& stdout_path() const;
  const std::filesystem::path& stderr_path() const;

  explicit Process(std::shared_ptr<internal::ProcessState> state) : state_(std::move(state)) {}

 private:
  std::shared_ptr<internal::ProcessState> state_;
};

}  // namespace patchbay
