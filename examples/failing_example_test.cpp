// A test that fails on purpose, to show what a failure leaves behind.
//
// Run it with an output directory and look at what it wrote:
//
//   PATCHBAY_OUTDIR=out build/examples/patchbay_failing_example
//   ls out/EchoThroughHomeNat/ServerSeesTheClientsOwnAddress/
//   build/tools/patchbay serve out               # and open http://127.0.0.1:7421/
//
// ServerSeesTheClientsOwnAddress's expectation is wrong: a server never sees the private address
// of a client behind a home NAT (ServerSeesTheHomeRoutersAddress, which passes, leaves nothing).
// The artifact directory shows why: the topology (state.json), every lifecycle event
// (events.jsonl), both nodes' logs and timeline events, the ping's output, per-node kernel state
// with conntrack's NAT entry, packet captures of every link, and summary.txt naming the failed
// expectation. It is kept out of the example suite; tests/lab/failing_example_test.cpp runs it
// and checks every file, and the UI tests (ui/tests) browse its output.

// Boost 1.74's asio/awaitable.hpp needs std::exchange declared before it.
#include <utility>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <boost/asio.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <string>

#include <patchbay/gtest.hpp>
#include <patchbay/patchbay.hpp>

namespace asio = boost::asio;
using asio::ip::tcp;
using patchbay::Device;
using patchbay::LinkCondition;
using patchbay::Router;
using patchbay::RouterPreset;

namespace {

constexpr unsigned short kEchoPort = 7000;

class EchoThroughHomeNat : public patchbay::testing::LabTest {
 protected:
  patchbay::LabOptions lab_options() override {
    patchbay::LabOptions options;
    options.capture_ring_bytes = 1 << 20;  // the last MiB of every link, written on failure
    return options;
  }

  // Echoes one line back to the first client and yields the address that client came from.
  std::future<std::string> serve_one_echo(const Device& server) {
    auto listening = std::make_shared<std::promise<void>>();
    auto ready = listening->get_future();
    auto peer = server.spawn([listening, server]() -> asio::awaitable<std::string> {
      tcp::acceptor acceptor(co_await asio::this_coro::executor, {tcp::v4(), kEchoPort});
      server.event("TcpEchoStarted", {{"port", std::to_string(kEchoPort)}});
      server.logger()->info("listening on port {}", kEchoPort);
      listening->set_value();
      tcp::socket s = co_await acceptor.async_accept(asio::use_awaitable);
      std::string peer_addr = s.remote_endpoint().address().to_string();
      server.logger()->info("accepted a connection from {}", peer_addr);
      std::string line;
      co_await asio::async_read_until(s, asio::dynamic_buffer(line), '\n', asio::use_awaitable);
      co_await asio::async_write(s, asio::buffer(line), asio::use_awaitable);
      co_return peer_addr;
    });
    ready.wait();
    return peer;
  }

  // Sends `line` from `client` to the echo server and returns what came back.
  static std::string echo_once(const Device& client, const Device& server,
                               const std::string& line) {
    return client.run([&] {
      asio::io_context io;
      tcp::socket s(io);
      s.connect({*server.ip(), kEchoPort});
      client.logger()->info("connected to {}:{}", server.ip()->to_string(), kEchoPort);
      asio::write(s, asio::buffer(line));
      std::string reply;
      asio::read_until(s, asio::dynamic_buffer(reply), '\n');
      return reply;
    });
  }
};

TEST_F(EchoThroughHomeNat, ServerSeesTheClientsOwnAddress) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Router isp = lab().add_router("isp").preset(RouterPreset::Public).build();
  Router home = lab().add_router("home").preset(RouterPreset::Home).upstream(isp).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device client = lab()
                      .add_device("client")
                      .iface("eth0", home, LinkCondition::manual({.latency_ms = 20}))
                      .build();

  std::future<std::string> seen_by_server = serve_one_echo(server);

  // A real tool's output is kept too (device.client.ping.stdout.log).
  patchbay::CommandResult ping =
      client.run_command({"ping", "-c", "2", "-W", "2", server.ip()->to_string()});
  ASSERT_EQ(ping.exit_code, 0) << ping.stdout_text << ping.stderr_text;

  const auto started = std::chrono::steady_clock::now();
  std::string reply = echo_once(client, server, "hello\n");
  const auto rtt =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started);
  client.event("TcpRoundtripComplete",
               {{"peer", server.ip()->to_string()}, {"rtt_ms", std::to_string(rtt.count())}});
  EXPECT_EQ(reply, "hello\n");

  // Results in the runner's format, so the devtools UI shows a perf tab for this run.
  if (auto dir = patchbay::testing::current_test_outdir(); !dir.empty()) {
    std::filesystem::create_directories(dir / "files");
    std::ofstream(dir / "files" / "results.json")
        << R"({"sim":"echo-through-home-nat","steps":[{"id":"echo","duration":")"
        << rtt.count() / 1000.0 << R"(","up_bytes":"6","down_bytes":"6","latency_ms":")"
        << rtt.count() << "\"}]}\n";
  }

  // The deliberate mistake: behind the home NAT the server sees home's uplink address.
  EXPECT_EQ(seen_by_server.get(), client.ip()->to_string())
      << "the server should see the client's own address";
}

TEST_F(EchoThroughHomeNat, ServerSeesTheHomeRoutersAddress) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Router home = lab().add_router("home").preset(RouterPreset::Home).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device client = lab().add_device("client").iface("eth0", home).build();

  std::future<std::string> seen_by_server = serve_one_echo(server);
  EXPECT_EQ(echo_once(client, server, "hello\n"), "hello\n");
  EXPECT_EQ(seen_by_server.get(), home.uplink_ip()->to_string());
}

}  // namespace
