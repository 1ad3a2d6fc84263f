// Link conditions on real links, measured with real traffic (ping, numbered UDP runs). On this
// project's CI kernel (no sch_netem) these run through the userspace emulator; tolerances come
// from the configured values and binomial intervals, never from observed timings.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "link_probe.hpp"
#include "patchbay/gtest.hpp"
#include "patchbay/patchbay.hpp"

namespace {

using namespace std::chrono_literals;
using patchbay::Device;
using patchbay::LinkCondition;
using patchbay::LinkConditions;
using patchbay::LinkLimits;
using patchbay::LinkPreset;
using patchbay::Router;
using pbtest::binomial_99;
using pbtest::median;

LinkCondition limits(const LinkLimits& l) { return LinkCondition::manual(l); }

// Two devices on one public router: `a` carries the conditions under test, `b` is clean.
class LinkConditionTest : public patchbay::testing::LabTest {
 protected:
  void SetUp() override {
    LabTest::SetUp();
    if (IsSkipped()) return;
    dc_ = lab().add_router("dc").build();
    a_ = lab().add_device("a").iface("eth0", *dc_).build();
    b_ = lab().add_device("b").iface("eth0", *dc_).build();
    // Neighbour discovery first: its own round trips would otherwise delay the first probe.
    ASSERT_EQ(pbtest::ping(*a_, *b_->ip(), 1, 0.2).rtts_ms.size(), 1u);
  }

  // Median RTT a -> b over `count` pings spaced so jitter cannot make them queue behind each
  // other.
  double median_rtt(int count, double interval_s = 0.02) {
    pbtest::PingResult r = pbtest::ping(*a_, *b_->ip(), count, interval_s);
    EXPECT_EQ(static_cast<int>(r.rtts_ms.size()), count) << "pings lost on a lossless link";
    return median(r.rtts_ms);
  }

  std::optional<Router> dc_;
  std::optional<Device> a_;
  std::optional<Device> b_;
};

TEST_F(LinkConditionTest, LatencyOnBothDirectionsAddsTwiceToTheRoundTrip) {
  a_->set_link_condition("eth0", limits({.latency_ms = 10}));
  const double want = 20;
  EXPECT_NEAR(median_rtt(40), want, std::max(0.5, 0.05 * want));
}

TEST_F(LinkConditionTest, EgressOnlyLatencyAddsOnce) {
  a_->set_link_condition("eth0", LinkConditions::egress_only(limits({.latency_ms = 15})));
  const double want = 15;
  EXPECT_NEAR(median_rtt(40), want, std::max(0.5, 0.05 * want));
  a_->set_link_condition("eth0", LinkConditions::ingress_only(limits({.latency_ms = 7})));
  EXPECT_NEAR(median_rtt(40), 7, 0.5);
}

TEST_F(LinkConditionTest, ClearingRestoresTheDirectPathAndNodeSeesNoChange) {
  auto carrier_changes = [&] { return pbtest::node_sysfs(*a_, "eth0/carrier_changes"); };
  auto ifindex = [&] { return pbtest::node_sysfs(*a_, "eth0/ifindex"); };
  const std::string changes_before = carrier_changes();
  const std::string index_before = ifindex();
  ASSERT_EQ(changes_before.find("error"), std::string::npos) << changes_before;

  a_->set_link_condition("eth0", limits({.latency_ms = 25}));
  EXPECT_NEAR(median_rtt(10, 0.06), 50, 2.5);
  EXPECT_EQ(a_->link_condition("eth0"), LinkConditions(limits({.latency_ms = 25})));
  a_->set_link_condition("eth0", LinkConditions{});
  EXPECT_LT(median_rtt(10), 1.0);
  EXPECT_TRUE(a_->link_condition("eth0").empty());

  // Same interface, never a carrier flap.
  EXPECT_EQ(ifindex(), index_before);
  EXPECT_EQ(carrier_changes(), changes_before);
  // The splice is gone from the router: only bridge ports and the bridge remain.
  std::string links = dc_->run_command({"ip", "-o", "link", "show"}).stdout_text;
  EXPECT_EQ(links.find("e@"), std::string::npos) << links;
}

TEST_F(LinkConditionTest, LossPerDirectionLandsInTheBinomialInterval) {
  constexpr int kCount = 2000;
  constexpr double kLoss = 10;
  a_->set_link_condition("eth0", LinkConditions::egress_only(limits({.loss_pct = kLoss})));
  pbtest::UdpRun up = pbtest::udp_run(*a_, *b_, *b_->ip(), kCount, 0us, 300ms);
  auto [lo, hi] = binomial_99(kCount, kLoss / 100);
  EXPECT_GE(up.lost(), lo);
  EXPECT_LE(up.lost(), hi);
  pbtest::UdpRun down = pbtest::udp_run(*b_, *a_, *a_->ip(), kCount, 0us, 300ms);
  EXPECT_EQ(down.lost(), 0) << "egress loss must not touch the download";

  constexpr double kDownLoss = 25;
  a_->set_link_condition("eth0", LinkConditions::ingress_only(limits({.loss_pct = kDownLoss})));
  down = pbtest::udp_run(*b_, *a_, *a_->ip(), kCount, 0us, 300ms);
  std::tie(lo, hi) = binomial_99(kCount, kDownLoss / 100);
  EXPECT_GE(down.lost(), lo);
  EXPECT_LE(down.lost(), hi);
  up = pbtest::udp_run(*a_, *b_, *b_->ip(), kCount, 0us, 300ms);
  EXPECT_EQ(up.lost(), 0);
}

TEST_F(LinkConditionTest, KernelStateDescribesTheEmulatorsCounters) {
  constexpr int kCount = 500;
  a_->set_link_condition("eth0", LinkConditions::egress_only(limits({.loss_pct = 50})));
  pbtest::UdpRun up = pbtest::udp_run(*a_, *b_, *b_->ip(), kCount, 0us, 300ms);
  ASSERT_GT(up.lost(), 0);
  // What write_artifacts() saves for a failed test: the model's drops match the datagrams lost.
  const std::string state = a_->describe_kernel_state();
  EXPECT_NE(state.find("# link emulator\ndevice 'a' interface 'eth0'"), std::string::npos) << state;
  EXPECT_NE(state.find("model drops " + std::to_string(up.lost())), std::string::npos) << state;
  EXPECT_EQ(b_->describe_kernel_state().find("# link emulator"), std::string::npos);
}

TEST_F(LinkConditionTest, RuntimeChangesApplyToTheNextPackets) {
  constexpr int kCount = 200;
  auto delivered = [&] {
    return kCount - pbtest::udp_run(*a_, *b_, *b_->ip(), kCount, 0us, 200ms).lost();
  };
  EXPECT_EQ(delivered(), kCount);
  a_->set_link_condition("eth0", limits({.loss_pct = 90}));
  auto [lo, hi] = binomial_99(kCount, 0.10);
  int lossy = delivered();
  EXPECT_GE(lossy, lo);
  EXPECT_LE(lossy, hi);
  a_->set_link_condition("eth0", limits({.loss_pct = 0}));
  EXPECT_EQ(delivered(), kCount);
}

TEST_F(LinkConditionTest, JitterSpreadsDelaysWithoutReordering) {
  constexpr int kLatency = 20;
  constexpr int kJitter = 5;
  a_->set_link_condition(
      "eth0", LinkConditions::egress_only(limits({.latency_ms = kLatency, .jitter_ms = kJitter})));
  pbtest::PingResult r = pbtest::ping(*a_, *b_->ip(), 100, 0.02);
  ASSERT_EQ(r.rtts_ms.size(), 100u);
  std::vector<double> rtts = r.rtts_ms;
  std::sort(rtts.begin(), rtts.end());
  // Each one-way delay is latency ± jitter (uniform); a packet held behind its predecessor only
  // leaves later, never earlier. Percentiles rather than extremes: a loaded machine may delay a
  // single reply by a scheduling slice, which says nothing about the link.
  EXPECT_GE(rtts[5], kLatency - kJitter - 0.5);
  EXPECT_LE(rtts[94], kLatency + kJitter + 1.0);
  EXPECT_NEAR(median(rtts), kLatency, kJitter / 2.0);
  EXPECT_GE(rtts[94] - rtts[5], kJitter) << "100 draws of ±" << kJitter << " ms spread this far";

  pbtest::UdpRun run = pbtest::udp_run(*a_, *b_, *b_->ip(), 500, 200us, 200ms);
  EXPECT_EQ(run.lost(), 0);
  EXPECT_EQ(run.overtakers(), 0) << "jitter alone must not reorder";
}

TEST_F(LinkConditionTest, ReorderSendsItsShareEarly) {
  constexpr int kCount = 600;
  constexpr double kReorder = 25;
  a_->set_link_condition(
      "eth0", LinkConditions::egress_only(limits({.latency_ms = 20, .reorder_pct = kReorder})));
  // 1 ms apart, so ~20 packets are always in flight for an early one to overtake.
  pbtest::UdpRun run = pbtest::udp_run(*a_, *b_, *b_->ip(), kCount, 1000us, 300ms);
  EXPECT_EQ(run.lost(), 0);
  auto [lo, hi] = binomial_99(kCount, kReorder / 100);
  EXPECT_GE(run.overtakers(), lo);
  EXPECT_LE(run.overtakers(), hi);
}

TEST_F(LinkConditionTest, DuplicateSendsItsShareTwice) {
  constexpr int kCount = 2000;
  constexpr double kDup = 10;
  a_->set_link_condition("eth0", LinkConditions::egress_only(limits({.duplicate_pct = kDup})));
  pbtest::UdpRun run = pbtest::udp_run(*a_, *b_, *b_->ip(), kCount, 0us, 300ms);
  EXPECT_EQ(run.lost(), 0);
  auto [lo, hi] = binomial_99(kCount, kDup / 100);
  EXPECT_GE(run.duplicates(), lo);
  EXPECT_LE(run.duplicates(), hi);
}

TEST_F(LinkConditionTest, CorruptedDatagramsFailTheirChecksum) {
  constexpr int kCount = 2000;
  constexpr double kCorrupt = 20;
  a_->set_link_condition("eth0", LinkConditions::egress_only(limits({.corrupt_pct = kCorrupt})));
  pbtest::UdpRun run = pbtest::udp_run(*a_, *b_, *b_->ip(), kCount, 0us, 300ms);
  // A flipped bit anywhere but the source MAC address (48 of the frame's ~480 bits) gets the
  // frame dropped by the receiver (bad checksum, wrong destination): most corrupted datagrams
  // are lost, and nothing else is.
  auto [lo, hi] = binomial_99(kCount, kCorrupt / 100);
  EXPECT_GE(run.lost(), 0.7 * lo);
  EXPECT_LE(run.lost(), hi);
}

TEST_F(LinkConditionTest, UnknownInterfaceIsNamed) {
  try {
    a_->set_link_condition("wlan7", LinkPreset::Wifi);
    FAIL() << "expected an error";
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.kind(), patchbay::ErrorKind::kNotFound);
    EXPECT_NE(std::string(e.what()).find("wlan7"), std::string::npos) << e.what();
  }
}

}  // namespace

namespace {

TEST_F(LinkConditionTest, RateCapsTcpGoodput) {
  constexpr std::uint32_t kRateKbit = 20'000;
  a_->set_link_condition("eth0", LinkConditions::egress_only(limits({.rate_kbit = kRateKbit})));
  // 4 s with the first second (slow start) left out.
  pbtest::TcpRun up = pbtest::iperf(*a_, *b_, {"-t", "4", "-O", "1"});
  // The rate counts whole frames, as tbf and netem do; goodput is payload. Ethernet, IP and
  // TCP (with timestamps) headers take 66 of every 1514 bytes, so full segments carry
  // 1448/1514 of the rate: 19.13 Mbit/s here, measured to within 0.01 % (ASan builds, whose
  // slower sender leaves the queue empty now and then, about 1 % less).
  const double want = kRateKbit * 1000.0 * 1448.0 / 1514.0;
  EXPECT_NEAR(up.bits_per_second, want, 0.02 * want);
  // The download is not capped.
  pbtest::TcpRun down = pbtest::iperf(*a_, *b_, {"-t", "2", "-R"});
  EXPECT_GT(down.bits_per_second, 5.0 * kRateKbit * 1000.0);
}

TEST_F(LinkConditionTest, LossHitsWirePacketsNotSuperpackets) {
  // TCP sends 64 KiB superpackets through veth; 2 % loss on them would cost whole windows. Per
  // wire packet, the sender retransmits about 2 % of its segments and keeps a useful rate.
  a_->set_link_condition("eth0", LinkConditions::egress_only(limits({.loss_pct = 2})));
  pbtest::TcpRun up = pbtest::iperf(*a_, *b_, {"-t", "2", "-M", "1400"});
  EXPECT_GT(up.retransmits, 0);
  EXPECT_GT(up.bits_per_second, 0);
}

}  // namespace
