// Router behaviour knobs: NAT, firewall, IP families, and the presets that set them together.
//
//   auto home = lab.add_router("home").preset(patchbay::RouterPreset::Home).build();
//   auto corp = lab.add_router("corp")
//                   .preset(patchbay::RouterPreset::Corporate)
//                   .ip_support(patchbay::IpSupport::V4Only)  // explicit setters win
//                   .build();
//
// A preset fills in defaults; explicit setters override them whatever their order.
#pragma once

#include <array>
#include <iosfwd>
#include <optional>
#include <string_view>

namespace patchbay {

// IPv4 NAT on the router's uplink. None: LAN addresses are public and routed. Each other value
// stands for a NatConfig (nat.hpp: NatConfig::preset); Custom is what a router reports when it
// was given a NatConfig of its own.
enum class Nat { None, Home, Corporate, CloudNat, FullCone, Cgnat, Custom };

// Forward-path filtering in front of the LAN (firewall.hpp: FirewallConfig::preset). Custom: a
// FirewallConfig of the router's own.
enum class Firewall { None, BlockInbound, Corporate, CaptivePortal, Custom };

enum class IpSupport { V4Only, V6Only, DualStack };

// Where a router's LAN prefixes come from.
enum class LanPool {
  Public,   // 198.18.N.0/24 (then 198.19.0.0/16), 2001:db8:1:N::/64
  Private,  // 10.0.N.0/24 (then 10.1.0.0/16 ...), fd10:0:0:N::/64
  Carrier,  // 100.64.N.0/24 (RFC 6598 shared space), fd10:0:0:N::/64
};

// RFC 4787 behaviour classes, as configured on a NAT or as classified by a probe.
// Mapping: when does an internal ip:port get a new external port?
enum class NatMapping {
  EndpointIndependent,      // never: one external port for every destination (EIM)
  AddressDependent,         // per destination IP (ADM)
  AddressAndPortDependent,  // per destination ip:port ("symmetric", EDM)
};
// Filtering: who may send to an existing mapping?
enum class NatFiltering {
  EndpointIndependent,      // anyone (EIF)
  AddressDependent,         // IPs the inside host has sent to (ADF)
  AddressAndPortDependent,  // exactly the ip:ports it has sent to (APDF)
};

enum class RouterPreset { Home, Public, PublicV4, IspCgnat, Corporate, Hotel, Cloud };

// The five fields a preset sets.
struct PresetValues {
  Nat nat;
  Firewall firewall;
  IpSupport ip_support;
  LanPool pool;
};

PresetValues preset_values(RouterPreset preset);

inline constexpr std::array<RouterPreset, 7> kAllRouterPresets = {
    RouterPreset::Home,      RouterPreset::Public, RouterPreset::PublicV4, RouterPreset::IspCgnat,
    RouterPreset::Corporate, RouterPreset::Hotel,  RouterPreset::Cloud};

// Names as used in state.json and test names: "Home", "PublicV4", ...
std::string_view to_string(RouterPreset preset);
// Serialized names (kebab/snake case as upstream): "home", "cloud-nat", "block_inbound",
// "dual-stack".
std::string_view to_string(Nat nat);
std::string_view to_string(Firewall firewall);
std::string_view to_string(IpSupport support);
std::string_view to_string(LanPool pool);
// "endpoint_independent", "address_dependent", "address_and_port_dependent"
std::string_view to_string(NatMapping mapping);
std::string_view to_string(NatFiltering filtering);

// Stream the names above, so GoogleTest prints "Home" instead of "4-byte object <00-00 00-00>".
std::ostream& operator<<(std::ostream& os, RouterPreset preset);
std::ostream& operator<<(std::ostream& os, Nat nat);
std::ostream& operator<<(std::ostream& os, Firewall firewall);
std::ostream& operator<<(std::ostream& os, IpSupport support);
std::ostream& operator<<(std::ostream& os, LanPool pool);
std::ostream& operator<<(std::ostream& os, NatMapping mapping);
std::ostream& operator<<(std::ostream& os, NatFiltering filtering);

inline bool has_v4(IpSupport s) { return s != IpSupport::V6Only; }
inline bool has_v6(IpSupport s) { return s != IpSupport::V4Only; }

}  // namespace patchbay
