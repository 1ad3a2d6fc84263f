// Regression tests for teardown, rollback and concurrency corner cases.
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "patchbay/gtest.hpp"
#include "process_watch.hpp"
#include "traffic.hpp"

namespace {

using patchbay_test::wait_gone;

using patchbay::Device;
using patchbay::Error;
using patchbay::ErrorKind;
using patchbay::Lab;
using patchbay::Router;
using patchbay::RouterPreset;
using ::testing::HasSubstr;

class RobustnessTest : public patchbay_test::NeedsLabs {};

TEST_F(RobustnessTest, LabDestroyedWhileAnotherThreadRunsCodeInItTearsDownCompletely) {
  int threads_before = patchbay::current_thread_count();
  std::filesystem::path outdir;
  std::thread caller;
  {
    Lab lab;
    outdir = lab.outdir();
    Router r = lab.add_router("r").build();
    Device d = lab.add_device("d").iface("eth0", r).build();
    std::promise<void> started;
    auto running = started.get_future();
    caller = std::thread([d, &started] {
      try {
        d.run([&] {
          started.set_value();
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
        });
      } catch (const Error&) {
      }
    });
    running.wait();
  }  // ~Lab while d.run() is in flight: it waits for the job, then frees everything
  caller.join();
  EXPECT_FALSE(std::filesystem::exists(outdir));
  EXPECT_EQ(patchbay::current_thread_count(), threads_before);
}

TEST_F(RobustnessTest, LabDestroyedFromItsOwnThreadDoesNotCrash) {
  int threads_before = patchbay::current_thread_count();
  auto lab = std::make_shared<std::optional<Lab>>();
  lab->emplace();
  Router r = (*lab)->add_router("r").build();
  Device d = (*lab)->add_device("d").iface("eth0", r).build();
  std::future<void> done = d.spawn_thread([lab] { lab->reset(); });
  done.get();
  EXPECT_FALSE(d.alive());
  // The teardown finishes on a thread of its own once the node's thread has returned.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (patchbay::current_thread_count() != threads_before &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(patchbay::current_thread_count(), threads_before);
}

TEST_F(RobustnessTest, ThreadWaitingForAnotherNodesProcessDoesNotBlockTeardown) {
  std::future<void> waiter;
  {
    Lab lab;
    Router r = lab.add_router("r").build();
    Device server = lab.add_device("server").iface("eth0", r).build();
    Device client = lab.add_device("client").iface("eth0", r).build();
    patchbay::Process p = server.spawn_command({"sleep", "1000"});
    // A thread of one node waits for a process of another.
    waiter = client.spawn_thread([p]() mutable { p.wait(); });
  }  // must not hang: every node's processes die before any node's threads are joined
  EXPECT_EQ(waiter.wait_for(std::chrono::seconds(0)), std::future_status::ready);
}

TEST_F(RobustnessTest, RemovingNodesFromInsideTheLabIsRefused) {
  Lab lab;
  Router r = lab.add_router("r").build();
  Device a = lab.add_device("a").iface("eth0", r).build();
  Device b = lab.add_device("b").iface("eth0", r).build();
  try {
    b.run([&] { lab.remove_device(a); });
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("inside the lab"));
  }
  EXPECT_TRUE(a.alive());
  lab.remove_device(a);  // from outside it works
  EXPECT_FALSE(a.alive());
}

TEST_F(RobustnessTest, FailedKernelStepLeavesNoRouterPortBehind) {
  Lab lab;
  Router dc = lab.add_router("dc").build();
  // The next device's interfaces become ports v5 and v6 on dc. Occupy v6 so the second veth
  // fails in the kernel after the first one was created.
  auto r = dc.run_command({"ip", "link", "add", "dev", "v6", "type", "bridge"});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  try {
    (void)lab.add_device("pc").iface("eth0", dc).iface("eth1", dc).build();
    FAIL() << "expected a kernel error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kKernel);
    EXPECT_THAT(e.what(), HasSubstr("v6"));
  }
  EXPECT_THAT(dc.describe_kernel_state(), ::testing::Not(HasSubstr(" v5 ")));
  Device pc = lab.add_device("pc").iface("eth0", dc).build();  // same id, same port name
  EXPECT_TRUE(patchbay_test::ping_ok(pc, dc.lan_gateway()->to_string()));
}

TEST_F(RobustnessTest, DaemonizedProcessDiesWithItsNode) {
  Lab lab;
  Router r = lab.add_router("r").build();
  Device d = lab.add_device("d").iface("eth0", r).build();
  // setsid --fork leaves the process group the node kills, and its parent exits at once.
  patchbay::Process daemon = d.spawn_command({"setsid", "--fork", "sleep", "1000"});
  daemon.wait();
  // Find the daemon by its network namespace: it is the only sleep in d.
  ino_t d_netns = d.run([] {
    struct stat st {};
    ::stat("/proc/thread-self/ns/net", &st);
    return st.st_ino;
  });
  pid_t found = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    struct stat st {};
    if (::stat((e.path() / "ns/net").c_str(), &st) == 0 && st.st_ino == d_netns)
      found = std::stoi(name);
  }
  ASSERT_NE(found, 0) << "the daemon runs in d";
  lab.remove_device(d);
  EXPECT_TRUE(wait_gone(found, std::chrono::seconds(5)));
}

TEST_F(RobustnessTest, FinishedThreadsAreJoined) {
  Lab lab;
  Router r = lab.add_router("r").build();
  Device d = lab.add_device("d").iface("eth0", r).build();
  for (int i = 0; i < 50; ++i) d.spawn_thread([] {}).get();
  EXPECT_LE(lab.thread_count(), 3u) << "control thread + at most the last user thread";
}

TEST_F(RobustnessTest, BuildersRefuseHandlesOfAnotherLab) {
  Lab one;
  Lab two;
  Router r1 = one.add_router("r").build();
  (void)two.add_router("r").build();
  try {
    (void)two.add_device("d").iface("eth0", r1).build();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("belongs to another lab"));
  }
}

TEST_F(RobustnessTest, ExplicitLanMayNotOverlapTheIxAndPoolsSkipIt) {
  Lab lab;
  try {
    (void)lab.add_router("bad").lan_cidr("198.18.0.0/25").build();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("overlaps the IX"));
  }
  Router a = lab.add_router("a").nat(patchbay::Nat::Home).lan_cidr("10.0.1.0/24").build();
  Router b = lab.add_router("b").nat(patchbay::Nat::Home).build();
  EXPECT_EQ(a.lan_v4()->to_string(), "10.0.1.0/24");
  EXPECT_EQ(b.lan_v4()->to_string(), "10.0.2.0/24");
}

}  // namespace
