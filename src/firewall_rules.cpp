// The router firewall (table inet pb_fw, both IP families) from a FirewallConfig.
//
// Hooked on forward at priority 10, after the NAT table's filtering (priority 0), so a packet
// must pass both. Order inside the chain is the documented semantics of FirewallConfig:
// established/related, explicit rules in order, block_inbound, outbound port policies.
#include <netinet/in.h>  // before the linux/ headers, which would define in_addr again

#include <linux/netfilter.h>

#include <optional>
#include <vector>

#include "patchbay/addresses.hpp"
#include "router_rules.hpp"

namespace patchbay::internal {
namespace {

struct Cidr {
  std::vector<std::uint8_t> bytes;
  unsigned prefix_len;
};

// "198.18.0.0/16", "2001:db8::/32", "10.0.0.1" (a host). The config was validated.
Cidr parse_cidr(const std::string& text) {
  const bool v6 = text.find(':') != std::string::npos;
  const std::string with_len =
      text.find('/') == std::string::npos ? text + (v6 ? "/128" : "/32") : text;
  if (v6) {
    const Ipv6Net net = parse_ipv6_net(with_len);
    const auto b = net.address.to_bytes();
    return {{b.begin(), b.end()}, net.prefix_len};
  }
  const Ipv4Net net = parse_ipv4_net(with_len);
  const auto b = net.address.to_bytes();
  return {{b.begin(), b.end()}, net.prefix_len};
}

// The L4 protocol numbers a rule's Protocol stands for, paired with the IP family they need
// (NFPROTO_UNSPEC: any family).
std::vector<std::pair<std::uint8_t, std::uint8_t>> protocols(Protocol p) {
  switch (p) {
    case Protocol::Any:
      return {{0, NFPROTO_UNSPEC}};
    case Protocol::Tcp:
      return {{IPPROTO_TCP, NFPROTO_UNSPEC}};
    case Protocol::Udp:
      return {{IPPROTO_UDP, NFPROTO_UNSPEC}};
    case Protocol::Icmp:
      return {{IPPROTO_ICMP, NFPROTO_IPV4}, {IPPROTO_ICMPV6, NFPROTO_IPV6}};
  }
  return {};
}

void add_entry(NftChainSpec& chain, const RouterRules& rules, const FirewallConfig::Entry& e) {
  const FirewallRule& rule = e.rule;
  const bool inbound = rule.direction == FlowDirection::Inbound;
  const std::string iif = inbound ? rules.wan_ifname : rules.lan_ifname;
  const bool accept = e.verdict == FirewallConfig::Verdict::Allow;
  std::vector<std::optional<Cidr>> remotes;
  for (const std::string& r : rule.remotes) remotes.emplace_back(parse_cidr(r));
  if (remotes.empty()) remotes.emplace_back(std::nullopt);
  std::vector<std::optional<PortRange>> ports(rule.ports.begin(), rule.ports.end());
  if (ports.empty()) ports.emplace_back(std::nullopt);

  for (const auto& [proto, family] : protocols(rule.protocol)) {
    for (const auto& remote : remotes) {
      // ICMP of the other family than the address cannot match; skip instead of emitting a
      // rule that never fires.
      if (remote && family != NFPROTO_UNSPEC &&
          (remote->bytes.size() == 16) != (family == NFPROTO_IPV6)) {
        continue;
      }
      for (const auto& range : ports) {
        chain.rules.push_back([=](RuleBuilder& r) {
          r.iifname(iif).ct_state(kCtNew);
          if (family != NFPROTO_UNSPEC && !remote) r.nfproto(family);
          if (remote) {
            if (inbound) {
              r.saddr_in(remote->bytes, remote->prefix_len);
            } else {
              r.daddr_in(remote->bytes, remote->prefix_len);
            }
          }
          if (proto != 0) r.l4proto(proto);
          if (range) r.dport_range(range->first, range->last);
          if (accept) {
            r.accept();
          } else {
            r.drop();
          }
        });
      }
    }
  }
}

void add_policy(NftChainSpec& chain, const std::string& lan, std::uint8_t proto,
                const PortPolicy& policy) {
  if (policy.kind() == PortPolicy::Kind::AllowAll) return;
  for (std::uint16_t port : policy.ports()) {
    chain.rules.push_back([=](RuleBuilder& r) {
      r.iifname(lan).ct_state(kCtNew).l4proto(proto).dport_range(port, port).accept();
    });
  }
  chain.rules.push_back(
      [=](RuleBuilder& r) { r.iifname(lan).ct_state(kCtNew).l4proto(proto).drop(); });
}

}  // namespace

NftTableSpec plan_firewall(const RouterRules& rules) {
  NftTableSpec table{NFPROTO_INET, kFirewallTable};
  if (!rules.firewall) return table;
  const FirewallConfig& fw = *rules.firewall;
  // Configs built without the builder get the builder's checks here, before anything reaches
  // the kernel.
  fw.validate();
  if (!fw.block_inbound && fw.rules.empty() &&
      fw.outbound_tcp.kind() == PortPolicy::Kind::AllowAll &&
      fw.outbound_udp.kind() == PortPolicy::Kind::AllowAll) {
    return table;  // lets everything through: no table at all, no per-packet cost
  }
  table.wanted = true;
  NftChainSpec forward{"forward", "filter", NF_INET_FORWARD, kPrioFilter + 10, {}};
  forward.rules.push_back([](RuleBuilder& r) { r.ct_state(kCtEstablished | kCtRelated).accept(); });
  for (const FirewallConfig::Entry& e : fw.rules) add_entry(forward, rules, e);
  if (fw.block_inbound) {
    const std::string wan = rules.wan_ifname;
    forward.rules.push_back([=](RuleBuilder& r) { r.iifname(wan).drop(); });
  }
  // Port policies only concern flows opened from the LAN (upstream applied them to inbound
  // flows too, despite their name).
  add_policy(forward, rules.lan_ifname, IPPROTO_TCP, fw.outbound_tcp);
  add_policy(forward, rules.lan_ifname, IPPROTO_UDP, fw.outbound_udp);
  table.chains.push_back(std::move(forward));
  return table;
}

}  // namespace patchbay::internal
