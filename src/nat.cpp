#include "patchbay/nat.hpp"

#include <ostream>
#include <sstream>

#include "patchbay/error.hpp"

namespace patchbay {

using std::chrono::seconds;

NatConfig NatConfig::preset(Nat nat) {
  const NatTimeouts home_timeouts{seconds(30), seconds(300), seconds(7200)};
  switch (nat) {
    case Nat::Home:
      // FritzBox, Unifi, OpenWRT: port-restricted cone.
      return {NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent,
              PortAssignment::Preserve, false, home_timeouts};
    case Nat::Corporate:
      // Enterprise firewalls: symmetric with random ports.
      return {NatMapping::AddressAndPortDependent,
              NatFiltering::AddressAndPortDependent,
              PortAssignment::Random,
              false,
              {seconds(30), seconds(120), seconds(3600)}};
    case Nat::CloudNat:
      return {NatMapping::AddressAndPortDependent,
              NatFiltering::AddressAndPortDependent,
              PortAssignment::Random,
              false,
              {seconds(30), seconds(350), seconds(3600)}};
    case Nat::FullCone:
      return {NatMapping::EndpointIndependent, NatFiltering::EndpointIndependent,
              PortAssignment::Preserve, true, home_timeouts};
    case Nat::Cgnat:
      // RFC 6888 requires endpoint-independent mapping of carrier NATs; filtering is open as
      // most carriers leave filtering to the customer's router.
      return {NatMapping::EndpointIndependent, NatFiltering::EndpointIndependent,
              PortAssignment::Preserve, false, home_timeouts};
    case Nat::None:
    case Nat::Custom:
      break;
  }
  throw Error(ErrorKind::kInvalidArgument, "",
              "NatConfig::preset: Nat::" + std::string(to_string(nat)) +
                  " has no NAT behaviour of its own (use a NatConfig or another preset)");
}

std::string_view to_string(PortAssignment ports) {
  switch (ports) {
    case PortAssignment::Preserve:
      return "preserve";
    case PortAssignment::Sequential:
      return "sequential";
    case PortAssignment::Random:
      return "random";
  }
  return "unknown";
}

std::string_view to_string(NatV6Mode mode) {
  switch (mode) {
    case NatV6Mode::None:
      return "none";
    case NatV6Mode::Nptv6:
      return "nptv6";
    case NatV6Mode::Masquerade:
      return "masquerade";
  }
  return "unknown";
}

std::string to_string(const NatConfig& c) {
  std::ostringstream out;
  out << "mapping=" << c.mapping << " filtering=" << c.filtering << " ports=" << c.ports
      << " hairpin=" << (c.hairpin ? "on" : "off") << " timeouts=" << c.timeouts.udp.count() << "/"
      << c.timeouts.udp_stream.count() << "/" << c.timeouts.tcp_established.count() << "s";
  return out.str();
}

std::ostream& operator<<(std::ostream& os, PortAssignment ports) { return os << to_string(ports); }
std::ostream& operator<<(std::ostream& os, NatV6Mode mode) { return os << to_string(mode); }
std::ostream& operator<<(std::ostream& os, const NatConfig& config) {
  return os << to_string(config);
}

}  // namespace patchbay
