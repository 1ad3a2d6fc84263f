// The PMTU black hole (table inet pb_pmtu): a router that drops the ICMP errors path-MTU
// discovery depends on, as misconfigured firewalls do.
//
//   forward  meta nfproto ipv4 meta l4proto icmp   icmp type 3 code 4 (frag needed)  drop
//            meta nfproto ipv6 meta l4proto icmpv6 icmpv6 type 2 code 0 (too big)    drop
//
// Only forwarded errors are dropped: the ones the router sends itself (for its own links'
// MTUs) still go out, so the hole is between the router's neighbours, as in the wild. A table of
// its own, so NAT and firewall changes (which replace their tables) never take it along.
#include <netinet/in.h>  // before the linux/ headers, which would define in_addr again

#include <linux/netfilter.h>

#include "router_rules.hpp"

namespace patchbay::internal {

NftTableSpec plan_pmtu(const RouterRules& rules) {
  NftTableSpec table{NFPROTO_INET, kPmtuTable};
  if (!rules.block_icmp_frag_needed) return table;
  table.wanted = true;
  NftChainSpec forward{"forward", "filter", NF_INET_FORWARD, kPrioFilter, {}};
  forward.rules.push_back([](RuleBuilder& r) {
    r.nfproto(NFPROTO_IPV4).l4proto(IPPROTO_ICMP).icmp_type_code(3, 4).drop();
  });
  forward.rules.push_back([](RuleBuilder& r) {
    r.nfproto(NFPROTO_IPV6).l4proto(IPPROTO_ICMPV6).icmp_type_code(2, 0).drop();
  });
  table.chains.push_back(std::move(forward));
  return table;
}

}  // namespace patchbay::internal
