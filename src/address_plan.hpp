// The lab's address plan: IX addresses, LAN prefixes per pool, hosts inside a LAN, and the
// deterministic link-local and MAC addresses of interfaces. Pure values with no kernel work,
// copyable so a build can allocate on a copy and commit only on success.
//
//   IX:       198.18.0.0/24 (gateway .1, routers from .10), 2001:db8::/64 (routers from ::10)
//   Public:   198.18.1.0/24 .. 198.18.15.0/24, then 198.19.0.0/24 .. 198.19.255.0/24;
//             2001:db8:1:N::/64
//   Private:  10.0.1.0/24 .. 10.255.255.0/24 (never wraps); fd10:0:0:N::/64
//   Carrier:  100.64.0.0/10 in /24s from 100.64.1.0; fd10:0:0:N::/64 (shared ULA counter)
//   NPTv6:    2001:db8:ff00:N::/64, the outside prefixes of NPTv6 routers (reusable)
// (198.18.16.0/20 and above stay free for regions.)
#pragma once

#include <array>
#include <cstdint>
#include <set>
#include <string>

#include "patchbay/addresses.hpp"
#include "patchbay/presets.hpp"

namespace patchbay::internal {

class AddressPlan {
 public:
  static Ipv4Net ix_v4();  // 198.18.0.0/24
  static Ipv6Net ix_v6();  // 2001:db8::/64
  static Ipv4Address ix_gateway_v4();
  static Ipv6Address ix_gateway_v6();

  // Next router uplink address on the IX. Throws Error "IX IPv4 address pool exhausted".
  Ipv4Address next_ix_v4();
  Ipv6Address next_ix_v6();

  // Next LAN prefix of `pool` (/24 and /64). Throws Error(kInvalidArgument) "... pool
  // exhausted" when none is left.
  Ipv4Net next_lan_v4(LanPool pool);
  Ipv6Net next_lan_v6(LanPool pool);

  // NPTv6 outside prefixes come from a pool of their own (2001:db8:ff00::/48), so they can
  // never equal a LAN, the IX, or a prefix derived from some router's uplink address.
  static Ipv6Net nptv6_pool();
  // The lowest free /64 of the pool (2001:db8:ff00:1::/64 first). Throws Error(kInvalidArgument)
  // "NPTv6 prefix pool exhausted" when all 65535 are taken.
  Ipv6Net next_nptv6();
  // Gives a prefix from next_nptv6() back (a removed router's); unknown prefixes are ignored.
  void release_nptv6(const Ipv6Net& prefix);

 private:
  std::uint32_t ix_v4_next_ = 10;
  std::uint32_t ix_v6_next_ = 0x10;
  std::uint32_t public_v4_next_ = 0;   // index into the public /24 sequence
  std::uint32_t private_v4_next_ = 0;  // index into the private /24 sequence
  std::uint32_t carrier_v4_next_ = 0;
  std::uint32_t public_v6_next_ = 1;
  std::uint32_t private_v6_next_ = 1;
  // Unlike LAN prefixes, NPTv6 prefixes are reused: they appear only in routes and in the
  // translation, both of which go away with their router.
  std::uint32_t nptv6_next_ = 1;
  std::set<std::uint32_t> nptv6_free_;  // released, below nptv6_next_
};

// Hands out host addresses of one LAN: gateway = first host, then hosts from `first_offset`,
// skipping network and broadcast addresses; works for any prefix length up to /30.
class LanHosts {
 public:
  LanHosts(std::string lan_name, Ipv4Net v4, std::uint32_t first_offset = 2);
  LanHosts(std::string lan_name, Ipv6Net v6, std::uint32_t first_offset = 2);

  Ipv4Address gateway_v4() const;
  Ipv6Address gateway_v6() const;
  // Throws Error "switch '<name>' host pool exhausted" / "switch '<name>' v6 host pool
  // exhausted".
  Ipv4Address next_v4();
  Ipv6Address next_v6();

 private:
  std::string name_;
  Ipv4Net v4_{};
  Ipv6Net v6_{};
  std::uint64_t v4_next_ = 2;
  std::uint64_t v6_next_ = 2;
};

// SplitMix64 finaliser; mixes ids into well-distributed 64 bits.
std::uint64_t mix64(std::uint64_t x);

// fe80::/64 address derived from `a`, `b`, `c` (stable across runs for the same topology;
// universal/local bit set).
Ipv6Address deterministic_link_local(std::uint64_t a, std::uint64_t b = 0, std::uint64_t c = 0);

// Locally administered unicast MAC (02:..) derived from the node/interface id and a role byte.
std::array<std::uint8_t, 6> deterministic_mac(std::uint64_t id, std::uint8_t role);
std::string format_mac(const std::array<std::uint8_t, 6>& mac);

}  // namespace patchbay::internal
