// Dynamic links: moving an interface to another router, and taking emulated links down and up.
// Real traffic decides every assertion.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "link_probe.hpp"
#include "patchbay/gtest.hpp"
#include "patchbay/patchbay.hpp"
#include "traffic.hpp"

namespace {

using namespace std::chrono_literals;
using patchbay::Device;
using patchbay::ErrorKind;
using patchbay::LinkCondition;
using patchbay::Nat;
using patchbay::Router;

class DynamicLinkTest : public patchbay::testing::LabTest {
 protected:
  void SetUp() override {
    LabTest::SetUp();
    if (IsSkipped()) return;
    dc_ = lab().add_router("dc").build();
    server_ = lab().add_device("server").iface("eth0", *dc_).build();
    home1_ = lab().add_router("home1").nat(Nat::Home).build();
    home2_ = lab().add_router("home2").nat(Nat::Home).mtu(1400).build();
    laptop_ = lab().add_device("laptop").iface("eth0", *home1_).build();
  }
  std::string observed(unsigned short port) {
    return patchbay_test::udp_observed(*server_, *laptop_, *server_->ip(), port);
  }
  std::string links_of(const Router& r) {
    return r.run_command({"ip", "-o", "link", "show"}).stdout_text;
  }

  std::optional<Router> dc_, home1_, home2_;
  std::optional<Device> server_, laptop_;
};

TEST_F(DynamicLinkTest, ReplugMovesTheInterfaceToTheNewLanAndTrafficFollows) {
  EXPECT_EQ(observed(4000), home1_->uplink_ip()->to_string());
  const std::string mac = laptop_->iface("eth0").mac;
  const std::string old_port_links = links_of(*home1_);

  laptop_->replug_iface("eth0", *home2_);

  patchbay::Interface eth0 = laptop_->iface("eth0");
  ASSERT_TRUE(eth0.ipv4);
  EXPECT_TRUE(home2_->lan_v4()->contains(eth0.ipv4->address)) << eth0.ipv4->to_string();
  EXPECT_EQ(eth0.peer, "home2");
  EXPECT_EQ(eth0.mac, mac) << "the same NIC, moved";
  EXPECT_EQ(observed(4001), home2_->uplink_ip()->to_string()) << "default route followed";
  // The kernel agrees: the address is on the interface, its MTU is the new LAN's, and the old
  // router has no port for it any more.
  std::string addr = laptop_->run_command({"ip", "-o", "addr", "show", "dev", "eth0"}).stdout_text;
  EXPECT_NE(addr.find(eth0.ipv4->to_string()), std::string::npos) << addr;
  std::string link = laptop_->run_command({"ip", "-o", "link", "show", "dev", "eth0"}).stdout_text;
  EXPECT_NE(link.find("mtu 1400"), std::string::npos) << link;
  EXPECT_LT(links_of(*home1_).size(), old_port_links.size());

  laptop_->replug_iface("eth0", *home1_);  // and back again
  EXPECT_EQ(observed(4002), home1_->uplink_ip()->to_string());
}

TEST_F(DynamicLinkTest, ReplugKeepsTheLinkCondition) {
  laptop_->set_link_condition("eth0", LinkCondition::manual({.latency_ms = 10}));
  laptop_->replug_iface("eth0", *home2_);
  EXPECT_EQ(laptop_->link_condition("eth0"),
            patchbay::LinkConditions(LinkCondition::manual({.latency_ms = 10})));
  pbtest::ping(*laptop_, *server_->ip(), 1, 0.2);
  pbtest::PingResult r = pbtest::ping(*laptop_, *server_->ip(), 10, 0.03);
  ASSERT_EQ(r.rtts_ms.size(), 10u);
  EXPECT_NEAR(pbtest::median(r.rtts_ms), 20, 1.0);
}

TEST_F(DynamicLinkTest, ReplugErrorsNameTheCulpritAndChangeNothing) {
  try {
    laptop_->replug_iface("wlan0", *home2_);
    FAIL();
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    EXPECT_NE(std::string(e.what()).find("'wlan0'"), std::string::npos) << e.what();
  }
  try {
    laptop_->replug_iface("eth0", *home1_);
    FAIL();
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("already on router 'home1'"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(observed(4003), home1_->uplink_ip()->to_string());
}

TEST_F(DynamicLinkTest, EmulatedLinkGoesDownAndComesBack) {
  laptop_->set_link_condition("eth0", LinkCondition::manual({.latency_ms = 2}));
  constexpr int kCount = 30;
  auto delivered = [&] {
    return kCount - pbtest::udp_run(*laptop_, *server_, *server_->ip(), kCount, 0us, 100ms).lost();
  };
  pbtest::ping(*laptop_, *server_->ip(), 1, 0.2);
  EXPECT_EQ(delivered(), kCount);
  laptop_->link_down("eth0");
  EXPECT_FALSE(laptop_->iface("eth0").up);
  EXPECT_EQ(delivered(), 0);
  laptop_->link_up("eth0");
  pbtest::ping(*laptop_, *server_->ip(), 1, 0.2);  // neighbours again after the flap
  EXPECT_EQ(delivered(), kCount);
}

}  // namespace
