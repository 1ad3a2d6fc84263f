// Regions: cross-region latency from region links, partitions and their repair, routing of
// IPv4 and IPv6 between regions, and the errors of the region API. Real pings and datagrams.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "link_probe.hpp"
#include "patchbay/gtest.hpp"
#include "patchbay/patchbay.hpp"

namespace {

using namespace std::chrono_literals;
using patchbay::Device;
using patchbay::ErrorKind;
using patchbay::IpSupport;
using patchbay::Region;
using patchbay::RegionLink;
using patchbay::Router;
using pbtest::median;

double tolerance(double want_ms) { return std::max(0.5, 0.05 * want_ms); }

class RegionTest : public patchbay::testing::LabTest {
 protected:
  Device device_in(const Router& r, const std::string& name) {
    return lab().add_device(name).iface("eth0", r).build();
  }
  // Median RTT over `count` pings after one that settles neighbour discovery.
  double rtt(const Device& from, const Device& to, int count = 10) {
    pbtest::ping(from, *to.ip(), 1, 0.2);
    pbtest::PingResult r = pbtest::ping(from, *to.ip(), count, 0.02);
    EXPECT_EQ(static_cast<int>(r.rtts_ms.size()), count);
    return median(r.rtts_ms);
  }
  template <class F>
  void expect_error(F&& f, ErrorKind kind, const std::string& text) {
    try {
      f();
      ADD_FAILURE() << "expected an error containing '" << text << "'";
    } catch (const patchbay::Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  }
};

TEST_F(RegionTest, CrossRegionRoundTripIsTwiceTheLinkLatency) {
  Region eu = lab().add_region("eu");
  Region us = lab().add_region("us");
  lab().link_regions(eu, us, RegionLink::good(20));
  Router berlin = lab().add_router("berlin").region(eu).build();
  Router nyc = lab().add_router("nyc").region(us).build();
  EXPECT_EQ(berlin.region(), "eu");
  EXPECT_EQ(nyc.upstream()->name(), "region_us");
  EXPECT_EQ(berlin.lan_v4()->to_string(), "198.18.17.0/24") << "the region's first public /24";
  Device a = device_in(berlin, "a");
  Device b = device_in(nyc, "b");
  EXPECT_NEAR(rtt(a, b), 40, tolerance(40));
  EXPECT_NEAR(rtt(b, a), 40, tolerance(40));
}

TEST_F(RegionTest, TrafficInsideARegionOrToRegionlessRoutersPaysNoRegionLatency) {
  Region eu = lab().add_region("eu");
  Region us = lab().add_region("us");
  lab().link_regions(eu, us, RegionLink::good(30));
  Router berlin = lab().add_router("berlin").region(eu).build();
  Router paris = lab().add_router("paris").region(eu).build();
  Router dc = lab().add_router("dc").build();  // on the IX, in no region
  Device a = device_in(berlin, "a");
  Device b = device_in(paris, "b");
  Device c = device_in(dc, "c");
  EXPECT_LT(rtt(a, b), 5);
  EXPECT_LT(rtt(a, c), 5);
}

TEST_F(RegionTest, RegionLatencyStacksOnLinkConditions) {
  Region eu = lab().add_region("eu");
  Region us = lab().add_region("us");
  lab().link_regions(eu, us, RegionLink::good(20));
  Router berlin = lab().add_router("berlin").region(eu).build();
  Router nyc = lab().add_router("nyc").region(us).build();
  Device a = device_in(berlin, "a");
  Device b = device_in(nyc, "b");
  a.set_link_condition("eth0", patchbay::LinkConditions::egress_only(
                                   patchbay::LinkCondition::manual({.latency_ms = 10})));
  EXPECT_NEAR(rtt(a, b), 50, tolerance(50));
}

TEST_F(RegionTest, BreakPartitionsAtOnceAndRestoreReconnects) {
  Region eu = lab().add_region("eu");
  Region us = lab().add_region("us");
  lab().link_regions(eu, us, RegionLink::good(5));
  Device a = device_in(lab().add_router("berlin").region(eu).build(), "a");
  Device b = device_in(lab().add_router("nyc").region(us).build(), "b");
  constexpr int kCount = 50;
  auto delivered = [&] {
    return kCount - pbtest::udp_run(a, b, *b.ip(), kCount, 0us, 100ms).lost();
  };
  pbtest::ping(a, *b.ip(), 1, 0.2);  // neighbour discovery on every hop
  EXPECT_EQ(delivered(), kCount);

  lab().break_region_link(eu, us);
  EXPECT_TRUE(lab().region_link_broken(eu, us));
  // The very next datagrams are dropped: the break is in force when the call returns.
  EXPECT_EQ(delivered(), 0);
  EXPECT_TRUE(pbtest::ping(a, *b.ip(), 2, 0.2, 1).rtts_ms.empty());

  lab().restore_region_link(us, eu);  // either order names the link
  EXPECT_FALSE(lab().region_link_broken(eu, us));
  EXPECT_EQ(delivered(), kCount);
}

TEST_F(RegionTest, ChangingARegionLinkTakesEffectAndSurvivesABreak) {
  Region eu = lab().add_region("eu");
  Region us = lab().add_region("us");
  lab().link_regions(eu, us, RegionLink::good(10));
  Device a = device_in(lab().add_router("berlin").region(eu).build(), "a");
  Device b = device_in(lab().add_router("nyc").region(us).build(), "b");
  EXPECT_NEAR(rtt(a, b), 20, tolerance(20));
  lab().set_region_link(eu, us, RegionLink::good(25));
  EXPECT_NEAR(rtt(a, b), 50, tolerance(50));
  lab().break_region_link(eu, us);
  lab().set_region_link(eu, us, RegionLink::good(15));  // remembered while broken
  lab().restore_region_link(eu, us);
  EXPECT_NEAR(rtt(a, b), 30, tolerance(30));
}

TEST_F(RegionTest, DefaultRegionsHaveTheirLatencies) {
  patchbay::DefaultRegions r = lab().add_default_regions();
  Device us = device_in(lab().add_router("r-us").region(r.us).build(), "d-us");
  Device eu = device_in(lab().add_router("r-eu").region(r.eu).build(), "d-eu");
  Device asia = device_in(lab().add_router("r-asia").region(r.asia).build(), "d-asia");
  EXPECT_NEAR(rtt(us, eu, 5), 80, tolerance(80));
  EXPECT_NEAR(rtt(us, asia, 5), 190, tolerance(190));
  EXPECT_NEAR(rtt(eu, asia, 5), 240, tolerance(240));
  EXPECT_EQ(lab().regions().size(), 3u);
}

TEST_F(RegionTest, Ipv6CrossesTheRegionLinkToo) {
  Region eu = lab().add_region("eu");
  Region us = lab().add_region("us");
  // One router built before the link, one after: both get their routes.
  Router berlin = lab().add_router("berlin").region(eu).ip_support(IpSupport::DualStack).build();
  lab().link_regions(eu, us, RegionLink::good(15));
  Router nyc = lab().add_router("nyc").region(us).ip_support(IpSupport::DualStack).build();
  Device a = device_in(berlin, "a");
  Device b = device_in(nyc, "b");
  ASSERT_TRUE(b.ip6());
  patchbay::CommandResult r =
      a.run_command({"ping", "-6", "-n", "-c", "6", "-i", "0.05", b.ip6()->to_string()});
  ASSERT_TRUE(r.success()) << r.stdout_text << r.stderr_text;
  // The last reply's RTT (the first may include neighbour discovery).
  const std::string& out = r.stdout_text;
  std::size_t t = out.rfind("time=");
  ASSERT_NE(t, std::string::npos) << out;
  EXPECT_NEAR(std::stod(out.substr(t + 5)), 30, 2.0) << out;
}

TEST_F(RegionTest, ErrorsNameTheRegions) {
  Region eu = lab().add_region("eu");
  Region us = lab().add_region("us");
  expect_error([&] { lab().add_region("eu"); }, ErrorKind::kAlreadyExists,
               "region 'eu' already exists");
  expect_error([&] { lab().add_region(""); }, ErrorKind::kInvalidArgument,
               "region name must not be empty");
  expect_error([&] { lab().link_regions(eu, Region("mars"), RegionLink::good(1)); },
               ErrorKind::kNotFound, "region 'mars' not found");
  expect_error([&] { lab().break_region_link(eu, us); }, ErrorKind::kNotFound,
               "no link between 'eu' and 'us'");
  lab().link_regions(eu, us, RegionLink::good(1));
  expect_error([&] { lab().link_regions(us, eu, RegionLink::good(1)); }, ErrorKind::kAlreadyExists,
               "regions 'us' and 'eu' are already linked");
  expect_error([&] { lab().restore_region_link(eu, us); }, ErrorKind::kInvalidArgument,
               "link between 'eu' and 'us' is not broken");
  lab().break_region_link(eu, us);
  expect_error([&] { lab().break_region_link(eu, us); }, ErrorKind::kInvalidArgument,
               "is already broken");
  expect_error([&] { (void)lab().add_router("region_x").build(); }, ErrorKind::kInvalidArgument,
               "router names starting with 'region_' are reserved");
  Router dc = lab().add_router("dc").build();
  expect_error([&] { (void)lab().add_router("both").region(eu).upstream(dc).build(); },
               ErrorKind::kInvalidArgument, "region and upstream both given");
  expect_error([&] { (void)lab().add_router("lost").region(Region("mars")).build(); },
               ErrorKind::kNotFound, "region 'mars' not found");
  EXPECT_FALSE(lab().router("both"));
}

TEST_F(RegionTest, StateJsonRecordsRegionsAndTheirLinks) {
  Region eu = lab().add_region("eu");
  Region us = lab().add_region("us");
  lab().link_regions(eu, us, RegionLink::degraded(50));
  (void)lab().add_router("berlin").region(eu).build();
  lab().break_region_link(eu, us);
  const std::string state = lab().state_json();
  EXPECT_NE(state.find("\"region\": \"eu\""), std::string::npos) << state;
  EXPECT_NE(state.find("\"broken\": true"), std::string::npos) << state;
  EXPECT_NE(state.find("\"latency_ms\": 50"), std::string::npos) << state;
  EXPECT_NE(state.find("\"jitter_ms\": 5"), std::string::npos) << state;
}

}  // namespace
