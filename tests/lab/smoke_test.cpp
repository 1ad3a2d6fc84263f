// Ports of upstream's smoke, lifecycle and route tests, plus gaps the spec asks us to cover.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "patchbay/gtest.hpp"
#include "traffic.hpp"

namespace {

using patchbay::Device;
using patchbay::IpSupport;
using patchbay::Router;
using patchbay::RouterPreset;
using namespace patchbay_test;

class SmokeTest : public patchbay::testing::LabTest {};

TEST_F(SmokeTest, DevicePingsItsGateway) {
  Router isp = lab().add_router("isp1").preset(RouterPreset::Public).build();
  Router home = lab().add_router("home1").preset(RouterPreset::Home).upstream(isp).build();
  Device dev = lab().add_device("dev1").iface("eth0", home).build();
  EXPECT_TRUE(ping_ok(dev, home.lan_gateway()->to_string()));
}

TEST_F(SmokeTest, RouterPingsItsUpstreamAndTheIx) {
  Router isp = lab().add_router("isp1").preset(RouterPreset::Public).build();
  Router dc = lab().add_router("dc1").preset(RouterPreset::Public).build();
  Router home = lab().add_router("home1").preset(RouterPreset::Home).upstream(isp).build();
  EXPECT_TRUE(ping_ok(home, isp.lan_gateway()->to_string()));
  EXPECT_TRUE(ping_ok(isp, patchbay::Ix::gateway().to_string()));
  EXPECT_TRUE(ping_ok(isp, dc.uplink_ip()->to_string()));
  EXPECT_TRUE(ping_ok(lab().ix(), dc.uplink_ip()->to_string()));
}

TEST_F(SmokeTest, DevicesBehindTwoNatsReachARelay) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Router a = lab().add_router("lan-provider").preset(RouterPreset::Home).build();
  Router b = lab().add_router("lan-fetcher").preset(RouterPreset::Home).build();
  Device relay = lab().add_device("relay").iface("eth0", dc).build();
  Device provider = lab().add_device("provider").iface("eth0", a).build();
  Device fetcher = lab().add_device("fetcher").iface("eth0", b).build();
  EXPECT_TRUE(ping_ok(provider, relay.ip()->to_string()));
  EXPECT_TRUE(ping_ok(fetcher, relay.ip()->to_string()));
}

TEST_F(SmokeTest, DualStackDeviceReachesServerOverBothFamilies) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device dev = lab().add_device("dev1").iface("eth0", dc).build();
  EXPECT_EQ(udp_observed(server, dev, asio::ip::address(*server.ip()), 3480),
            dev.ip()->to_string());
  EXPECT_EQ(udp_observed(server, dev, asio::ip::address(*server.ip6()), 3481),
            dev.ip6()->to_string());
}

TEST_F(SmokeTest, V6OnlyRouterGivesDevicesOnlyIpv6) {
  Router dc = lab().add_router("dc").ip_support(IpSupport::V6Only).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device dev = lab().add_device("dev1").iface("eth0", dc).build();
  EXPECT_FALSE(dc.uplink_ip());
  EXPECT_FALSE(dev.ip());
  ASSERT_TRUE(dev.ip6());
  EXPECT_FALSE(dev.ip6()->is_unspecified());
  EXPECT_EQ(udp_observed(server, dev, asio::ip::address(*server.ip6()), 3490),
            dev.ip6()->to_string());
}

TEST_F(SmokeTest, CustomLanPrefixesOfAnySize) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Router small =
      lab().add_router("small").preset(RouterPreset::Home).lan_cidr("172.30.99.0/28").build();
  Router big = lab().add_router("big").preset(RouterPreset::Home).lan_cidr("172.16.0.0/16").build();
  EXPECT_EQ(small.lan_v4()->to_string(), "172.30.99.0/28");
  EXPECT_EQ(small.lan_gateway()->to_string(), "172.30.99.1");
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device a = lab().add_device("a").iface("eth0", small).build();
  Device b = lab().add_device("b").iface("eth0", big).build();
  EXPECT_EQ(a.ip()->to_string(), "172.30.99.2");
  EXPECT_EQ(a.default_iface().ipv4->prefix_len, 28);
  EXPECT_EQ(b.default_iface().ipv4->prefix_len, 16);
  EXPECT_EQ(udp_observed(server, a, asio::ip::address(*server.ip()), 17300),
            small.uplink_ip()->to_string());
  EXPECT_EQ(udp_observed(server, b, asio::ip::address(*server.ip()), 17301),
            big.uplink_ip()->to_string());
}

TEST_F(SmokeTest, DeviceAddedLaterGetsANewAddressAndTalks) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Device d1 = lab().add_device("dev1").iface("eth0", dc).build();
  EXPECT_TRUE(ping_ok(d1, dc.lan_gateway()->to_string()));
  Device d2 = lab().add_device("dev2").iface("eth0", dc).build();
  EXPECT_NE(d1.ip(), d2.ip());
  EXPECT_TRUE(ping_ok(d2, d1.ip()->to_string()));
}

TEST_F(SmokeTest, PublicLansTwoLevelsDeepAreReachableOverBothFamilies) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Router isp = lab().add_router("isp").preset(RouterPreset::Public).build();
  Router region = lab().add_router("metro").preset(RouterPreset::Public).upstream(isp).build();
  Router office = lab().add_router("office").preset(RouterPreset::Public).upstream(region).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device desk = lab().add_device("desk").iface("eth0", office).build();
  // Return routes in every ancestor and in the lab root.
  EXPECT_TRUE(ping_ok(server, desk.ip()->to_string()));
  EXPECT_TRUE(ping_ok(server, desk.ip6()->to_string()));
  EXPECT_EQ(udp_observed(desk, server, asio::ip::address(*desk.ip6()), 5000),
            server.ip6()->to_string());
}

TEST_F(SmokeTest, RemovedRouterKeepsItsNameAndRefusesOperations) {
  Router dc = lab().add_router("dc").build();
  Device dev = lab().add_device("dev").iface("eth0", dc).build();
  lab().remove_device(dev);
  lab().remove_router(dc);
  EXPECT_EQ(dc.name(), "dc");
  EXPECT_FALSE(dc.alive());
  EXPECT_THROW(dc.uplink_ip(), patchbay::Error);
  // The name is free again.
  Router again = lab().add_router("dc").build();
  EXPECT_TRUE(again.alive());
}

TEST(ParallelLabs, EightLabsBuiltConcurrentlyInOneProcess) {
  if (auto reason = patchbay::testing::lab_unavailable_reason()) GTEST_SKIP() << *reason;
  std::vector<std::thread> threads;
  std::vector<std::string> results(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([i, &results] {
      try {
        patchbay::Lab lab;
        Router dc = lab.add_router("dc").preset(RouterPreset::Public).build();
        Router home = lab.add_router("home").preset(RouterPreset::Home).build();
        Device server = lab.add_device("server").iface("eth0", dc).build();
        Device laptop = lab.add_device("laptop").iface("eth0", home).build();
        results[i] = udp_observed(server, laptop, asio::ip::address(*server.ip()), 4000);
      } catch (const std::exception& e) {
        results[i] = std::string("error: ") + e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  // Every lab has the same address plan, isolated from the others.
  for (const auto& r : results) EXPECT_EQ(r, "198.18.0.11");
}

}  // namespace
