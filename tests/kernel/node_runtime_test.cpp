// NodeRuntime: every execution context of a node runs inside the node's network namespace,
// starts lazily, and is torn down without leaving threads or processes behind.
#include "node_runtime.hpp"

#include <dirent.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "netns.hpp"
#include "patchbay/bootstrap.hpp"
#include "patchbay/error.hpp"
#include "pid_namespace.hpp"
#include "unique_fd.hpp"
#include "worker_thread.hpp"

namespace patchbay::internal {
namespace {

using std::chrono::milliseconds;

constexpr int kTimeoutMs = 10000;

ino_t inode_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

UniqueFd open_pidfd(pid_t pid) {
  return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
}

bool exited_within(int pidfd, int timeout_ms) {
  struct pollfd p {
    pidfd, POLLIN, 0
  };
  return ::poll(&p, 1, timeout_ms) == 1;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Waits (on inotify events, not by sleeping) until `path` holds a complete first line.
std::string wait_for_line(const std::filesystem::path& path) {
  UniqueFd inotify(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!inotify.valid()) return "";
  ::inotify_add_watch(inotify.get(), path.c_str(), IN_MODIFY | IN_CLOSE_WRITE);
  auto deadline = std::chrono::steady_clock::now() + milliseconds(kTimeoutMs);
  for (;;) {
    std::string text = read_file(path);
    if (auto nl = text.find('\n'); nl != std::string::npos) return text.substr(0, nl);
    auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return "";
    struct pollfd p {
      inotify.get(), POLLIN, 0
    };
    if (::poll(&p, 1, static_cast<int>(left.count())) > 0) {
      char buf[4096];
      while (::read(inotify.get(), buf, sizeof(buf)) > 0) {
      }
    }
  }
}

// Outer pid of the process whose pid inside the namespace `ns` is `inner`.
pid_t outer_pid(ino_t ns, pid_t inner) {
  DIR* proc = ::opendir("/proc");
  pid_t found = -1;
  while (struct dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    std::string dir = std::string("/proc/") + e->d_name;
    if (inode_of(dir + "/ns/pid") != ns) continue;
    std::ifstream status(dir + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("NSpid:", 0) != 0) continue;
      std::istringstream fields(line.substr(6));
      pid_t last = -1;
      for (pid_t v; fields >> v;) last = v;
      if (last == inner) found = static_cast<pid_t>(pid);
    }
  }
  ::closedir(proc);
  return found;
}

// Children of this process (all threads), as outer pids.
std::vector<pid_t> own_children() {
  std::vector<pid_t> pids;
  DIR* tasks = ::opendir("/proc/self/task");
  while (struct dirent* t = ::readdir(tasks)) {
    if (t->d_name[0] == '.') continue;
    std::ifstream children(std::string("/proc/self/task/") + t->d_name + "/children");
    for (pid_t p; children >> p;) pids.push_back(p);
  }
  ::closedir(tasks);
  return pids;
}

// The thread count of this process once it reaches `expected` (or after ~2 s). A joined thread
// may still be counted for a moment: join() returns when the thread's tid is cleared, slightly
// before the kernel releases it.
int settled_thread_count(int expected) {
#if defined(__SANITIZE_THREAD__)
  return expected;  // TSan starts a background thread of its own on first use
#endif
  int count = current_thread_count();
  for (int i = 0; i < 2000 && count != expected; ++i) {
    std::this_thread::sleep_for(milliseconds(1));
    count = current_thread_count();
  }
  return count;
}

class NodeRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    baseline_threads_ = current_thread_count();
    control_.emplace("control");
    netns_thread_.emplace("netns");
    netns_thread_->call([this] { netns_ = create_netns_on_this_thread("n1"); });
    char dir[] = "/tmp/pb_node_runtime_XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    outdir_ = std::filesystem::path(dir) / "logs";  // does not exist yet: spawn creates it
  }

  void TearDown() override {
    runtime_.reset();
    pidns_.reset();  // after the runtime: its children are reaped by then
    control_.reset();
    netns_thread_.reset();
    netns_.reset();
    std::filesystem::remove_all(outdir_.parent_path());
    EXPECT_EQ(settled_thread_count(baseline_threads_), baseline_threads_) << "threads leaked";
    // Only the children of this test's namespace are checked: none may survive.
    EXPECT_TRUE(own_children().empty());
  }

  NodeRuntime& runtime() {
    if (!runtime_) {
      NodeRuntimeConfig config;
      config.node_name = "n1";
      config.kind = "device";
      config.netns_fd = netns_.get();
      config.outdir = outdir_;
      // Like the lab: the namespace is created on first use, from a long-lived thread (the
      // init's PR_SET_PDEATHSIG is tied to the thread that created it).
      config.pid_namespace_fd = [this] {
        return control_->invoke([this] {
          if (!pidns_) pidns_.emplace(PidNamespace::start());
          return pidns_->ns_fd();
        });
      };
      runtime_ = std::make_unique<NodeRuntime>(std::move(config));
    }
    return *runtime_;
  }

  ino_t node_inode() const { return netns_inode(netns_.get()); }
  ino_t pidns_inode() const {
    struct stat st {};
    return pidns_ && ::fstat(pidns_->ns_fd(), &st) == 0 ? st.st_ino : 0;
  }

  int baseline_threads_ = 0;
  std::optional<WorkerThread> netns_thread_;
  UniqueFd netns_;
  std::optional<WorkerThread> control_;
  std::optional<PidNamespace> pidns_;
  std::filesystem::path outdir_;
  std::unique_ptr<NodeRuntime> runtime_;
};

TEST_F(NodeRuntimeTest, NoThreadUntilFirstUse) {
  int before = current_thread_count();
  EXPECT_EQ(runtime().thread_count(), 0u);
  EXPECT_EQ(current_thread_count(), before);
  EXPECT_FALSE(pidns_.has_value());

  runtime().run_blocking([] {});
  EXPECT_EQ(runtime().thread_count(), 1u);
  runtime().run_blocking([] {});
  EXPECT_EQ(runtime().thread_count(), 1u);  // the worker is reused
  runtime().io_context();
  EXPECT_EQ(runtime().thread_count(), 2u);
  runtime().start_user_thread([](std::stop_token stop) {
    std::mutex mu;
    std::condition_variable_any cv;
    std::unique_lock lock(mu);
    cv.wait(lock, stop, [] { return false; });
  });
  EXPECT_EQ(runtime().thread_count(), 3u);
  EXPECT_EQ(settled_thread_count(before + 3), before + 3);
  EXPECT_FALSE(pidns_.has_value());  // only spawn needs the PID namespace

  runtime().shutdown();
  EXPECT_EQ(runtime().thread_count(), 0u);
  EXPECT_EQ(settled_thread_count(before), before);
}

TEST_F(NodeRuntimeTest, RunBlockingRunsInNodeNamespace) {
  ino_t seen = 0;
  runtime().run_blocking([&] { seen = netns_inode(-1); });
  EXPECT_EQ(seen, node_inode());
  EXPECT_NE(seen, netns_inode(-1));  // the caller stays where it was
}

TEST_F(NodeRuntimeTest, RunBlockingPropagatesExceptions) {
  try {
    runtime().run_blocking([] { throw std::runtime_error("boom"); });
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom");
  }
  // The worker survives a failed job.
  int value = 0;
  runtime().run_blocking([&] { value = 7; });
  EXPECT_EQ(value, 7);
}

TEST_F(NodeRuntimeTest, IoContextRunsCoroutinesInNodeNamespace) {
  boost::asio::io_context& io = runtime().io_context();
  EXPECT_EQ(&io, &runtime().io_context());
  std::future<ino_t> seen = boost::asio::co_spawn(
      io, []() -> boost::asio::awaitable<ino_t> { co_return netns_inode(-1); },
      boost::asio::use_future);
  ASSERT_EQ(seen.wait_for(milliseconds(kTimeoutMs)), std::future_status::ready);
  EXPECT_EQ(seen.get(), node_inode());
}

TEST_F(NodeRuntimeTest, ShutdownAbandonsPendingCoroutines) {
  std::future<void> pending = boost::asio::co_spawn(
      runtime().io_context(),
      []() -> boost::asio::awaitable<void> {
        boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor,
                                        std::chrono::hours(1));
        co_await timer.async_wait(boost::asio::use_awaitable);
      },
      boost::asio::use_future);
  runtime().shutdown();
  ASSERT_EQ(pending.wait_for(milliseconds(0)), std::future_status::ready);
  EXPECT_THROW(pending.get(), std::future_error);
}

TEST_F(NodeRuntimeTest, UserThreadsRunInNamespaceAndAreJoinedOnShutdown) {
  std::promise<ino_t> seen;
  std::future<ino_t> seen_result = seen.get_future();
  std::atomic<bool> finished{false};
  runtime().start_user_thread([&](std::stop_token stop) {
    seen.set_value(netns_inode(-1));
    std::mutex mu;
    std::condition_variable_any cv;
    std::unique_lock lock(mu);
    cv.wait(lock, stop, [] { return false; });
    finished = true;
  });
  EXPECT_EQ(seen_result.get(), node_inode());
  EXPECT_FALSE(finished);
  runtime().shutdown();
  EXPECT_TRUE(finished);  // stop requested and joined before shutdown returned
}

TEST_F(NodeRuntimeTest, CallsAfterShutdownThrowRemoved) {
  runtime().run_blocking([] {});
  runtime().shutdown();
  runtime().shutdown();  // idempotent
  auto expect_removed = [](const std::function<void()>& call) {
    try {
      call();
      ADD_FAILURE() << "no exception";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kRemoved);
      EXPECT_EQ(e.culprit(), "n1");
      EXPECT_STREQ(e.what(), "node 'n1' was removed");
    }
  };
  expect_removed([&] { runtime().run_blocking([] {}); });
  expect_removed([&] { runtime().io_context(); });
  expect_removed([&] { runtime().start_user_thread([](std::stop_token) {}); });
  expect_removed([&] { runtime().spawn({"true"}); });
  EXPECT_EQ(runtime().thread_count(), 0u);
}

TEST_F(NodeRuntimeTest, ShutdownFromOwnThreadIsRefused) {
  runtime().run_blocking([&] {
    try {
      runtime().shutdown();
      ADD_FAILURE() << "no exception";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    }
  });
  runtime().run_blocking([] {});  // still usable
}

TEST_F(NodeRuntimeTest, SpawnCapturesExitCodeAndOutput) {
  Process p = runtime().spawn({"sh", "-c", "echo hi; echo err >&2; exit 3"});
  EXPECT_EQ(p.wait(), 3);
  EXPECT_EQ(p.exit_code(), 3);
  EXPECT_FALSE(p.running());
  EXPECT_EQ(p.stdout_text(), "hi\n");
  EXPECT_EQ(p.stderr_text(), "err\n");
  EXPECT_EQ(p.stdout_path(), outdir_ / "device.n1.sh.stdout.log");
  EXPECT_EQ(p.stderr_path(), outdir_ / "device.n1.sh.stderr.log");
}

TEST_F(NodeRuntimeTest, RepeatedLabelsGetNumberedLogFiles) {
  EXPECT_EQ(runtime().spawn({"sh", "-c", "echo one"}).wait(), 0);
  Process second = runtime().spawn({"sh", "-c", "echo two"});
  EXPECT_EQ(second.wait(), 0);
  Process third = runtime().spawn({"/bin/sh", "-c", "echo three"});
  EXPECT_EQ(third.wait(), 0);
  Process labelled = runtime().spawn(Command({"true"}).label("my server/1"));
  EXPECT_EQ(labelled.wait(), 0);
  EXPECT_EQ(read_file(outdir_ / "device.n1.sh.stdout.log"), "one\n");
  EXPECT_EQ(second.stdout_path(), outdir_ / "device.n1.sh.2.stdout.log");
  EXPECT_EQ(second.stdout_text(), "two\n");
  EXPECT_EQ(third.stdout_path(), outdir_ / "device.n1.sh.3.stdout.log");
  EXPECT_EQ(labelled.stdout_path(), outdir_ / "device.n1.my_server_1.stdout.log");
  EXPECT_TRUE(std::filesystem::exists(labelled.stderr_path()));
}

TEST_F(NodeRuntimeTest, SpawnRunsInNodeNetworkAndLabPidNamespace) {
  Process p = runtime().spawn(
      {"sh", "-c", "echo $$; readlink /proc/self/ns/net; readlink /proc/self/ns/pid"});
  ASSERT_EQ(p.wait(), 0) << p.stderr_text();
  std::istringstream out(p.stdout_text());
  pid_t inner = -1;
  std::string net;
  std::string pid_ns;
  out >> inner >> net >> pid_ns;
  // PID 1 is the namespace's init; the command is one of the first processes after it, while
  // Process::pid() is the pid seen from outside.
  EXPECT_GE(inner, 2);
  EXPECT_LT(inner, 100);
  EXPECT_NE(inner, p.pid());
  EXPECT_EQ(net, "net:[" + std::to_string(node_inode()) + "]");
  ASSERT_TRUE(pidns_.has_value());
  EXPECT_EQ(pid_ns, "pid:[" + std::to_string(pidns_inode()) + "]");
}

TEST_F(NodeRuntimeTest, EnvironmentIsInheritedWithOverrides) {
  const char* path = std::getenv("PATH");
  ASSERT_NE(path, nullptr);
  Process p = runtime().spawn(
      Command({"sh", "-c", "echo \"$PB_TEST_VAR|$PATH\""}).env("PB_TEST_VAR", "v1"));
  EXPECT_EQ(p.wait(), 0);
  EXPECT_EQ(p.stdout_text(), "v1|" + std::string(path) + "\n");
}

TEST_F(NodeRuntimeTest, MissingCommandThrowsProcessError) {
  try {
    runtime().spawn({"patchbay-no-such-command", "x"});
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kProcess);
    EXPECT_EQ(e.culprit(), "n1");
    EXPECT_NE(std::string(e.what()).find("patchbay-no-such-command"), std::string::npos)
        << e.what();
  }
}

TEST_F(NodeRuntimeTest, FailedExecThrowsAndLeavesNoZombie) {
  std::filesystem::path not_executable = outdir_.parent_path() / "data.txt";
  std::ofstream(not_executable) << "not a program\n";
  try {
    runtime().spawn({not_executable.string()});
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kProcess);
    EXPECT_NE(std::string(e.what()).find(not_executable.string()), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("Permission denied"), std::string::npos) << e.what();
  }
  // The failed child was reaped: nothing of ours is left but the PID namespace's init.
  ASSERT_TRUE(pidns_.has_value());
  EXPECT_EQ(own_children(), std::vector<pid_t>{pidns_->init_pid()});
  // And the node still works.
  EXPECT_EQ(runtime().spawn({"true"}).wait(), 0);
}

TEST_F(NodeRuntimeTest, WaitForTimesOutWhileRunningAndKillReportsSignal) {
  Process p = runtime().spawn({"sleep", "1000"});
  EXPECT_TRUE(p.running());
  EXPECT_EQ(p.wait_for(milliseconds(20)), std::nullopt);
  EXPECT_EQ(p.wait_for(milliseconds(0)), std::nullopt);
  EXPECT_EQ(p.exit_code(), std::nullopt);
  p.kill();
  EXPECT_EQ(p.exit_code(), 137);
  EXPECT_FALSE(p.running());
  EXPECT_EQ(p.wait(), 137);
  EXPECT_EQ(p.wait_for(milliseconds(0)), 137);
  p.kill();  // harmless once reaped
}

TEST_F(NodeRuntimeTest, ConcurrentWaitersSeeTheSameExitCode) {
  Process p = runtime().spawn({"sleep", "1000"});
  auto a = std::async(std::launch::async, [p]() mutable { return p.wait(); });
  auto b = std::async(std::launch::async,
                      [p]() mutable { return p.wait_for(milliseconds(kTimeoutMs)); });
  p.kill();
  EXPECT_EQ(a.get(), 137);
  EXPECT_EQ(b.get(), 137);
}

TEST_F(NodeRuntimeTest, ShutdownKillsChildrenAndGrandchildren) {
  Process sleeper = runtime().spawn({"sleep", "1000"});
  // A helper in the command's process group (dies with the group)...
  Process group = runtime().spawn({"sh", "-c", "sleep 1000 & echo $!; wait"});
  // ...and one that escapes it into a session of its own (dies with the PID namespace).
  Process escaped = runtime().spawn({"sh", "-c", "setsid sleep 1000 & echo $!; wait"});
  std::string group_inner = wait_for_line(group.stdout_path());
  std::string escaped_inner = wait_for_line(escaped.stdout_path());
  ASSERT_FALSE(group_inner.empty());
  ASSERT_FALSE(escaped_inner.empty());
  pid_t group_child = outer_pid(pidns_inode(), std::stoi(group_inner));
  pid_t escaped_child = outer_pid(pidns_inode(), std::stoi(escaped_inner));
  ASSERT_GT(group_child, 0);
  ASSERT_GT(escaped_child, 0);
  UniqueFd group_fd = open_pidfd(group_child);
  UniqueFd escaped_fd = open_pidfd(escaped_child);
  ASSERT_TRUE(group_fd.valid());
  ASSERT_TRUE(escaped_fd.valid());

  runtime().shutdown();
  EXPECT_EQ(sleeper.exit_code(), 137);
  EXPECT_EQ(group.exit_code(), 137);
  EXPECT_EQ(escaped.exit_code(), 137);
  EXPECT_TRUE(exited_within(group_fd.get(), kTimeoutMs));
  EXPECT_FALSE(exited_within(escaped_fd.get(), 0));  // outside the group: the namespace's job

  pidns_.reset();  // returns once every member is gone
  EXPECT_TRUE(exited_within(escaped_fd.get(), 0));
}

}  // namespace
}  // namespace patchbay::internal
