// Everything a router's nftables ruleset depends on, and the planners that turn it into tables.
//
// Each planner owns one table and one behaviour: NAT44 with its RFC 4787 filtering (nat_rules),
// the firewall (firewall_rules), IPv6 translation (nat6_rules). NftSocket renders the plans.
#pragma once

#include <optional>
#include <string>

#include "nft_rule.hpp"
#include "patchbay/addresses.hpp"
#include "patchbay/firewall.hpp"
#include "patchbay/nat.hpp"

namespace patchbay::internal {

struct Nat6Rules {
  NatV6Mode mode = NatV6Mode::None;
  std::optional<Ipv6Net> lan;       // the LAN prefix (NPTv6 inside)
  std::optional<Ipv6Net> external;  // NPTv6 outside prefix
};

struct RouterRules {
  std::string wan_ifname;  // "ix" or "wan"
  std::string lan_ifname;  // the LAN bridge
  std::optional<Ipv4Address> wan_ipv4;
  std::optional<Ipv4Net> lan_v4;  // the LAN prefix (tells hairpinned flows from inbound ones)
  std::optional<NatConfig> nat;   // nullopt: no IPv4 NAT
  std::optional<FirewallConfig> firewall;  // nullopt: no firewall table
  Nat6Rules nat6;
  // Drop forwarded ICMP "fragmentation needed" and ICMPv6 "packet too big" (a PMTU black hole).
  bool block_icmp_frag_needed = false;
};

// Table names, so the socket can delete a table a plan no longer wants.
inline constexpr const char* kNatTable = "pb_nat";      // ip
inline constexpr const char* kFirewallTable = "pb_fw";  // inet
inline constexpr const char* kNat6Table = "pb_nat6";    // ip6
inline constexpr const char* kPmtuTable = "pb_pmtu";    // inet

// Dynamic sets of the NAT table that hold mapping state (flushed by flush_nat_state()).
inline constexpr const char* kNatOutMap = "out_map";  // internal endpoint -> external
inline constexpr const char* kNatInMap = "in_map";    // external port -> internal endpoint
inline constexpr const char* kNatPeers = "peers";     // destinations each endpoint sent to

NftTableSpec plan_nat44(const RouterRules& rules);
NftTableSpec plan_firewall(const RouterRules& rules);
NftTableSpec plan_nat66(const RouterRules& rules);
NftTableSpec plan_pmtu(const RouterRules& rules);

}  // namespace patchbay::internal
