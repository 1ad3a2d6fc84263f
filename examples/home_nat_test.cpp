// A laptop behind a home NAT talks to a server in a datacenter — written two ways.
// Boost 1.74's asio/awaitable.hpp needs std::exchange declared before it.
#include <utility>

#include <gtest/gtest.h>
#include <boost/asio.hpp>

#include <patchbay/gtest.hpp>
#include <patchbay/patchbay.hpp>

namespace asio = boost::asio;
using asio::ip::tcp;
using patchbay::Device;
using patchbay::Router;
using patchbay::RouterPreset;

namespace {

// Accepts one TCP connection in `server` and yields the peer address the server saw.
std::future<std::string> accept_one(const Device& server, unsigned short port) {
  auto listening = std::make_shared<std::promise<void>>();
  auto ready = listening->get_future();
  auto peer = server.spawn([listening, port]() -> asio::awaitable<std::string> {
    tcp::acceptor acceptor(co_await asio::this_coro::executor, {tcp::v4(), port});
    listening->set_value();
    tcp::socket s = co_await acceptor.async_accept(asio::use_awaitable);
    co_return s.remote_endpoint().address().to_string();
  });
  ready.wait();
  return peer;
}

// Style 1: the topology is built inline, in the test body.
class HomeNatTest : public patchbay::testing::LabTest {};

TEST_F(HomeNatTest, LaptopBehindHomeNatReachesServer) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Router home = lab().add_router("home").preset(RouterPreset::Home).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device laptop = lab().add_device("laptop").iface("eth0", home).build();

  std::future<std::string> seen = accept_one(server, 8080);
  laptop.run([&] {
    asio::io_context io;
    tcp::socket s(io);
    s.connect({*server.ip(), 8080});
  });
  EXPECT_EQ(seen.get(), home.uplink_ip()->to_string());  // the server sees the NAT, not 10.0.1.2
}

TEST_F(HomeNatTest, PingWithARealTool) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Router home = lab().add_router("home").preset(RouterPreset::Home).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device laptop = lab().add_device("laptop").iface("eth0", home).build();

  patchbay::CommandResult r =
      laptop.run_command({"ping", "-c", "1", "-W", "2", server.ip()->to_string()});
  EXPECT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text;
}

// Style 2: the topology is declared once; each test case gets a freshly built copy.
PATCHBAY_TOPOLOGY(HomeAndDatacenter) {
  Router dc = lab.add_router("dc").preset(RouterPreset::Public).build();
  Router home = lab.add_router("home").preset(RouterPreset::Home).build();
  Device server = lab.add_device("server").iface("eth0", dc).build();
  Device laptop = lab.add_device("laptop").iface("eth0", home).build();
};

using HomeAndDatacenterTest = patchbay::testing::TopologyTest<HomeAndDatacenter>;

TEST_F(HomeAndDatacenterTest, LaptopGetsAPrivateAddress) {
  EXPECT_EQ(topo().laptop.ip()->to_string(), "10.0.1.2");
  EXPECT_EQ(topo().server.ip()->to_string(), "198.18.1.2");
}

TEST_F(HomeAndDatacenterTest, ServerCannotOpenConnectionsToTheLaptop) {
  auto r =
      topo().server.run_command({"ping", "-c", "1", "-W", "1", topo().laptop.ip()->to_string()});
  EXPECT_NE(r.exit_code, 0);
}

}  // namespace
