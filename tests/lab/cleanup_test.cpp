// Nothing leaks: destroying a lab frees namespaces, threads and processes, and a test process
// killed with SIGKILL leaves nothing of its lab behind.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "patchbay/gtest.hpp"
#include "process_watch.hpp"
#include "traffic.hpp"

extern char** environ;

namespace {

using patchbay_test::wait_gone;

using patchbay::Device;
using patchbay::Lab;
using patchbay::Router;
using patchbay::RouterPreset;

// Network namespaces this process holds: through fds or through its threads.
std::set<ino_t> held_netns() {
  std::set<ino_t> out;
  for (const char* dir : {"/proc/self/fd", "/proc/self/task"}) {
    DIR* d = ::opendir(dir);
    if (d == nullptr) continue;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::string path = std::string(dir) + "/" + e->d_name;
      if (std::string(dir) == "/proc/self/task") path += "/ns/net";
      char target[64] = {};
      if (::readlink(path.c_str(), target, sizeof target - 1) > 0 &&
          std::string(target).rfind("net:[", 0) == 0) {
        out.insert(std::stoull(std::string(target).substr(5)));
      }
    }
    ::closedir(d);
  }
  return out;
}

std::vector<pid_t> processes_where(
    const std::function<bool(pid_t, const std::string& stat)>& pred) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    pid_t pid = std::atoi(e->d_name);
    // Plain read(2): a process may exit between open and read (ESRCH), which std::ifstream
    // reports by throwing from its buffer; here it just means "gone".
    std::string stat;
    int fd = ::open((std::string("/proc/") + e->d_name + "/stat").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      char buf[1024];
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) stat.assign(buf, static_cast<std::size_t>(n));
      ::close(fd);
    }
    if (!stat.empty() && pred(pid, stat)) out.push_back(pid);
  }
  ::closedir(d);
  return out;
}

pid_t parent_of(const std::string& stat) {
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::string state;
  pid_t ppid = 0;
  rest >> state >> ppid;
  return ppid;
}

std::vector<pid_t> my_children() {
  pid_t self = ::getpid();
  return processes_where([self](pid_t, const std::string& s) { return parent_of(s) == self; });
}

ino_t netns_of(pid_t pid) {
  struct stat st {};
  if (::stat(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), &st) != 0) return 0;
  return st.st_ino;
}

class CleanupTest : public patchbay_test::NeedsLabs {};

TEST_F(CleanupTest, DestroyingALabFreesNamespacesThreadsAndProcesses) {
  std::set<ino_t> netns_before = held_netns();
  int threads_before = patchbay::current_thread_count();
  std::filesystem::path outdir;
  {
    Lab lab;
    outdir = lab.outdir();
    EXPECT_TRUE(std::filesystem::is_directory(outdir));
    Router dc = lab.add_router("dc").preset(RouterPreset::Public).build();
    Router home = lab.add_router("home").preset(RouterPreset::Home).build();
    Device a = lab.add_device("a").iface("eth0", dc).build();
    Device b = lab.add_device("b").iface("eth0", home).build();
    a.run([] {});
    (void)b.spawn([]() -> boost::asio::awaitable<void> { co_return; }).get();
    (void)b.spawn_thread([] {}).get();
    patchbay::Process sleeper = a.spawn_command({"sleep", "1000"});
    EXPECT_GE(held_netns().size(), netns_before.size() + 5) << "lab root + 4 nodes";
    EXPECT_GT(patchbay::current_thread_count(), threads_before);
    EXPECT_FALSE(my_children().empty());
  }
  EXPECT_EQ(held_netns(), netns_before);
  EXPECT_EQ(patchbay::current_thread_count(), threads_before);
  EXPECT_THAT(my_children(), ::testing::IsEmpty());
  EXPECT_FALSE(std::filesystem::exists(outdir)) << "the lab's private temporary directory";
}

// Addresses and routes of the namespace this test thread lives in: the host's.
std::string host_network() {
  std::string out;
  for (const char* cmd :
       {"ip -o addr show", "ip route show table all", "ip -6 route show table all"}) {
    std::FILE* p = ::popen(cmd, "r");
    char buf[512];
    while (p != nullptr && std::fgets(buf, sizeof buf, p) != nullptr) {
      std::string line = buf;
      // Lifetimes tick down on their own; they are not configuration.
      for (const char* key : {" valid_lft ", " preferred_lft ", " expires "}) {
        auto at = line.find(key);
        if (at != std::string::npos) line = line.substr(0, at) + "\n";
      }
      out += line;
    }
    if (p != nullptr) ::pclose(p);
  }
  return out;
}

TEST_F(CleanupTest, HostNetworkIsUntouchedByALab) {
  std::string before = host_network();
  ASSERT_FALSE(before.empty());
  struct stat host {};
  ASSERT_EQ(::stat("/proc/thread-self/ns/net", &host), 0);
  {
    Lab lab;
    Router dc = lab.add_router("dc").preset(RouterPreset::Public).build();
    Router home = lab.add_router("home").preset(RouterPreset::Home).build();
    Device server = lab.add_device("server").iface("eth0", dc).build();
    Device laptop = lab.add_device("laptop").iface("eth0", home).build();
    EXPECT_NE(lab.ix().run([] {
      struct stat st {};
      ::stat("/proc/thread-self/ns/net", &st);
      return st.st_ino;
    }),
              host.st_ino);
    EXPECT_TRUE(patchbay_test::ping_ok(laptop, server.ip()->to_string()));
    laptop.link_down("eth0");
    laptop.link_up("eth0");
    lab.remove_device(laptop);
  }
  EXPECT_EQ(host_network(), before);
}

TEST_F(CleanupTest, RemovingADeviceStopsItsProcesses) {
  Lab lab;
  Router dc = lab.add_router("dc").build();
  Device a = lab.add_device("a").iface("eth0", dc).build();
  patchbay::Process p = a.spawn_command({"sleep", "1000"});
  pid_t pid = p.pid();
  lab.remove_device(a);
  EXPECT_TRUE(wait_gone(pid, std::chrono::seconds(5)));
  EXPECT_FALSE(p.running());
}

// The victim: runs only when the SIGKILL test starts this binary with the env var set.
TEST(CleanupChild, HoldLabUntilKilled) {
  const char* fd_text = std::getenv("PATCHBAY_CLEANUP_CHILD_FD");
  if (fd_text == nullptr) GTEST_SKIP() << "helper for SigkilledTestLeavesNothing";
  Lab lab;
  Router home = lab.add_router("home").preset(RouterPreset::Home).build();
  Device d = lab.add_device("d").iface("eth0", home).build();
  patchbay::Process sleeper = d.spawn_command({"sleep", "1000"});
  patchbay::Process shell = d.spawn_command({"sh", "-c", "sleep 1000 & echo started; wait"});
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (shell.stdout_text().find("started") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // condition wait with a deadline
  }
  std::ostringstream report;
  report << sleeper.pid() << " " << shell.pid() << " " << netns_of(sleeper.pid()) << " "
         << lab.outdir().string() << "\n";
  std::string text = report.str();
  int fd = std::atoi(fd_text);
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::pause();  // until SIGKILL
}

TEST_F(CleanupTest, SigkilledTestProcessLeavesNothingBehind) {
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  std::string fd_env = "PATCHBAY_CLEANUP_CHILD_FD=" + std::to_string(pipefd[1]);
  std::vector<std::string> env_store{fd_env};
  for (char** e = environ; *e != nullptr; ++e) env_store.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& s : env_store) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string exe = "/proc/self/exe";
  std::string filter = "--gtest_filter=CleanupChild.HoldLabUntilKilled";
  char* argv[] = {exe.data(), filter.data(), nullptr};
  pid_t child = 0;
  ASSERT_EQ(::posix_spawn(&child, exe.c_str(), nullptr, nullptr, argv, envp.data()), 0);
  ::close(pipefd[1]);

  pollfd p{pipefd[0], POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 30000), 1) << "the child never reported its lab";
  char buf[256] = {};
  ASSERT_GT(::read(pipefd[0], buf, sizeof buf - 1), 0);
  ::close(pipefd[0]);
  pid_t sleeper = 0, shell = 0;
  ino_t node_netns = 0;
  std::string victim_outdir;
  std::istringstream(buf) >> sleeper >> shell >> node_netns >> victim_outdir;
  ASSERT_GT(sleeper, 0);
  ASSERT_NE(node_netns, 0u);
  auto grandchildren =
      processes_where([shell](pid_t, const std::string& s) { return parent_of(s) == shell; });
  ASSERT_FALSE(grandchildren.empty()) << "the shell's background sleep";

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status));

  EXPECT_TRUE(wait_gone(sleeper, std::chrono::seconds(10)));
  EXPECT_TRUE(wait_gone(shell, std::chrono::seconds(10)));
  for (pid_t g : grandchildren)
    EXPECT_TRUE(wait_gone(g, std::chrono::seconds(10))) << "grandchild " << g;
  auto in_lab = processes_where(
      [node_netns](pid_t pid, const std::string&) { return netns_of(pid) == node_netns; });
  EXPECT_THAT(in_lab, ::testing::IsEmpty());

  // The victim's private directory could not be removed by the dead process; the next lab
  // started on this machine removes it.
  ASSERT_FALSE(victim_outdir.empty());
  { Lab next; }
  EXPECT_FALSE(std::filesystem::exists(victim_outdir)) << victim_outdir;
}

}  // namespace
