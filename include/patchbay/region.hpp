// Regions: groups of routers far apart from each other. Traffic between two regions crosses
// their region link and pays its latency (and loss and rate) on top of every per-link condition;
// traffic inside a region, or to routers outside any region, does not.
//
//   patchbay::Lab lab;
//   patchbay::Region eu = lab.add_region("eu");
//   patchbay::Region us = lab.add_region("us");
//   lab.link_regions(eu, us, patchbay::RegionLink::good(40));  // 40 ms each way: RTT 80 ms
//   patchbay::Router berlin = lab.add_router("berlin").region(eu).build();
//   patchbay::Router nyc = lab.add_router("nyc").region(us).build();
//   ...
//   lab.break_region_link(eu, us);    // partition: eu <-> us packets are dropped from now on
//   lab.restore_region_link(eu, us);  // and flow again
//
// Under the hood a region is a router named "region_<name>" on the IX, holding the region's
// /20 (198.18.16.0/20 for the first region, .32.0/20 for the second, ...); a router built in a
// region hangs below it (a public one gets the next /24 of that /20). Two linked regions' routers
// are joined by their own link, emulated like every other (docs/link-conditions.md).
#pragma once

#include <cstdint>
#include <string>

#include "patchbay/link_condition.hpp"

namespace patchbay {

// The condition of a region link; it applies in each direction (RTT = 2 x latency_ms).
struct RegionLink {
  std::uint32_t latency_ms = 0;
  std::uint32_t jitter_ms = 0;
  double loss_pct = 0;
  std::uint32_t rate_mbit = 0;  // 0 = unlimited

  // Latency only.
  static RegionLink good(std::uint32_t latency_ms) { return {latency_ms, 0, 0, 0}; }
  // Latency with a tenth of it as jitter and 0.5 % loss.
  static RegionLink degraded(std::uint32_t latency_ms) {
    return {latency_ms, latency_ms / 10, 0.5, 0};
  }
  // The same numbers as a link condition.
  LinkCondition condition() const;

  friend bool operator==(const RegionLink&, const RegionLink&) = default;
};

// A handle naming a region of a lab; cheap to copy.
class Region {
 public:
  explicit Region(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }
  // The name of the region's own router ("region_<name>").
  std::string router_name() const { return "region_" + name_; }

  friend bool operator==(const Region&, const Region&) = default;

 private:
  std::string name_;
};

struct DefaultRegions {
  Region us;
  Region eu;
  Region asia;
};

}  // namespace patchbay
