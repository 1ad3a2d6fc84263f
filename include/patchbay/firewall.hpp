// Router firewalls: the presets as data, and a builder for custom rules.
//
//   // Outbound DNS and web only, nothing unsolicited from outside, and no SMTP to one network:
//   patchbay::FirewallConfig fw = patchbay::FirewallConfig::builder()
//                                     .block_inbound()
//                                     .allow_tcp({80, 443})
//                                     .allow_udp({53})
//                                     .deny(patchbay::FirewallRule::outbound(patchbay::Protocol::Tcp)
//                                               .to_ports({25})
//                                               .remote("198.18.0.0/16"))
//                                     .build();
//   auto office = lab.add_router("office").nat(patchbay::Nat::Home).firewall(fw).build();
//   office.set_firewall(patchbay::Firewall::None);  // at runtime, one atomic transaction
//
// Semantics (both IP families, on the router's forward path; docs/firewalls.md):
//  1. packets of flows already accepted (and ICMP errors about them) always pass;
//  2. the explicit rules, in order, for new flows; the first that matches decides;
//  3. block_inbound: everything else entering from the uplink is dropped, pings included;
//  4. the outbound TCP/UDP port policies, for new flows entering from the LAN only.
// Outbound means entering from the LAN bridge (devices and sub-routers), inbound entering from
// the uplink. The port policies never touch ICMP; only block_inbound and explicit rules filter
// it. Traffic between hosts of one LAN is switched, not routed, and never filtered. An Allow
// cannot open what the router's NAT filters (the NAT's filter runs first).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include "patchbay/presets.hpp"

namespace patchbay {

enum class Protocol { Any, Tcp, Udp, Icmp };

// Which new flows a rule looks at: opened from the LAN (Outbound) or from the uplink (Inbound).
enum class FlowDirection { Outbound, Inbound };

// Destination ports a policy lets through.
class PortPolicy {
 public:
  enum class Kind { AllowAll, BlockAll, AllowList };

  static PortPolicy allow_all() { return PortPolicy(Kind::AllowAll, {}); }
  static PortPolicy block_all() { return PortPolicy(Kind::BlockAll, {}); }
  // An empty list blocks everything, as a list of nothing allowed should.
  static PortPolicy allow(std::vector<std::uint16_t> ports) {
    return PortPolicy(Kind::AllowList, std::move(ports));
  }

  Kind kind() const { return kind_; }
  const std::vector<std::uint16_t>& ports() const { return ports_; }
  friend bool operator==(const PortPolicy&, const PortPolicy&) = default;

 private:
  PortPolicy(Kind kind, std::vector<std::uint16_t> ports) : kind_(kind), ports_(std::move(ports)) {}
  Kind kind_;
  std::vector<std::uint16_t> ports_;
};

// Destination ports first..last, both included: PortRange(25), PortRange(8000, 8100). A brace
// list of numbers is a list of single ports: to_ports({80, 443}) is two ports, and
// to_ports({{8000, 8100}}) one range.
struct PortRange {
  std::uint16_t first = 0;
  std::uint16_t last = 0;
  PortRange(std::uint16_t port) : first(port), last(port) {}  // NOLINT: a port is a range
  PortRange(std::uint16_t from, std::uint16_t to) : first(from), last(to) {}
  friend bool operator==(const PortRange&, const PortRange&) = default;
};

// One explicit rule: which new flows it matches. The verdict comes from allow()/deny().
struct FirewallRule {
  FlowDirection direction = FlowDirection::Outbound;
  Protocol protocol = Protocol::Any;
  std::vector<PortRange> ports;      // destination ports (TCP/UDP only); empty: any
  std::vector<std::string> remotes;  // CIDRs or addresses of the far end; empty: anywhere

  static FirewallRule outbound(Protocol p = Protocol::Any) {
    return {FlowDirection::Outbound, p, {}, {}};
  }
  static FirewallRule inbound(Protocol p = Protocol::Any) {
    return {FlowDirection::Inbound, p, {}, {}};
  }
  FirewallRule& to_ports(std::vector<PortRange> p) {
    ports = std::move(p);
    return *this;
  }
  // The far end: the destination of outbound flows, the source of inbound ones. An address
  // ("198.18.1.2", "2001:db8::2") or a prefix ("198.18.0.0/16"); with several, any of them
  // matches. A rule whose remotes are all of one family never matches the other.
  FirewallRule& remote(std::string cidr) {
    remotes.push_back(std::move(cidr));
    return *this;
  }
  friend bool operator==(const FirewallRule&, const FirewallRule&) = default;
};

struct FirewallConfig {
  enum class Verdict { Allow, Deny };
  struct Entry {
    Verdict verdict;
    FirewallRule rule;
    friend bool operator==(const Entry&, const Entry&) = default;
  };

  bool block_inbound = false;
  PortPolicy outbound_tcp = PortPolicy::allow_all();
  PortPolicy outbound_udp = PortPolicy::allow_all();
  std::vector<Entry> rules;  // checked first, in order

  // The behaviour behind a preset (Firewall::None gives an empty config). Throws
  // Error(kInvalidArgument) for Firewall::Custom.
  static FirewallConfig preset(Firewall firewall);

  // Throws Error(kInvalidArgument) for the first malformed part: a port 0 in a policy, a port
  // range that is empty or includes 0, ports on a rule whose protocol is not TCP or UDP, a
  // remote that is not an address or prefix. The message names the rule (its index in `rules`
  // and its text) and the value; culprit() is the field, e.g. "rules[2].remotes[0]".
  // Builder::build() calls it, and routers check every config they are given.
  void validate() const;

  class Builder;
  static Builder builder();

  friend bool operator==(const FirewallConfig&, const FirewallConfig&) = default;
};

class FirewallConfig::Builder {
 public:
  Builder& block_inbound() {
    config_.block_inbound = true;
    return *this;
  }
  Builder& outbound_tcp(PortPolicy policy) {
    config_.outbound_tcp = std::move(policy);
    return *this;
  }
  Builder& outbound_udp(PortPolicy policy) {
    config_.outbound_udp = std::move(policy);
    return *this;
  }
  Builder& allow_tcp(std::vector<std::uint16_t> ports) {
    return outbound_tcp(PortPolicy::allow(std::move(ports)));
  }
  Builder& allow_udp(std::vector<std::uint16_t> ports) {
    return outbound_udp(PortPolicy::allow(std::move(ports)));
  }
  Builder& block_tcp() { return outbound_tcp(PortPolicy::block_all()); }
  Builder& block_udp() { return outbound_udp(PortPolicy::block_all()); }
  Builder& allow(FirewallRule rule) {
    config_.rules.push_back({FirewallConfig::Verdict::Allow, std::move(rule)});
    return *this;
  }
  Builder& deny(FirewallRule rule) {
    config_.rules.push_back({FirewallConfig::Verdict::Deny, std::move(rule)});
    return *this;
  }
  // The config, after validate().
  FirewallConfig build() const;

 private:
  FirewallConfig config_;
};

inline FirewallConfig::Builder FirewallConfig::builder() { return Builder(); }

std::string_view to_string(Protocol protocol);
std::string_view to_string(FlowDirection direction);
// "deny(outbound tcp port 8000-8100 remote 198.18.0.0/16)"
std::string to_string(const FirewallConfig::Entry& entry);
// "block_inbound=yes outbound_tcp=allow[80,443] outbound_udp=allow[53]", then the entries.
std::string to_string(const FirewallConfig& config);
std::ostream& operator<<(std::ostream& os, const FirewallConfig& config);

}  // namespace patchbay
