// NAT behaviour in RFC 4787 terms: mapping, filtering, port assignment, hairpinning, timeouts.
//
//   // A preset, expanded into its behaviour:
//   patchbay::NatConfig home = patchbay::NatConfig::preset(patchbay::Nat::Home);
//
//   // A custom NAT: address-dependent mapping and filtering, sequential ports, short UDP timers.
//   auto router = lab.add_router("odd")
//                     .nat(patchbay::NatConfig{}
//                              .with_mapping(patchbay::NatMapping::AddressDependent)
//                              .with_filtering(patchbay::NatFiltering::AddressDependent)
//                              .with_ports(patchbay::PortAssignment::Sequential)
//                              .with_udp_timeouts(std::chrono::seconds(5),
//                              std::chrono::seconds(5)))
//                     .build();
//   router.set_nat(patchbay::Nat::Corporate);  // at runtime, one atomic nftables transaction
//
// Every combination of the three mappings and three filterings works for UDP and TCP. The rules
// run in the kernel (conntrack + nftables dynamic maps); see docs/nat-and-firewalls.md.
#pragma once

#include <array>
#include <chrono>
#include <iosfwd>
#include <string>
#include <string_view>

#include "patchbay/presets.hpp"

namespace patchbay {

// How a new mapping picks its external port.
enum class PortAssignment {
  Preserve,    // the internal port when no other internal endpoint holds it, else random
  Sequential,  // the next port of a per-router counter (predictable, as some carrier NATs do)
  Random,      // a random port for every new mapping
};

// Conntrack timeouts of the router's namespace. The UDP mapping lives `udp_stream` after its
// last outbound packet, a TCP mapping `tcp_established`.
struct NatTimeouts {
  std::chrono::seconds udp{30};                // a UDP flow that has not seen two-way traffic long
  std::chrono::seconds udp_stream{300};        // a UDP flow with traffic both ways
  std::chrono::seconds tcp_established{7200};  // an established TCP connection
  friend bool operator==(const NatTimeouts&, const NatTimeouts&) = default;
};

struct NatConfig {
  NatMapping mapping = NatMapping::EndpointIndependent;
  NatFiltering filtering = NatFiltering::AddressAndPortDependent;
  PortAssignment ports = PortAssignment::Preserve;
  // A LAN host may reach another LAN host through the router's public ip:mapped-port.
  bool hairpin = false;
  NatTimeouts timeouts;

  // The behaviour behind a preset. Throws Error(kInvalidArgument) for Nat::None and
  // Nat::Custom, which have none of their own.
  static NatConfig preset(Nat nat);

  NatConfig& with_mapping(NatMapping m) {
    mapping = m;
    return *this;
  }
  NatConfig& with_filtering(NatFiltering f) {
    filtering = f;
    return *this;
  }
  NatConfig& with_ports(PortAssignment p) {
    ports = p;
    return *this;
  }
  NatConfig& with_hairpin(bool on = true) {
    hairpin = on;
    return *this;
  }
  NatConfig& with_udp_timeouts(std::chrono::seconds udp, std::chrono::seconds udp_stream) {
    timeouts.udp = udp;
    timeouts.udp_stream = udp_stream;
    return *this;
  }
  NatConfig& with_tcp_timeout(std::chrono::seconds established) {
    timeouts.tcp_established = established;
    return *this;
  }

  friend bool operator==(const NatConfig&, const NatConfig&) = default;
};

// IPv6 translation on the router's uplink.
enum class NatV6Mode {
  None,        // LAN prefixes are routed unchanged
  Nptv6,       // stateless 1:1 prefix translation (RFC 6296), host bits kept
  Masquerade,  // stateful NAT66: every LAN source leaves with the router's uplink address
};

// The NAT presets that are fixed behaviours (everything but Custom), for matrix suites.
inline constexpr std::array<Nat, 6> kAllNats = {Nat::None,     Nat::Home,     Nat::Corporate,
                                                Nat::CloudNat, Nat::FullCone, Nat::Cgnat};

// "preserve", "sequential", "random"; "none", "nptv6", "masquerade".
std::string_view to_string(PortAssignment ports);
std::string_view to_string(NatV6Mode mode);
// One line: "mapping=endpoint_independent filtering=... ports=preserve hairpin=off
// timeouts=30/300/7200s".
std::string to_string(const NatConfig& config);

std::ostream& operator<<(std::ostream& os, PortAssignment ports);
std::ostream& operator<<(std::ostream& os, NatV6Mode mode);
std::ostream& operator<<(std::ostream& os, const NatConfig& config);

}  // namespace patchbay
