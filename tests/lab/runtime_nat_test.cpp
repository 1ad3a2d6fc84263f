// Changing NAT and firewall on a running router, and flushing its connection state.
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "patchbay/gtest.hpp"
#include "traffic.hpp"

namespace {

using patchbay::Device;
using patchbay::Firewall;
using patchbay::Nat;
using patchbay::Router;
using patchbay::RouterPreset;
using namespace patchbay_test;

// A UDP socket created inside `node` (so it lives in its namespace), bound to `local_port`.
struct ClientSocket {
  int fd = -1;
  ~ClientSocket() {
    if (fd >= 0) ::close(fd);
  }
  // Sends to target and returns what the reflector observed ("" on timeout).
  std::string observe(const std::string& target, unsigned short port) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    ::inet_pton(AF_INET, target.c_str(), &to.sin_addr);
    ::sendto(fd, "PROBE", 5, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    char buf[128];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    std::string text = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    return text.rfind("OBSERVED ", 0) == 0 ? text.substr(9) : "";
  }
};

std::unique_ptr<ClientSocket> bind_client(const Device& node, unsigned short local_port) {
  return node.run([local_port] {
    auto c = std::make_unique<ClientSocket>();
    c->fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    timeval tv{1, 0};
    ::setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_port = htons(local_port);
    if (::bind(c->fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0)
      throw std::runtime_error("bind");
    return c;
  });
}

class RuntimeNatTest : public patchbay::testing::LabTest {};

TEST_F(RuntimeNatTest, FirewallChangesTakeEffectForNewFlows) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Router edge = lab().add_router("edge").preset(RouterPreset::Public).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device pc = lab().add_device("pc").iface("eth0", edge).build();

  EXPECT_TRUE(ping_ok(server, pc.ip()->to_string()));
  edge.set_firewall(Firewall::BlockInbound);
  EXPECT_EQ(edge.firewall(), Firewall::BlockInbound);
  EXPECT_FALSE(ping_ok(server, pc.ip()->to_string())) << "new inbound flows are dropped";
  EXPECT_TRUE(ping_ok(pc, server.ip()->to_string())) << "outbound and its replies pass";
  edge.set_firewall(Firewall::None);
  EXPECT_TRUE(ping_ok(server, pc.ip()->to_string()));
}

TEST_F(RuntimeNatTest, NatCanBeSwitchedOnAndOff) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Router edge = lab().add_router("edge").preset(RouterPreset::Public).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device pc = lab().add_device("pc").iface("eth0", edge).build();
  auto target = asio::ip::address(*server.ip());

  EXPECT_EQ(udp_observed(server, pc, target, 7000), pc.ip()->to_string());
  edge.set_nat(Nat::Home);
  EXPECT_EQ(edge.nat(), Nat::Home);
  EXPECT_EQ(udp_observed(server, pc, target, 7001), edge.uplink_ip()->to_string());
  edge.set_nat(Nat::None);
  EXPECT_EQ(udp_observed(server, pc, target, 7002), pc.ip()->to_string());
}

TEST_F(RuntimeNatTest, ExistingFlowsKeepTheirMappingUntilFlushed) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Router home = lab().add_router("home").preset(RouterPreset::Home).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device pc = lab().add_device("pc").iface("eth0", home).build();
  auto reflector = patchbay::UdpReflector::start(server, 3478);
  auto client = bind_client(pc, 40000);
  std::string wan = home.uplink_ip()->to_string();
  std::string srv = server.ip()->to_string();

  EXPECT_EQ(client->observe(srv, 3478), wan + ":40000") << "Home keeps the source port";
  home.set_nat(Nat::Corporate);  // random ports from now on, for new flows
  EXPECT_EQ(client->observe(srv, 3478), wan + ":40000") << "the existing flow keeps its mapping";
  home.flush_nat_state();
  std::string after = client->observe(srv, 3478);
  EXPECT_THAT(after, ::testing::StartsWith(wan + ":"));
  EXPECT_NE(after, wan + ":40000") << "after the flush the flow is new and gets a random port";
}

TEST_F(RuntimeNatTest, NatNeedsAnIpv4Uplink) {
  Router v6 = lab().add_router("v6").ip_support(patchbay::IpSupport::V6Only).build();
  EXPECT_THROW(v6.set_nat(Nat::Home), patchbay::Error);
  EXPECT_EQ(v6.nat(), Nat::None);
}

}  // namespace
