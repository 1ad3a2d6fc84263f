// The link emulator's per-packet model on virtual time: each impairment does what its parameter
// says, statistically, and a seed reproduces a run exactly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "link_model.hpp"

namespace {

using namespace std::chrono_literals;
using patchbay::internal::derive_seed;
using patchbay::internal::LinkModel;
using patchbay::internal::LinkModelParams;
using Time = LinkModel::Time;

constexpr std::size_t kMtu = 1500;

// The 99 % interval of a binomial share: p ± 2.576 sqrt(p (1 - p) / n).
void expect_share(std::uint64_t hits, std::uint64_t n, double pct) {
  const double p = pct / 100;
  const double half = 2.576 * std::sqrt(p * (1 - p) / static_cast<double>(n));
  const double seen = static_cast<double>(hits) / static_cast<double>(n);
  EXPECT_NEAR(seen, p, half) << hits << " of " << n;
}

TEST(LinkModelTest, NoImpairmentPassesEveryPacketAtOnce) {
  LinkModel model({}, 1);
  for (int i = 0; i < 100; ++i) {
    auto out = model.admit(Time(i * 1000), kMtu);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].at, Time(i * 1000));
    EXPECT_FALSE(out[0].corrupt_bit);
  }
}

TEST(LinkModelTest, LatencyDelaysEveryPacketByExactlyIt) {
  LinkModel model({.latency = 20ms}, 1);
  auto out = model.admit(Time(5ms), kMtu);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].at, Time(25ms));
}

TEST(LinkModelTest, LossMatchesTheConfiguredShare) {
  const double pct = 3.0;
  LinkModel model({.loss_pct = pct}, derive_seed(42, 1, 0));
  const std::uint64_t n = 20000;
  std::uint64_t lost = 0;
  for (std::uint64_t i = 0; i < n; ++i) lost += model.admit(Time(i), 100).empty() ? 1 : 0;
  expect_share(lost, n, pct);
  EXPECT_EQ(model.stats().lost, lost);
}

TEST(LinkModelTest, SameSeedSameDropPatternOtherSeedAnother) {
  auto pattern = [](std::uint64_t seed) {
    LinkModel model({.loss_pct = 10}, seed);
    std::vector<bool> dropped;
    for (int i = 0; i < 2000; ++i) dropped.push_back(model.admit(Time(i), 100).empty());
    return dropped;
  };
  EXPECT_EQ(pattern(derive_seed(7, 3, 1)), pattern(derive_seed(7, 3, 1)));
  EXPECT_NE(pattern(derive_seed(7, 3, 1)), pattern(derive_seed(7, 3, 0)));
  EXPECT_NE(pattern(derive_seed(7, 3, 1)), pattern(derive_seed(8, 3, 1)));
}

// A drop pattern stays aligned with the packet sequence when other parameters change.
TEST(LinkModelTest, LossPatternDoesNotDependOnOtherParameters) {
  auto pattern = [](LinkModelParams p) {
    LinkModel model(p, 99);
    std::vector<bool> dropped;
    for (int i = 0; i < 2000; ++i) dropped.push_back(model.admit(Time(i * 1000000), 100).empty());
    return dropped;
  };
  EXPECT_EQ(pattern({.loss_pct = 5}),
            pattern({.latency = 10ms, .jitter = 2ms, .loss_pct = 5, .duplicate_pct = 1}));
}

TEST(LinkModelTest, RateSerializesPacketsBackToBack) {
  const std::uint64_t rate = 8'000'000;  // 8 Mbit/s: 1500 bytes take 1.5 ms
  LinkModel model({.rate_bps = rate}, 1);
  Time last{0};
  for (int i = 0; i < 100; ++i) {
    auto out = model.admit(Time(0), kMtu);  // a burst, all at t = 0
    ASSERT_EQ(out.size(), 1u) << "packet " << i;
    EXPECT_EQ(out[0].at - last, Time(1500us));
    last = out[0].at;
  }
  // Goodput over the burst is the rate.
  EXPECT_EQ(last, Time(100 * 1500us));
}

TEST(LinkModelTest, QueueInFrontOfTheRateIsBounded) {
  LinkModel model({.rate_bps = 8'000'000, .max_queue_delay = 30ms}, 1);
  int passed = 0;
  for (int i = 0; i < 100; ++i) passed += model.admit(Time(0), kMtu).empty() ? 0 : 1;
  // 30 ms of queue at 1.5 ms per packet: the first packet starts at once, 20 more wait.
  EXPECT_EQ(passed, 21);
  EXPECT_EQ(model.stats().queue_drops, 79u);
  // Once drained, the link takes packets again.
  EXPECT_EQ(model.admit(Time(1s), kMtu).size(), 1u);
}

TEST(LinkModelTest, JitterSpreadsDelaysWithoutReordering) {
  const Time latency = 20ms;
  const Time jitter = 5ms;
  LinkModel model({.latency = latency, .jitter = jitter}, derive_seed(1, 2, 3));
  std::vector<double> delays;
  Time previous{0};
  // Packets 20 ms apart never catch up with each other, so the delays show the raw jitter.
  for (int i = 0; i < 5000; ++i) {
    const Time now = Time(i * 20ms);
    auto out = model.admit(now, kMtu);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_GE(out[0].at, previous);
    previous = out[0].at;
    const Time delay = out[0].at - now;
    EXPECT_GE(delay, latency - jitter);
    EXPECT_LE(delay, latency + jitter);
    delays.push_back(std::chrono::duration<double, std::milli>(delay).count());
  }
  const double mean = std::accumulate(delays.begin(), delays.end(), 0.0) / delays.size();
  double var = 0;
  for (double d : delays) var += (d - mean) * (d - mean);
  const double sd = std::sqrt(var / delays.size());
  EXPECT_NEAR(mean, 20.0, 0.2);
  EXPECT_NEAR(sd, 5.0 / std::sqrt(3.0), 0.15) << "uniform in [-J, +J]";

  // Back-to-back packets with jitter still leave in order.
  LinkModel dense({.latency = latency, .jitter = jitter}, 5);
  Time last{0};
  for (int i = 0; i < 1000; ++i) {
    auto out = dense.admit(Time(i * 10us), kMtu);
    ASSERT_GE(out[0].at, last) << "packet " << i << " overtook its predecessor";
    last = out[0].at;
  }
}

TEST(LinkModelTest, ReorderSendsItsShareAheadOfDelayedPackets) {
  const double pct = 25;
  LinkModel model({.latency = 10ms, .reorder_pct = pct}, derive_seed(3, 0, 0));
  const std::uint64_t n = 8000;
  std::uint64_t overtook = 0;
  Time latest{0};
  for (std::uint64_t i = 0; i < n; ++i) {
    auto out = model.admit(Time(i * 100us), kMtu);
    ASSERT_EQ(out.size(), 1u);
    if (out[0].at < latest) ++overtook;
    latest = std::max(latest, out[0].at);
  }
  expect_share(overtook, n, pct);
  // A reordered packet overtakes unless the delay line is empty: only among the first packets.
  EXPECT_GE(model.stats().reordered, overtook);
  EXPECT_LE(model.stats().reordered - overtook, 10u);

  LinkModel no_delay({.reorder_pct = 50}, 3);
  EXPECT_EQ(no_delay.admit(Time(0), kMtu)[0].at, Time(0));
  EXPECT_EQ(no_delay.stats().reordered, 0u) << "reordering needs a delay, as with netem";
}

TEST(LinkModelTest, DuplicateAndCorruptMatchTheirShares) {
  LinkModel model({.duplicate_pct = 10, .corrupt_pct = 5}, derive_seed(11, 1, 1));
  const std::uint64_t n = 20000;
  std::uint64_t doubled = 0, corrupted = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    auto out = model.admit(Time(i), 200);
    ASSERT_GE(out.size(), 1u);
    if (out.size() == 2) ++doubled;
    if (out[0].corrupt_bit) {
      ++corrupted;
      EXPECT_LT(*out[0].corrupt_bit, 200u * 8);
    }
  }
  expect_share(doubled, n, 10);
  expect_share(corrupted, n, 5);
}

TEST(LinkModelTest, RuntimeChangeAppliesToTheNextPacket) {
  LinkModel model({.latency = 10ms}, 1);
  EXPECT_EQ(model.admit(Time(0), kMtu)[0].at, Time(10ms));
  model.set_params({.latency = 50ms});
  EXPECT_EQ(model.admit(Time(1ms), kMtu)[0].at, Time(51ms));
  model.set_params({});
  // Cleared, but it still cannot overtake the packet in flight.
  EXPECT_EQ(model.admit(Time(2ms), kMtu)[0].at, Time(51ms));
  EXPECT_EQ(model.admit(Time(60ms), kMtu)[0].at, Time(60ms));
}

}  // namespace
