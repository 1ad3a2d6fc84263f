// Topologies carry real traffic: ping, TCP and UDP between namespaces built by the lab.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "patchbay/gtest.hpp"
#include "traffic.hpp"

namespace {

using patchbay::Device;
using patchbay::Router;
using patchbay::RouterPreset;
using namespace patchbay_test;

class TopologyTest : public patchbay::testing::LabTest {};

TEST_F(TopologyTest, DevicesOnOneRouterReachEachOther) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Device a = lab().add_device("a").iface("eth0", dc).build();
  Device b = lab().add_device("b").iface("eth0", dc).build();

  EXPECT_TRUE(ping_ok(a, b.ip()->to_string()));
  auto seen = serve_one_tcp(b, 7000);
  tcp_ping(a, asio::ip::address(*b.ip()), 7000);
  EXPECT_EQ(seen.get(), a.ip()->to_string());
  EXPECT_EQ(udp_observed(b, a, asio::ip::address(*b.ip()), 7001), a.ip()->to_string());
}

TEST_F(TopologyTest, DeviceBehindHomeNatReachesServerWithRouterAddress) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Router home = lab().add_router("home").preset(RouterPreset::Home).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device laptop = lab().add_device("laptop").iface("eth0", home).build();

  EXPECT_EQ(laptop.ip()->to_string(), "10.0.1.2");
  auto seen = serve_one_tcp(server, 8080);
  tcp_ping(laptop, asio::ip::address(*server.ip()), 8080);
  EXPECT_EQ(seen.get(), home.uplink_ip()->to_string()) << "the server must see the NAT's address";
  EXPECT_EQ(udp_observed(server, laptop, asio::ip::address(*server.ip()), 8081),
            home.uplink_ip()->to_string());
}

TEST_F(TopologyTest, HomeNatBlocksUnsolicitedInbound) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Router home = lab().add_router("home").preset(RouterPreset::Home).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device laptop = lab().add_device("laptop").iface("eth0", home).build();

  // The laptop's private address is not routed on the internet, and the router's WAN address
  // has no mapping for a new inbound flow.
  EXPECT_FALSE(ping_ok(server, laptop.ip()->to_string()));
  auto served = serve_one_tcp(laptop, 9000);
  EXPECT_THROW(
      tcp_ping(server, asio::ip::address(*home.uplink_ip()), 9000, std::chrono::milliseconds(500)),
      std::runtime_error);
}

TEST_F(TopologyTest, ChainedRoutersForwardBothWays) {
  Router isp = lab().add_router("isp").preset(RouterPreset::Public).build();
  Router office = lab().add_router("office").preset(RouterPreset::Public).upstream(isp).build();
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Device desk = lab().add_device("desk").iface("eth0", office).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();

  ASSERT_TRUE(office.upstream());
  EXPECT_EQ(office.upstream()->name(), "isp");
  EXPECT_EQ(office.uplink_iface(), "wan");
  EXPECT_TRUE(isp.lan_v4()->contains(*office.uplink_ip()));
  // Return routes in every ancestor make the office LAN reachable from the internet.
  EXPECT_TRUE(ping_ok(server, desk.ip()->to_string()));
  auto seen = serve_one_tcp(server, 7100);
  tcp_ping(desk, asio::ip::address(*server.ip()), 7100);
  EXPECT_EQ(seen.get(), desk.ip()->to_string());
}

TEST_F(TopologyTest, HomeBehindCarrierNatIsDoubleNat) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Router isp = lab().add_router("isp").preset(RouterPreset::IspCgnat).build();
  Router home = lab().add_router("home").preset(RouterPreset::Home).upstream(isp).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device laptop = lab().add_device("laptop").iface("eth0", home).build();

  EXPECT_TRUE(isp.lan_v4()->contains(*home.uplink_ip()));
  EXPECT_EQ(home.uplink_ip()->to_bytes()[0], 100) << "carrier LANs use 100.64.0.0/10";
  EXPECT_EQ(udp_observed(server, laptop, asio::ip::address(*server.ip()), 7200),
            isp.uplink_ip()->to_string());
}

TEST_F(TopologyTest, Ipv6BetweenPublicDevices) {
  Router east = lab().add_router("east").preset(RouterPreset::Public).build();
  Router west = lab().add_router("west").preset(RouterPreset::Public).build();
  Device a = lab().add_device("a").iface("eth0", east).build();
  Device b = lab().add_device("b").iface("eth0", west).build();

  ASSERT_TRUE(a.ip6());
  ASSERT_TRUE(b.ip6());
  EXPECT_THAT(a.ip6()->to_string(), ::testing::StartsWith("2001:db8:1:"));
  EXPECT_TRUE(a.default_iface().ll6.has_value());
  EXPECT_TRUE(ping_ok(a, b.ip6()->to_string()));
  auto seen = serve_one_tcp(b, 7300);
  tcp_ping(a, asio::ip::address(*b.ip6()), 7300);
  EXPECT_EQ(seen.get(), a.ip6()->to_string());
}

TEST_F(TopologyTest, MultiHomedDeviceSwitchesDefaultRoute) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Router wifi = lab().add_router("wifi").preset(RouterPreset::Home).build();
  Router lte = lab().add_router("lte").preset(RouterPreset::Home).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device phone = lab().add_device("phone").iface("wlan0", wifi).iface("rmnet0", lte).build();

  EXPECT_EQ(phone.default_iface().name, "wlan0");
  auto target = asio::ip::address(*server.ip());
  EXPECT_EQ(udp_observed(server, phone, target, 7400), wifi.uplink_ip()->to_string());
  phone.set_default_route("rmnet0");
  EXPECT_EQ(phone.default_iface().name, "rmnet0");
  EXPECT_EQ(udp_observed(server, phone, target, 7401), lte.uplink_ip()->to_string());
}

TEST_F(TopologyTest, LinkDownCutsTrafficAndLinkUpRestoresIt) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Device a = lab().add_device("a").iface("eth0", dc).build();
  Device b = lab().add_device("b").iface("eth0", dc).build();
  std::string target = b.ip()->to_string();

  ASSERT_TRUE(ping_ok(a, target));
  b.link_down("eth0");
  EXPECT_FALSE(b.iface("eth0").up);
  EXPECT_FALSE(ping_ok(a, target));
  b.link_up("eth0");
  EXPECT_TRUE(b.iface("eth0").up);
  EXPECT_TRUE(ping_ok(a, target));
  // b's default route came back with the link.
  EXPECT_TRUE(ping_ok(b, dc.uplink_ip()->to_string()));
}

TEST_F(TopologyTest, AddressPlanMatchesTheSpec) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Router home = lab().add_router("home").preset(RouterPreset::Home).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device laptop = lab().add_device("laptop").iface("eth0", home).build();

  EXPECT_EQ(dc.uplink_ip()->to_string(), "198.18.0.10");
  EXPECT_EQ(home.uplink_ip()->to_string(), "198.18.0.11");
  EXPECT_EQ(dc.lan_v4()->to_string(), "198.18.1.0/24");
  EXPECT_EQ(home.lan_v4()->to_string(), "10.0.1.0/24");
  EXPECT_EQ(server.ip()->to_string(), "198.18.1.2");
  EXPECT_EQ(laptop.ip()->to_string(), "10.0.1.2");
  EXPECT_THAT(laptop.ip6()->to_string(), ::testing::StartsWith("fd10:"));
  EXPECT_EQ(laptop.default_iface().mac.substr(0, 3), "02:");
  EXPECT_EQ(laptop.iface("eth0").peer, "home");
}

TEST_F(TopologyTest, V4OnlyRouterHasNoIpv6) {
  Router r = lab().add_router("r").preset(RouterPreset::PublicV4).build();
  Device d = lab().add_device("d").iface("eth0", r).build();
  EXPECT_FALSE(r.uplink_ip6());
  EXPECT_FALSE(d.ip6());
  EXPECT_TRUE(d.ip());
}

TEST_F(TopologyTest, HandlesLookUpByName) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Device d = lab().add_device("d").iface("eth0", dc).build();
  ASSERT_TRUE(lab().router("dc"));
  EXPECT_EQ(lab().router("dc")->id(), dc.id());
  EXPECT_EQ(lab().device("d")->ip(), d.ip());
  EXPECT_FALSE(lab().device("dc"));
  EXPECT_EQ(lab().routers().size(), 1u);
  EXPECT_EQ(lab().devices().size(), 1u);
}

TEST_F(TopologyTest, RemovedNodesDisappearAndHandlesFailCleanly) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Device a = lab().add_device("a").iface("eth0", dc).build();
  Device b = lab().add_device("b").iface("eth0", dc).build();
  lab().remove_device(b);
  EXPECT_FALSE(b.alive());
  EXPECT_EQ(b.name(), "b");
  EXPECT_THROW(b.ip(), patchbay::Error);
  EXPECT_FALSE(lab().device("b"));
  // Removing the router is refused while "a" hangs off it, allowed afterwards.
  EXPECT_THROW(lab().remove_router(dc), patchbay::Error);
  lab().remove_device(a);
  lab().remove_router(dc);
  EXPECT_TRUE(lab().routers().empty());
}

}  // namespace
