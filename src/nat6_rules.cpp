// IPv6 translation on the uplink (table ip6 pb_nat6): NPTv6 prefix translation or NAT66.
//
//   NPTv6       prerouting  iifname <wan> ip6 daddr <external>/64 dnat ip6 prefix to <lan>/64
//               postrouting oifname <wan> ip6 saddr <lan>/64 snat ip6 prefix to <external>/64
//   masquerade  prerouting  (empty)
//               postrouting oifname <wan> masquerade
//
// The prefix rules use the kernel's NETMAP mapping: the prefix bits are replaced and the host
// bits kept, and conntrack fixes the L4 checksums (not RFC 6296's checksum-neutral variant,
// see docs/ipv6-nat.md). Both match on the prefix: an unrestricted prefix mapping would also
// rewrite neighbour discovery of the router's own addresses and cut it off its uplink.
#include <netinet/in.h>  // before the linux/ headers, which would define in_addr again

#include <linux/netfilter.h>

#include <algorithm>
#include <string>
#include <vector>

#include "patchbay/error.hpp"
#include "router_rules.hpp"

namespace patchbay::internal {
namespace {

using Reg = RuleBuilder::Reg;

std::vector<std::uint8_t> bytes_of(const Ipv6Address& a) {
  const auto b = a.to_bytes();
  return {b.begin(), b.end()};
}

// The first and last address of `net`, as NETMAP wants them in its min/max registers.
std::vector<std::uint8_t> first_of(const Ipv6Net& net) {
  std::vector<std::uint8_t> out = bytes_of(net.address);
  for (unsigned i = 0; i < 16; ++i) {
    const unsigned keep = net.prefix_len > 8 * i ? std::min(8u, net.prefix_len - 8 * i) : 0u;
    out[i] &= static_cast<std::uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
  }
  return out;
}

std::vector<std::uint8_t> last_of(const Ipv6Net& net) {
  std::vector<std::uint8_t> out = first_of(net);
  for (unsigned i = 0; i < 16; ++i) {
    const unsigned keep = net.prefix_len > 8 * i ? std::min(8u, net.prefix_len - 8 * i) : 0u;
    out[i] |= static_cast<std::uint8_t>(keep >= 8 ? 0 : 0xff >> keep);
  }
  return out;
}

}  // namespace

NftTableSpec plan_nat66(const RouterRules& rules) {
  NftTableSpec table{NFPROTO_IPV6, kNat6Table};
  const Nat6Rules& nat6 = rules.nat6;
  if (nat6.mode == NatV6Mode::None) return table;
  // LabCore refuses these earlier with the router's name and the reason; a plan without them
  // would silently translate nothing.
  if (!nat6.lan) {
    throw Error(
        ErrorKind::kInvalidArgument, "",
        std::string("nat_v6 ") + std::string(to_string(nat6.mode)) + " needs a LAN IPv6 prefix");
  }
  if (nat6.mode == NatV6Mode::Nptv6 && !nat6.external) {
    throw Error(ErrorKind::kInvalidArgument, "", "nat_v6 nptv6 needs an external prefix");
  }
  table.wanted = true;
  const std::string wan = rules.wan_ifname;

  // Registered even when empty: NAT undoes a translation for the reply direction only at hooks
  // where a NAT chain exists.
  NftChainSpec pre{"prerouting", "nat", NF_INET_PRE_ROUTING, kPrioDstNat, {}};
  NftChainSpec post{"postrouting", "nat", NF_INET_POST_ROUTING, kPrioSrcNat, {}};

  if (nat6.mode == NatV6Mode::Nptv6) {
    const Ipv6Net lan = *nat6.lan;
    const Ipv6Net ext = *nat6.external;
    pre.rules.push_back([=](RuleBuilder& r) {
      r.iifname(wan)
          .daddr_in(first_of(ext), ext.prefix_len)
          .load(Reg::kKey, {NftField::constant(first_of(lan))})
          .load(Reg::kData, {NftField::constant(last_of(lan))})
          .nat_prefix(/*source=*/false);
    });
    post.rules.push_back([=](RuleBuilder& r) {
      r.oifname(wan)
          .saddr_in(first_of(lan), lan.prefix_len)
          .load(Reg::kKey, {NftField::constant(first_of(ext))})
          .load(Reg::kData, {NftField::constant(last_of(ext))})
          .nat_prefix(/*source=*/true);
    });
  } else {
    post.rules.push_back([=](RuleBuilder& r) { r.oifname(wan).masquerade(); });
  }
  table.chains = {std::move(pre), std::move(post)};
  return table;
}

}  // namespace patchbay::internal
