// PidNamespace: the init lives, and every member dies with it — when the lab destroys it, and
// when the process that created it is SIGKILLed.
#include "pid_namespace.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "unique_fd.hpp"

extern char** environ;

namespace patchbay::internal {
namespace {

constexpr int kExitTimeoutMs = 10000;

ino_t inode_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

ino_t fd_inode(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

// Outer pids of all processes whose PID namespace is `ns`.
std::vector<pid_t> members_of(ino_t ns) {
  std::vector<pid_t> pids;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return pids;
  while (struct dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    if (inode_of(std::string("/proc/") + e->d_name + "/ns/pid") == ns) {
      pids.push_back(static_cast<pid_t>(pid));
    }
  }
  ::closedir(proc);
  return pids;
}

std::string nspid_line(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("NSpid:", 0) == 0) return line;
  }
  return "";
}

UniqueFd open_pidfd(pid_t pid) {
  return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
}

// True once the process behind `pidfd` has exited (waits up to `timeout_ms`).
bool exited_within(int pidfd, int timeout_ms) {
  struct pollfd p {
    pidfd, POLLIN, 0
  };
  return ::poll(&p, 1, timeout_ms) == 1;
}

// Starts `argv` as a member of the namespace: setns(CLONE_NEWPID) affects only children the
// calling thread forks afterwards, so it is done on a throwaway thread.
pid_t spawn_member(int ns_fd, const std::vector<std::string>& argv,
                   const posix_spawn_file_actions_t* actions = nullptr) {
  pid_t pid = -1;
  std::thread([&] {
    if (::setns(ns_fd, CLONE_NEWPID) != 0) return;
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (::posix_spawnp(&pid, args[0], actions, nullptr, args.data(), environ) != 0) pid = -1;
  }).join();
  return pid;
}

TEST(PidNamespaceTest, StartCreatesInitOfNewNamespace) {
  PidNamespace ns = PidNamespace::start();
  ASSERT_GT(ns.init_pid(), 0);
  EXPECT_EQ(::kill(ns.init_pid(), 0), 0);
  ino_t ino = fd_inode(ns.ns_fd());
  EXPECT_NE(ino, 0u);
  EXPECT_EQ(inode_of("/proc/" + std::to_string(ns.init_pid()) + "/ns/pid"), ino);
  EXPECT_NE(inode_of("/proc/self/ns/pid"), ino);
  // Inside its namespace the init is PID 1.
  EXPECT_EQ(nspid_line(ns.init_pid()), "NSpid:\t" + std::to_string(ns.init_pid()) + "\t1");
  EXPECT_EQ(members_of(ino), std::vector<pid_t>{ns.init_pid()});
}

TEST(PidNamespaceTest, MemberSeesItselfAsSmallPid) {
  PidNamespace ns = PidNamespace::start();
  pid_t child = spawn_member(ns.ns_fd(), {"sleep", "1000"});
  ASSERT_GT(child, 0);
  EXPECT_EQ(nspid_line(child), "NSpid:\t" + std::to_string(child) + "\t2");
  ::kill(child, SIGKILL);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
}

TEST(PidNamespaceTest, DestroyingKillsMembersAndOrphans) {
  std::optional<PidNamespace> ns(PidNamespace::start());
  ino_t ino = fd_inode(ns->ns_fd());
  pid_t init = ns->init_pid();

  // An orphan: its shell exits at once, so the init inherits the background sleep.
  pid_t shell = spawn_member(ns->ns_fd(), {"sh", "-c", "sleep 1000 & exit 0"});
  ASSERT_GT(shell, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(shell, &status, 0), shell);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::vector<pid_t> members = members_of(ino);
  ASSERT_EQ(members.size(), 2u);
  pid_t orphan = members[0] == init ? members[1] : members[0];
  UniqueFd orphan_fd = open_pidfd(orphan);
  ASSERT_TRUE(orphan_fd.valid());

  // A direct child of ours, reaped by a waiter as ProcessState would.
  pid_t child = spawn_member(ns->ns_fd(), {"sleep", "1000"});
  ASSERT_GT(child, 0);
  int child_status = 0;
  std::thread waiter([&] { ::waitpid(child, &child_status, 0); });

  EXPECT_FALSE(exited_within(orphan_fd.get(), 0));
  ns.reset();
  waiter.join();
  EXPECT_TRUE(WIFSIGNALED(child_status) && WTERMSIG(child_status) == SIGKILL);
  EXPECT_TRUE(exited_within(orphan_fd.get(), kExitTimeoutMs));
  EXPECT_TRUE(members_of(ino).empty());
  EXPECT_EQ(::kill(init, 0), -1);  // the init was reaped, not left as a zombie
}

TEST(PidNamespaceTest, DestroyingDoesNotHangOnUnreapedChildren) {
  // A child forked into the namespace and never reaped would keep the dying init waiting in the
  // kernel forever; the destructor reaps such strays.
  std::optional<PidNamespace> ns(PidNamespace::start());
  pid_t child = spawn_member(ns->ns_fd(), {"sleep", "1000"});
  ASSERT_GT(child, 0);
  ns.reset();
  errno = 0;
  EXPECT_EQ(::waitpid(child, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(PidNamespaceTest, MovedFromObjectDoesNotOwnTheInit) {
  std::optional<PidNamespace> a(PidNamespace::start());
  pid_t init = a->init_pid();
  PidNamespace b(std::move(*a));
  a.reset();  // must leave b's init alone
  EXPECT_EQ(::kill(init, 0), 0);
  EXPECT_EQ(b.init_pid(), init);
}

// Run only as a subprocess of MembersDieWhenCreatorIsKilled: starts a namespace with a member,
// reports both pids on fd 3 and waits to be SIGKILLed.
TEST(PidNamespaceTest, DISABLED_HelperHoldsNamespaceUntilKilled) {
  if (std::getenv("PATCHBAY_PIDNS_HELPER") == nullptr) GTEST_SKIP();
  PidNamespace ns = PidNamespace::start();
  pid_t member = spawn_member(ns.ns_fd(), {"sleep", "1000"});
  std::string report = std::to_string(ns.init_pid()) + " " + std::to_string(member) + "\n";
  if (::write(3, report.data(), report.size()) != static_cast<ssize_t>(report.size())) return;
  ::close(3);
  for (;;) ::pause();
}

TEST(PidNamespaceTest, MembersDieWhenCreatorIsKilled) {
  char exe[4096];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  ASSERT_GT(n, 0);
  exe[n] = '\0';
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 3);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.emplace_back("PATCHBAY_PIDNS_HELPER=1");
  std::vector<char*> env;
  for (auto& s : env_strings) env.push_back(s.data());
  env.push_back(nullptr);
  std::string filter = "--gtest_filter=PidNamespaceTest.DISABLED_HelperHoldsNamespaceUntilKilled";
  std::string also = "--gtest_also_run_disabled_tests";
  char* argv[] = {exe, filter.data(), also.data(), nullptr};
  pid_t helper = -1;
  ASSERT_EQ(::posix_spawn(&helper, exe, &actions, nullptr, argv, env.data()), 0);
  posix_spawn_file_actions_destroy(&actions);
  write_end.reset();

  std::string report;
  char buf[64];
  while (report.find('\n') == std::string::npos) {
    ssize_t got = ::read(read_end.get(), buf, sizeof(buf));
    if (got <= 0) break;
    report.append(buf, static_cast<std::size_t>(got));
  }
  pid_t init = -1;
  pid_t member = -1;
  std::istringstream(report) >> init >> member;
  ASSERT_GT(init, 0) << "helper reported '" << report << "'";
  ASSERT_GT(member, 0);
  UniqueFd init_fd = open_pidfd(init);
  UniqueFd member_fd = open_pidfd(member);
  ASSERT_TRUE(init_fd.valid());
  ASSERT_TRUE(member_fd.valid());
  EXPECT_FALSE(exited_within(member_fd.get(), 0));

  ASSERT_EQ(::kill(helper, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(helper, &status, 0), helper);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_TRUE(exited_within(init_fd.get(), kExitTimeoutMs));
  EXPECT_TRUE(exited_within(member_fd.get(), kExitTimeoutMs));
}

}  // namespace
}  // namespace patchbay::internal
