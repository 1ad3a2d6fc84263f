// Binding, start/stop, and shutting down with streams open.
#include <pthread.h>
#include <signal.h>

#include <condition_variable>
#include <mutex>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "serve_test_support.hpp"

namespace patchbay::serve::testing {
namespace {

TEST(ServeLifecycle, BindsLoopbackOnAnEphemeralPortAndReportsIt) {
  Fixture fx;
  Server server(fast_options(fx.base));
  ASSERT_NE(server.port(), 0);
  EXPECT_EQ(server.url(), "http://127.0.0.1:" + std::to_string(server.port()) + "/");
  server.start();
  EXPECT_EQ(http_get(server.port(), "/api/runs").status, 200u);
  server.stop();
}

TEST(ServeLifecycle, DefaultOptionsMatchTheSpec) {
  const ServerOptions o;
  EXPECT_EQ(o.bind_address, "127.0.0.1");
  EXPECT_EQ(o.port, 7421);
  EXPECT_EQ(o.rescan_interval, std::chrono::milliseconds(2000));
  EXPECT_EQ(o.events_poll_interval, std::chrono::milliseconds(500));
}

TEST(ServeLifecycle, StopClosesOpenStreamsAndReleasesThreadsAndDescriptors) {
  Fixture fx;
  const auto fds_before = count_entries("/proc/self/fd");
  const auto threads_before = count_entries("/proc/self/task");
  {
    Server server(fast_options(fx.base));
    server.start();
    std::vector<std::unique_ptr<SseClient>> clients;
    for (int i = 0; i < 3; ++i) {
      clients.push_back(
          std::make_unique<SseClient>(server.port(), "/api/runs/sim-260502-091500%2Frelay/events"));
      ASSERT_TRUE(clients.back()->next());
    }
    clients.push_back(std::make_unique<SseClient>(server.port(), "/api/runs/subscribe"));
    ASSERT_TRUE(clients.back()->next_block());
    EXPECT_EQ(count_entries("/proc/self/task"), threads_before + 1);  // one io thread

    server.stop();
    for (auto& c : clients) EXPECT_TRUE(c->wait_closed()) << "stream left open by stop()";
    // The listener is gone too.
    EXPECT_FALSE(can_connect(server.port()));
    server.stop();  // idempotent
  }
  EXPECT_TRUE(eventually([&] { return count_entries("/proc/self/task") == threads_before; }));
  EXPECT_EQ(count_entries("/proc/self/fd"), fds_before);
}

TEST(ServeLifecycle, StopWithoutStartIsFine) {
  Fixture fx;
  const auto fds_before = count_entries("/proc/self/fd");
  {
    Server server(fast_options(fx.base));
    server.stop();
  }
  EXPECT_EQ(count_entries("/proc/self/fd"), fds_before);
}

TEST(ServeLifecycle, StartTwiceThrows) {
  Fixture fx;
  Server server(fast_options(fx.base));
  server.start();
  EXPECT_THROW(server.start(), std::runtime_error);
}

TEST(ServeLifecycle, ConstructionFailuresNameTheirCause) {
  Fixture fx;
  auto missing = fast_options(fx.tmp.path() / "does-not-exist");
  try {
    Server s(missing);
    FAIL() << "no exception for a missing base directory";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("does-not-exist"), std::string::npos) << e.what();
  }

  Server first(fast_options(fx.base));
  auto busy = fast_options(fx.base);
  busy.port = first.port();
  try {
    Server s(busy);
    FAIL() << "no exception for a port in use";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(std::to_string(first.port())), std::string::npos) << what;
    EXPECT_NE(what.find("bind"), std::string::npos) << what;
  }

  auto bad_address = fast_options(fx.base);
  bad_address.bind_address = "not an address";
  EXPECT_THROW(Server s(bad_address), std::runtime_error);

  auto bad_ui = fast_options(fx.base);
  bad_ui.ui_dir = fx.tmp.path() / "no-ui";
  EXPECT_THROW(Server s(bad_ui), std::runtime_error);
}

TEST(ServeLifecycle, PortCanBeReusedRightAfterStop) {
  Fixture fx;
  std::uint16_t port = 0;
  {
    Server server(fast_options(fx.base));
    server.start();
    port = server.port();
    EXPECT_EQ(http_get(port, "/api/runs").status, 200u);  // leaves a TIME_WAIT connection
    server.stop();
  }
  auto opts = fast_options(fx.base);
  opts.port = port;
  Server again(opts);
  again.start();
  EXPECT_EQ(http_get(port, "/api/runs").status, 200u);
}

// A thread-safe ostream target so the test can wait for run_until_signal's banner.
class BannerBuf : public std::stringbuf {
 public:
  int sync() override {
    std::lock_guard lock(mu_);
    text_ = str();
    cv_.notify_all();
    return 0;
  }
  std::optional<std::string> wait_for_line(std::chrono::steady_clock::duration timeout) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return text_.find('\n') != std::string::npos; })) {
      return std::nullopt;
    }
    return text_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::string text_;
};

TEST(ServeLifecycle, RunUntilSignalPrintsTheUrlServesAndStopsOnSigterm) {
  Fixture fx;
  BannerBuf buf;
  std::ostream out(&buf);
  int rc = -1;
  std::thread runner([&] { rc = run_until_signal(fast_options(fx.base), out); });
  const auto banner = buf.wait_for_line(kDeadline);
  ASSERT_TRUE(banner) << "no banner printed";
  const std::string text = *banner;
  // "patchbay: serving <dir> at http://127.0.0.1:<port>/"
  const std::string prefix = "patchbay: serving " + (fx.base).string() + " at http://127.0.0.1:";
  ASSERT_EQ(text.rfind(prefix, 0), 0u) << text;
  const auto port = static_cast<std::uint16_t>(std::stoi(text.substr(prefix.size())));
  EXPECT_EQ(text.substr(text.find('/', prefix.size())), "/\n");
  EXPECT_EQ(http_get(port, "/api/runs").status, 200u);
  // Directed at the serving thread, which has SIGTERM blocked and waits for it in sigwait().
  pthread_kill(runner.native_handle(), SIGTERM);
  runner.join();
  EXPECT_EQ(rc, 0);
  EXPECT_FALSE(can_connect(port));
}

}  // namespace
}  // namespace patchbay::serve::testing

namespace patchbay::serve::testing {
namespace {

TEST(ServeBind, ApplyBindAcceptsAddressPortAndBothTogether) {
  ServerOptions o;
  apply_bind(o, "0.0.0.0:8080");
  EXPECT_EQ(o.bind_address, "0.0.0.0");
  EXPECT_EQ(o.port, 8080);
  apply_bind(o, ":9000");
  EXPECT_EQ(o.bind_address, "0.0.0.0");
  EXPECT_EQ(o.port, 9000);
  apply_bind(o, "127.0.0.1");
  EXPECT_EQ(o.bind_address, "127.0.0.1");
  EXPECT_EQ(o.port, 9000);
  apply_bind(o, "[::1]:0");
  EXPECT_EQ(o.bind_address, "::1");
  EXPECT_EQ(o.port, 0);
  apply_bind(o, "::1");
  EXPECT_EQ(o.bind_address, "::1");
  for (const char* bad : {"127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000", "[::1", "[::1]x"}) {
    EXPECT_THROW(apply_bind(o, bad), std::invalid_argument) << bad;
  }
}

}  // namespace
}  // namespace patchbay::serve::testing
