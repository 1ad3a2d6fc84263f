// Failure diagnostics: what describe_kernel_state (and so each node's kernel.txt artifact)
// shows beyond links and routes — neighbours and, for routers, the conntrack table with NAT
// flags — gathered over netlink from inside the node.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>

#include "patchbay/gtest.hpp"
#include "patchbay/patchbay.hpp"
#include "udp_socket.hpp"

namespace {

using namespace std::chrono_literals;
using patchbay::Device;
using patchbay::Router;
using pbtest::Endpoint;
using pbtest::UdpSocket;

class DiagnosticsTest : public patchbay::testing::LabTest {};

TEST_F(DiagnosticsTest, RouterStateShowsItsConntrackEntriesAndNeighbours) {
  Router dc = lab().add_router("dc").build();
  Router home = lab().add_router("home").preset(patchbay::RouterPreset::Home).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device laptop = lab().add_device("laptop").iface("eth0", home).build();

  UdpSocket rx = UdpSocket::open_in(server, 7000);
  UdpSocket tx = UdpSocket::open_in(laptop, 5000);
  tx.send_to(Endpoint(boost::asio::ip::address(*server.ip()), 7000), "hello");
  ASSERT_TRUE(rx.receive(2s).has_value()) << "the datagram must cross the NAT first";

  const std::string state = home.describe_kernel_state();
  const std::size_t ct = state.find("# conntrack\n");
  ASSERT_NE(ct, std::string::npos) << state;
  const std::string table = state.substr(ct);
  // The flow as the laptop sent it, translated on the way out.
  const std::string orig =
      "udp " + laptop.ip()->to_string() + ":5000 -> " + server.ip()->to_string() + ":7000";
  EXPECT_NE(table.find(orig), std::string::npos) << table;
  EXPECT_NE(table.find("reply " + server.ip()->to_string() + ":7000 -> " +
                       home.uplink_ip()->to_string() + ":"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("[SNAT]"), std::string::npos) << table;

  // The router resolved the laptop on its LAN.
  const std::size_t neigh = state.find("neighbours:\n");
  ASSERT_NE(neigh, std::string::npos) << state;
  EXPECT_NE(state.find(laptop.ip()->to_string() + " dev br-lan lladdr", neigh), std::string::npos)
      << state.substr(neigh);
}

TEST_F(DiagnosticsTest, RouterWithoutFlowsSaysSo) {
  Router dc = lab().add_router("dc").build();
  const std::string state = dc.describe_kernel_state();
  EXPECT_NE(state.find("# conntrack\n(no entries)\n"), std::string::npos) << state;
}

}  // namespace
