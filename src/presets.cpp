#include "patchbay/presets.hpp"

#include "patchbay/error.hpp"

#include <ostream>

namespace patchbay {

PresetValues preset_values(RouterPreset preset) {
  switch (preset) {
    case RouterPreset::Home:
      return {Nat::Home, Firewall::BlockInbound, IpSupport::DualStack, LanPool::Private};
    case RouterPreset::Public:
      return {Nat::None, Firewall::None, IpSupport::DualStack, LanPool::Public};
    case RouterPreset::PublicV4:
      return {Nat::None, Firewall::None, IpSupport::V4Only, LanPool::Public};
    case RouterPreset::IspCgnat:
      return {Nat::Cgnat, Firewall::None, IpSupport::DualStack, LanPool::Carrier};
    case RouterPreset::Corporate:
      return {Nat::Corporate, Firewall::Corporate, IpSupport::DualStack, LanPool::Private};
    case RouterPreset::Hotel:
      return {Nat::Corporate, Firewall::CaptivePortal, IpSupport::V4Only, LanPool::Private};
    case RouterPreset::Cloud:
      return {Nat::CloudNat, Firewall::None, IpSupport::DualStack, LanPool::Private};
  }
  // Only reachable through a value cast from outside the enum's range.
  throw Error(ErrorKind::kInvalidArgument, "", "unknown router preset");
}

std::string_view to_string(RouterPreset preset) {
  switch (preset) {
    case RouterPreset::Home:
      return "Home";
    case RouterPreset::Public:
      return "Public";
    case RouterPreset::PublicV4:
      return "PublicV4";
    case RouterPreset::IspCgnat:
      return "IspCgnat";
    case RouterPreset::Corporate:
      return "Corporate";
    case RouterPreset::Hotel:
      return "Hotel";
    case RouterPreset::Cloud:
      return "Cloud";
  }
  return "unknown";
}

std::string_view to_string(Nat nat) {
  switch (nat) {
    case Nat::None:
      return "none";
    case Nat::Home:
      return "home";
    case Nat::Corporate:
      return "corporate";
    case Nat::CloudNat:
      return "cloud-nat";
    case Nat::FullCone:
      return "full-cone";
    case Nat::Cgnat:
      return "cgnat";
    case Nat::Custom:
      return "custom";
  }
  return "unknown";
}

std::string_view to_string(Firewall firewall) {
  switch (firewall) {
    case Firewall::None:
      return "none";
    case Firewall::BlockInbound:
      return "block_inbound";
    case Firewall::Corporate:
      return "corporate";
    case Firewall::CaptivePortal:
      return "captive_portal";
    case Firewall::Custom:
      return "custom";
  }
  return "unknown";
}

std::string_view to_string(IpSupport support) {
  switch (support) {
    case IpSupport::V4Only:
      return "v4-only";
    case IpSupport::V6Only:
      return "v6-only";
    case IpSupport::DualStack:
      return "dual-stack";
  }
  return "unknown";
}

std::string_view to_string(LanPool pool) {
  switch (pool) {
    case LanPool::Public:
      return "public";
    case LanPool::Private:
      return "private";
    case LanPool::Carrier:
      return "carrier";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& os, RouterPreset preset) { return os << to_string(preset); }
std::ostream& operator<<(std::ostream& os, Nat nat) { return os << to_string(nat); }
std::ostream& operator<<(std::ostream& os, Firewall firewall) { return os << to_string(firewall); }
std::ostream& operator<<(std::ostream& os, IpSupport support) { return os << to_string(support); }
std::ostream& operator<<(std::ostream& os, LanPool pool) { return os << to_string(pool); }

std::string_view to_string(NatMapping mapping) {
  switch (mapping) {
    case NatMapping::EndpointIndependent:
      return "endpoint_independent";
    case NatMapping::AddressDependent:
      return "address_dependent";
    case NatMapping::AddressAndPortDependent:
      return "address_and_port_dependent";
  }
  return "unknown";
}

std::string_view to_string(NatFiltering filtering) {
  switch (filtering) {
    case NatFiltering::EndpointIndependent:
      return "endpoint_independent";
    case NatFiltering::AddressDependent:
      return "address_dependent";
    case NatFiltering::AddressAndPortDependent:
      return "address_and_port_dependent";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& os, NatMapping mapping) { return os << to_string(mapping); }
std::ostream& operator<<(std::ostream& os, NatFiltering filtering) {
  return os << to_string(filtering);
}

}  // namespace patchbay
