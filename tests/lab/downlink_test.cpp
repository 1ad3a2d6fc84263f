// A router's downlink condition: everything the router sends into its LAN, measured with real
// traffic. On this kernel (no sch_netem) it runs through the userspace emulator's downlink
// splice; tolerances come from the configured values and binomial intervals.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "link_probe.hpp"
#include "patchbay/gtest.hpp"
#include "patchbay/patchbay.hpp"

namespace {

using namespace std::chrono_literals;
using patchbay::Device;
using patchbay::LinkCondition;
using patchbay::LinkConditions;
using patchbay::LinkLimits;
using patchbay::Router;
using pbtest::binomial_99;
using pbtest::median;

LinkCondition limits(const LinkLimits& l) { return LinkCondition::manual(l); }

// state.json's "lan" object of router `name`.
nlohmann::json lan_state(const patchbay::Lab& lab, const std::string& name) {
  const nlohmann::json state = nlohmann::json::parse(lab.state_json());
  for (const nlohmann::json& r : state["routers"]) {
    if (r["name"] == name) return r["lan"];
  }
  ADD_FAILURE() << "router '" << name << "' not in state.json";
  return {};
}

// `home` with two devices on its LAN; `srv` on another router, reached through home's uplink.
class DownlinkTest : public patchbay::testing::LabTest {
 protected:
  void SetUp() override {
    LabTest::SetUp();
    if (IsSkipped()) return;
    dc_ = lab().add_router("dc").build();
    home_ = lab().add_router("home").build();
    srv_ = lab().add_device("srv").iface("eth0", *dc_).build();
    a_ = lab().add_device("a").iface("eth0", *home_).build();
    b_ = lab().add_device("b").iface("eth0", *home_).build();
    // Neighbour discovery first: its own round trips would otherwise delay the first probe.
    ASSERT_EQ(pbtest::ping(*a_, *srv_->ip(), 1, 0.2).rtts_ms.size(), 1u);
    ASSERT_EQ(pbtest::ping(*a_, *b_->ip(), 1, 0.2).rtts_ms.size(), 1u);
  }

  double median_rtt(const Device& from, const patchbay::Ipv4Address& to, int count) {
    pbtest::PingResult r = pbtest::ping(from, to, count, 0.02);
    EXPECT_EQ(static_cast<int>(r.rtts_ms.size()), count) << "pings lost on a lossless path";
    return median(r.rtts_ms);
  }

  std::optional<Router> dc_;
  std::optional<Router> home_;
  std::optional<Device> srv_;
  std::optional<Device> a_;
  std::optional<Device> b_;
};

TEST_F(DownlinkTest, LatencyDelaysWhatTheRouterSendsIntoItsLanOnly) {
  home_->set_downlink_condition(limits({.latency_ms = 20}));
  const double want = 20;  // the request goes up undelayed, the reply comes down delayed
  EXPECT_NEAR(median_rtt(*a_, *srv_->ip(), 30), want, std::max(0.5, 0.05 * want));
  // The router's own replies take the downlink too.
  EXPECT_NEAR(median_rtt(*a_, *home_->lan_gateway(), 30), want, std::max(0.5, 0.05 * want));
  // Device to device is bridged, not routed: no downlink on the way.
  EXPECT_LT(median_rtt(*a_, *b_->ip(), 30), want / 4);
}

TEST_F(DownlinkTest, BuilderConditionAppliesFromTheFirstPacket) {
  constexpr int kLatencyMs = 30;
  Router cafe =
      lab().add_router("cafe").downlink_condition(limits({.latency_ms = kLatencyMs})).build();
  Device c = lab().add_device("c").iface("eth0", cafe).build();
  ASSERT_TRUE(cafe.downlink_condition().has_value());
  pbtest::PingResult first = pbtest::ping(c, *srv_->ip(), 1, 0.2);
  ASSERT_EQ(first.rtts_ms.size(), 1u);
  EXPECT_GE(first.rtts_ms[0], kLatencyMs);  // ARP and the echo reply both came down delayed
}

TEST_F(DownlinkTest, LossHitsTheDownloadAndNotTheUpload) {
  constexpr double kLossPct = 20;
  home_->set_downlink_condition(limits({.loss_pct = kLossPct}));
  constexpr int kCount = 2000;
  pbtest::UdpRun down = pbtest::udp_run(*srv_, *a_, *a_->ip(), kCount, 200us, 300ms);
  const auto [lo, hi] = binomial_99(kCount, kLossPct / 100);
  EXPECT_GE(down.lost(), lo);
  EXPECT_LE(down.lost(), hi);
  pbtest::UdpRun up = pbtest::udp_run(*a_, *srv_, *srv_->ip(), kCount, 200us, 300ms);
  EXPECT_EQ(up.lost(), 0);
}

TEST_F(DownlinkTest, RateCapsTheDownloadOfTheWholeLan) {
  constexpr std::uint32_t kRateKbit = 20'000;
  home_->set_downlink_condition(limits({.rate_kbit = kRateKbit}));
  // Goodput: 1448 payload bytes of every 1514-byte frame (LinkConditionTest.RateCapsTcpGoodput).
  const double want = kRateKbit * 1000.0 * 1448.0 / 1514.0;
  // srv -> a (iperf3 -R: the server in srv sends), 4 s with the first second left out.
  pbtest::TcpRun down = pbtest::iperf(*a_, *srv_, {"-t", "4", "-O", "1", "-R"});
  EXPECT_NEAR(down.bits_per_second, want, 0.02 * want);
  // The upload is not capped.
  pbtest::TcpRun up = pbtest::iperf(*a_, *srv_, {"-t", "2"});
  EXPECT_GT(up.bits_per_second, 5.0 * kRateKbit * 1000.0);
}

TEST_F(DownlinkTest, RuntimeChangesAndClearingTakeEffectAndShowInState) {
  home_->set_downlink_condition(limits({.latency_ms = 10}));
  EXPECT_NEAR(median_rtt(*a_, *srv_->ip(), 20), 10, 0.5);
  home_->set_downlink_condition(limits({.latency_ms = 40}));
  EXPECT_NEAR(median_rtt(*a_, *srv_->ip(), 20), 40, 0.05 * 40);

  const nlohmann::json lan = lan_state(lab(), "home");
  EXPECT_EQ(lan["downlink_condition"]["latency_ms"], 40) << lan.dump();
  bool lan_iface_seen = false;
  for (const patchbay::Interface& i : home_->interfaces()) {
    if (i.name != "br-lan") continue;
    lan_iface_seen = true;
    EXPECT_EQ(i.condition, LinkConditions::egress_only(limits({.latency_ms = 40})));
  }
  EXPECT_TRUE(lan_iface_seen);

  home_->set_downlink_condition(std::nullopt);
  EXPECT_FALSE(home_->downlink_condition().has_value());
  EXPECT_LT(median_rtt(*a_, *srv_->ip(), 20), 5);
  EXPECT_TRUE(lan_state(lab(), "home")["downlink_condition"].is_null());
}

TEST_F(DownlinkTest, InvalidConditionIsRejectedAndTheOldOneStays) {
  home_->set_downlink_condition(limits({.latency_ms = 15}));
  try {
    home_->set_downlink_condition(limits({.loss_pct = 150}));
    FAIL() << "expected an error";
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.kind(), patchbay::ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("loss"), std::string::npos) << e.what();
  }
  EXPECT_EQ(home_->downlink_condition(), limits({.latency_ms = 15}));
  EXPECT_NEAR(median_rtt(*a_, *srv_->ip(), 20), 15, std::max(0.5, 0.05 * 15));
}

TEST_F(DownlinkTest, RemovingTheRouterTakesTheSpliceAlong) {
  home_->set_downlink_condition(limits({.latency_ms = 5}));
  lab().remove_device(*a_);
  lab().remove_device(*b_);
  lab().remove_router(*home_);
  // The emulator keeps running for the lab; a new router's LAN is not impaired.
  Router next = lab().add_router("next").build();
  Device d = lab().add_device("d").iface("eth0", next).build();
  ASSERT_EQ(pbtest::ping(d, *srv_->ip(), 1, 0.2).rtts_ms.size(), 1u);
  EXPECT_LT(median_rtt(d, *srv_->ip(), 10), 5);
}

}  // namespace
