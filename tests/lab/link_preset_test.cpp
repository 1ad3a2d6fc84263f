// Every link preset on a real link, measured with ping: the median round trip is twice the
// preset's latency and the round-trip loss lands in the binomial interval of its loss rate.
// Tolerances derive from the preset's own numbers (preset_limits), never from observed timings.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "link_probe.hpp"
#include "patchbay/gtest.hpp"
#include "patchbay/patchbay.hpp"

namespace {

using patchbay::Device;
using patchbay::LinkLimits;
using patchbay::LinkPreset;
using patchbay::Router;

class LinkPresetTest : public patchbay::testing::LabTest,
                       public ::testing::WithParamInterface<LinkPreset> {};

std::string PresetName(const ::testing::TestParamInfo<LinkPreset>& info) {
  std::string name(patchbay::to_string(info.param));
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

TEST_P(LinkPresetTest, RoundTripHasTwiceTheLatencyAndTheLossRateOfBothDirections) {
  const LinkPreset preset = GetParam();
  const LinkLimits l = patchbay::preset_limits(preset);
  Router dc = lab().add_router("dc").build();
  Device a = lab().add_device("a").iface("eth0", dc).build();
  Device b = lab().add_device("b").iface("eth0", dc).build();
  // ARP before the preset: its round trips would otherwise delay the first probe.
  ASSERT_EQ(pbtest::ping(a, *b.ip(), 1, 0.2).rtts_ms.size(), 1u);
  a.set_link_condition("eth0", preset);
  ASSERT_EQ(a.link_condition("eth0"), patchbay::LinkConditions(preset));

  // The emulator keeps each direction in order, so a packet drawn early would wait behind its
  // predecessor; pings further apart than the jitter's spread (2 x jitter) never do. Each round
  // trip is then 2L plus two independent draws of ±jitter, whose sum is symmetric about 0: the
  // median estimates 2L.
  const double interval_ms = std::max(10.0, 2.0 * l.jitter_ms + 5);
  const double want_ms = 2.0 * l.latency_ms;
  const double tolerance_ms = std::max(0.5, 0.05 * want_ms);
  // The median of n such round trips varies by about jitter/sqrt(n) (the sum of two uniform
  // draws has density 1/(2 jitter) at its centre); enough pings to put the tolerance four of
  // those away, at least 150, and never more than ~10 s of pinging.
  const double needed = std::pow(4.0 * l.jitter_ms / tolerance_ms, 2);
  const int count =
      static_cast<int>(std::min(10'000.0 / interval_ms, std::max(150.0, std::ceil(needed))));
  pbtest::PingResult r = pbtest::ping(a, *b.ip(), count, interval_ms / 1000);

  const double median = pbtest::median(r.rtts_ms);
  RecordProperty("pings", count);
  RecordProperty("median_rtt_ms", std::to_string(median));
  EXPECT_NEAR(median, want_ms, tolerance_ms)
      << patchbay::to_string(preset) << ": " << r.rtts_ms.size() << " of " << count
      << " pings answered";

  // A round trip survives only if both directions keep their packet.
  const double p = l.loss_pct / 100;
  const auto [lo, hi] = pbtest::binomial_99(count, 1 - (1 - p) * (1 - p));
  const int lost = count - static_cast<int>(r.rtts_ms.size());
  EXPECT_GE(lost, lo);
  EXPECT_LE(lost, hi);
  EXPECT_EQ(r.duplicates, 0) << "no preset duplicates";

  // No round trip beats 2L by more than the two directions' jitter: nothing bypasses the delay.
  ASSERT_FALSE(r.rtts_ms.empty());
  EXPECT_GE(*std::min_element(r.rtts_ms.begin(), r.rtts_ms.end()),
            want_ms - 2.0 * l.jitter_ms - 0.5);

  if (l.rate_kbit > 0) {
    // An 84-byte echo (98 bytes on the wire) serializes at the preset's rate in a fraction of
    // the tolerance, so the checks above also show the rate stage neither drops nor holds back
    // traffic that stays under its rate.
    const double serialize_ms = 98 * 8.0 / l.rate_kbit;
    EXPECT_LT(2 * serialize_ms, tolerance_ms / 2) << "the premise of the median check";
  }
}

INSTANTIATE_TEST_SUITE_P(AllPresets, LinkPresetTest, ::testing::ValuesIn(patchbay::kAllLinkPresets),
                         PresetName);

}  // namespace
