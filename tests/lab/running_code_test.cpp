// Code runs inside nodes four ways — blocking callable, asio coroutine, thread, OS command —
// always in the node's namespace, with results and exceptions carried back.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "patchbay/gtest.hpp"
#include "traffic.hpp"

namespace {

using patchbay::Device;
using patchbay::Router;
using patchbay::RouterPreset;
using ::testing::HasSubstr;
using namespace patchbay_test;

ino_t current_netns() {
  struct stat st {};
  ::stat("/proc/thread-self/ns/net", &st);
  return st.st_ino;
}

PATCHBAY_TOPOLOGY(TwoHosts) {
  Router dc = lab.add_router("dc").preset(RouterPreset::Public).build();
  Device a = lab.add_device("a").iface("eth0", dc).build();
  Device b = lab.add_device("b").iface("eth0", dc).build();
};

using RunningCodeTest = patchbay::testing::TopologyTest<TwoHosts>;

TEST_F(RunningCodeTest, NoThreadPerNamespaceUntilCodeRuns) {
  // Building three namespaces started only the lab's control thread.
  EXPECT_EQ(lab().thread_count(), 1u);
  topo().a.run([] {});
  EXPECT_EQ(lab().thread_count(), 2u);
}

TEST_F(RunningCodeTest, RunExecutesInsideTheNodeNamespace) {
  ino_t outside = current_netns();
  ino_t in_a = topo().a.run([] { return current_netns(); });
  ino_t in_b = topo().b.run([] { return current_netns(); });
  EXPECT_NE(in_a, outside);
  EXPECT_NE(in_a, in_b);
  EXPECT_EQ(topo().a.run([] { return current_netns(); }), in_a);
}

TEST_F(RunningCodeTest, RunRethrowsExceptions) {
  EXPECT_THROW(topo().a.run([]() -> int { throw std::logic_error("boom"); }), std::logic_error);
  EXPECT_EQ(topo().a.run([] { return 7; }), 7);  // the worker survives
}

TEST_F(RunningCodeTest, SpawnRunsCoroutinesOnTheNodeIoContext) {
  ino_t outside = current_netns();
  std::future<ino_t> ns = topo().a.spawn([]() -> asio::awaitable<ino_t> {
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(1));
    co_await t.async_wait(asio::use_awaitable);
    co_return current_netns();
  });
  EXPECT_NE(ns.get(), outside);
  std::future<void> failing = topo().a.spawn([]() -> asio::awaitable<void> {
    throw std::runtime_error("coroutine failed");
    co_return;
  });
  EXPECT_THROW(failing.get(), std::runtime_error);
}

TEST_F(RunningCodeTest, SpawnedCoroutineServesTcp) {
  auto seen = serve_one_tcp(topo().b, 6000);
  tcp_ping(topo().a, asio::ip::address(*topo().b.ip()), 6000);
  EXPECT_EQ(seen.get(), topo().a.ip()->to_string());
}

TEST_F(RunningCodeTest, SpawnThreadRunsInNamespaceAndReturnsResult) {
  ino_t in_a = topo().a.run([] { return current_netns(); });
  std::future<ino_t> t = topo().a.spawn_thread([] { return current_netns(); });
  EXPECT_EQ(t.get(), in_a);
  // A long-running thread is stopped and joined when the lab goes away.
  std::future<void> forever = topo().b.spawn_thread([](std::stop_token st) {
    while (!st.stop_requested()) std::this_thread::yield();
  });
  EXPECT_EQ(forever.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
}

TEST_F(RunningCodeTest, RunCommandCapturesOutputAndExitCode) {
  auto r = topo().a.run_command({"sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.stdout_text, "out\n");
  EXPECT_EQ(r.stderr_text, "err\n");
}

TEST_F(RunningCodeTest, CommandsSeeTheNodeNetwork) {
  auto r = topo().a.run_command({"cat", "/proc/net/dev"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.stdout_text, HasSubstr("eth0"));
  EXPECT_TRUE(ping_ok(topo().a, topo().b.ip()->to_string()));
}

TEST_F(RunningCodeTest, SpawnedCommandCanBeWaitedForAndKilled) {
  patchbay::Process p = topo().a.spawn_command({"sleep", "1000"});
  EXPECT_TRUE(p.running());
  EXPECT_EQ(p.wait_for(std::chrono::milliseconds(20)), std::nullopt);
  p.kill();
  EXPECT_EQ(p.exit_code(), 128 + 9);
}

TEST_F(RunningCodeTest, CommandOutputLandsInTheLabOutdir) {
  patchbay::Process p = topo().a.spawn_command(patchbay::Command{"echo", "hello"}.label("greeter"));
  EXPECT_EQ(p.wait(), 0);
  EXPECT_EQ(p.stdout_path().parent_path(), lab().outdir());
  EXPECT_THAT(p.stdout_path().filename().string(), HasSubstr("a.greeter"));
  EXPECT_EQ(p.stdout_text(), "hello\n");
}

TEST_F(RunningCodeTest, UnknownProgramIsAClearError) {
  try {
    topo().a.spawn_command({"no-such-program-xyz"});
    FAIL() << "expected an error";
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.kind(), patchbay::ErrorKind::kProcess);
    EXPECT_THAT(e.what(), HasSubstr("no-such-program-xyz"));
  }
}

TEST_F(RunningCodeTest, RunCommandTimesOut) {
  try {
    topo().a.run_command({"sleep", "1000"}, std::chrono::milliseconds(50));
    FAIL() << "expected a timeout";
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.kind(), patchbay::ErrorKind::kTimeout);
  }
}

TEST_F(RunningCodeTest, HandlesFailAfterTheLabIsGone) {
  Device a = topo().a;
  {
    patchbay::Lab other;
    Router r = other.add_router("r").build();
    a = other.add_device("x").iface("eth0", r).build();
  }
  EXPECT_FALSE(a.alive());
  try {
    a.run([] {});
    FAIL();
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.kind(), patchbay::ErrorKind::kRemoved);
    EXPECT_THAT(e.what(), HasSubstr("'x'"));
  }
}

}  // namespace
