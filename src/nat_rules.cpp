// NAT44 with RFC 4787 mapping and filtering, built from conntrack plus nftables dynamic maps.
//
// Conntrack alone only gives endpoint-independent mapping while a flow of the endpoint lives,
// and only address-and-port-dependent filtering. So the table keeps explicit state, updated from
// the packet path after NAT has chosen a port (ct reply tuple), never from the pre-NAT port:
//   out_map  internal endpoint [+ destination IP for ADM] -> external ip:port   (mapping reuse)
//   in_map   external port -> internal endpoint                  (new inbound flows, hairpin)
//   peers    (internal endpoint, destination IP) pairs           (address-dependent filtering)
// Elements live `udp_stream` (UDP) or `tcp_established` (TCP) after the last outbound packet.
//
// Chains:
//   prerouting  (nat)    inbound new flows to a mapped port are translated via in_map;
//   postrouting (nat)    reuse a mapping from out_map, else pick a port by the assignment policy;
//   record      (filter) after NAT: remember the chosen mapping in the three sets;
//   forward     (filter) the filtering behaviour for new flows from the uplink (and hairpin).
// A new inbound flow that the filter refuses is dropped before conntrack confirms it, so it
// leaves no state behind that could steal a port from a later outbound mapping.
#include <netinet/in.h>  // before the linux/ headers, which would define in_addr again

#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>

#include <functional>
#include <vector>

#include "router_rules.hpp"

namespace patchbay::internal {
namespace {

using Field = NftField;
using K = NftField::Kind;
using Reg = RuleBuilder::Reg;

// Ports handed out by sequential assignment: 1024..65535.
constexpr std::uint32_t kFirstSequentialPort = 1024;
constexpr std::uint32_t kSequentialPorts = 65536 - kFirstSequentialPort;

struct L4 {
  std::uint8_t proto;
  std::uint64_t lifetime_ms;  // of mapping state after the last outbound packet
};

}  // namespace

NftTableSpec plan_nat44(const RouterRules& rules) {
  NftTableSpec table{NFPROTO_IPV4, kNatTable};
  // No NAT, or no IPv4 uplink address to translate to.
  if (!rules.nat || !rules.wan_ipv4) return table;
  table.wanted = true;

  const NatConfig& nat = *rules.nat;
  const std::string wan = rules.wan_ifname;
  const std::string lan = rules.lan_ifname;
  const auto wan_bytes = rules.wan_ipv4->to_bytes();
  const std::vector<std::uint8_t> wan_ip(wan_bytes.begin(), wan_bytes.end());
  const bool eim = nat.mapping == NatMapping::EndpointIndependent;
  const bool adm = nat.mapping == NatMapping::AddressDependent;
  const bool eif = nat.filtering == NatFiltering::EndpointIndependent;
  const bool adf = nat.filtering == NatFiltering::AddressDependent;
  // Hairpinned flows are told apart by their LAN source address; without a LAN prefix there
  // is nothing to hairpin.
  const bool hairpin = nat.hairpin && rules.lan_v4.has_value();
  const std::vector<L4> l4s = {
      {IPPROTO_UDP, static_cast<std::uint64_t>(nat.timeouts.udp_stream.count()) * 1000},
      {IPPROTO_TCP, static_cast<std::uint64_t>(nat.timeouts.tcp_established.count()) * 1000}};

  using T = NftType;
  if (eim)
    table.sets.push_back({kNatOutMap,
                          {T::kInetProto, T::kIpv4Addr, T::kInetService},
                          {T::kIpv4Addr, T::kInetService}});
  if (adm) {
    table.sets.push_back({kNatOutMap,
                          {T::kInetProto, T::kIpv4Addr, T::kInetService, T::kIpv4Addr},
                          {T::kIpv4Addr, T::kInetService}});
  }
  table.sets.push_back(
      {kNatInMap, {T::kInetProto, T::kInetService}, {T::kIpv4Addr, T::kInetService}});
  if (adf) {
    table.sets.push_back(
        {kNatPeers, {T::kInetProto, T::kIpv4Addr, T::kInetService, T::kIpv4Addr}, {}});
  }

  // --- prerouting: new inbound flows to a mapped external port reach the internal endpoint.
  // This chain must exist even when empty: NAT reverse-translates replies only at hooks where a
  // NAT chain is registered.
  NftChainSpec pre{"prerouting", "nat", NF_INET_PRE_ROUTING, kPrioDstNat, {}};
  for (const L4& l4 : l4s) {
    pre.rules.push_back([=](RuleBuilder& r) {
      // With hairpinning, LAN hosts may address the mapping too; otherwise only the uplink.
      if (!hairpin) r.iifname(wan);
      r.daddr_in(wan_ip, 32)
          .l4proto(l4.proto)
          .load(Reg::kKey, {Field::of(K::kL4Proto), Field::of(K::kThDport)})
          .map_lookup(kNatInMap)
          .nat(/*source=*/false, Reg::kKey, /*with_port=*/true);
    });
  }

  // --- postrouting: which external port a new flow gets.
  NftChainSpec post{"postrouting", "nat", NF_INET_POST_ROUTING, kPrioSrcNat, {}};
  const std::uint32_t random_flags = NF_NAT_RANGE_PROTO_RANDOM;
  for (const L4& l4 : l4s) {
    // An existing mapping of this endpoint (EIM) or of this endpoint and destination IP (ADM).
    if (eim || adm) {
      post.rules.push_back([=](RuleBuilder& r) {
        r.oifname(wan).l4proto(l4.proto);
        if (eim) {
          r.load(Reg::kKey,
                 {Field::of(K::kL4Proto), Field::of(K::kIpSaddr), Field::of(K::kThSport)});
        } else {
          r.load(Reg::kKey, {Field::of(K::kL4Proto), Field::of(K::kIpSaddr), Field::of(K::kThSport),
                             Field::of(K::kIpDaddr)});
        }
        r.map_lookup(kNatOutMap).nat(/*source=*/true, Reg::kKey, /*with_port=*/true);
      });
    }
    // A new mapping.
    switch (nat.ports) {
      case PortAssignment::Preserve:
        // The kernel keeps the internal port when the 5-tuple is free. That alone would hand
        // one external port to several internal endpoints talking to different peers ("port
        // overloading", which RFC 4787 forbids) and give a second mapping of an endpoint its
        // first one's port: so a port that already is an external port gets a random one.
        post.rules.push_back([=](RuleBuilder& r) {
          r.oifname(wan)
              .l4proto(l4.proto)
              .in_set(kNatInMap, {Field::of(K::kL4Proto), Field::of(K::kThSport)})
              .masquerade(random_flags);
        });
        break;
      case PortAssignment::Sequential:
        post.rules.push_back([=](RuleBuilder& r) {
          r.oifname(wan)
              .l4proto(l4.proto)
              .load(Reg::kKey, {Field::constant(wan_ip)})
              .sequential_port(kSequentialPorts, kFirstSequentialPort)
              .nat(/*source=*/true, Reg::kKey, /*with_port=*/true);
        });
        break;
      case PortAssignment::Random:
        post.rules.push_back(
            [=](RuleBuilder& r) { r.oifname(wan).l4proto(l4.proto).masquerade(random_flags); });
        break;
    }
  }
  // Preserving ports, and every protocol without ports (ICMP uses its echo id).
  post.rules.push_back([=](RuleBuilder& r) { r.oifname(wan).masquerade(); });
  if (hairpin) {
    // A LAN host reaching another one through the public address must appear with its own
    // mapping, so the answer comes back through the router. Only flows from the LAN are
    // translated: unsolicited inbound flows keep their real source address. (Postrouting knows
    // no input interface, so the LAN source address tells hairpinned flows apart.)
    const auto lan_bytes = rules.lan_v4->address.to_bytes();
    const std::vector<std::uint8_t> lan_net(lan_bytes.begin(), lan_bytes.end());
    const unsigned lan_len = rules.lan_v4->prefix_len;
    for (const L4& l4 : l4s) {
      if (eim) {
        post.rules.push_back([=](RuleBuilder& r) {
          r.oifname(lan)
              .saddr_in(lan_net, lan_len)
              .ct_status(IPS_DST_NAT)
              .l4proto(l4.proto)
              .load(Reg::kKey,
                    {Field::of(K::kL4Proto), Field::of(K::kIpSaddr), Field::of(K::kThSport)})
              .map_lookup(kNatOutMap)
              .nat(/*source=*/true, Reg::kKey, /*with_port=*/true);
        });
      }
      post.rules.push_back([=](RuleBuilder& r) {
        r.oifname(lan)
            .saddr_in(lan_net, lan_len)
            .ct_status(IPS_DST_NAT)
            .l4proto(l4.proto)
            .load(Reg::kKey, {Field::constant(wan_ip)})
            .nat(/*source=*/true, Reg::kKey, /*with_port=*/false,
                 nat.ports == PortAssignment::Preserve ? 0 : random_flags);
      });
    }
  }

  // --- record: after NAT chose the external port, remember the mapping. Only flows the inside
  // opened: through the uplink, or hairpinned (which by now carry the public address as their
  // source). Inbound flows must not be recorded even when they are source-NATed: when an inbound
  // flow's reply tuple clashes with an existing flow, conntrack gives it a made-up source port
  // (a "null binding"), which would otherwise land in the maps as a mapping to an outside host.
  NftChainSpec record{"record", "filter", NF_INET_POST_ROUTING, kPrioSrcNat + 10, {}};
  std::vector<std::function<RuleBuilder&(RuleBuilder&)>> paths = {
      [wan](RuleBuilder& r) -> RuleBuilder& { return r.oifname(wan); }};
  if (hairpin) {
    paths.push_back([lan, wan_ip](RuleBuilder& r) -> RuleBuilder& {
      return r.oifname(lan).saddr_in(wan_ip, 32);
    });
  }
  for (const auto& path : paths) {
    for (const L4& l4 : l4s) {
      auto outbound = [=](RuleBuilder& r) -> RuleBuilder& {
        return path(r).ct_direction_original().ct_status(IPS_SRC_NAT).l4proto(l4.proto);
      };
      if (eim || adm) {
        record.rules.push_back([=](RuleBuilder& r) {
          outbound(r);
          if (eim) {
            r.load(Reg::kKey, {Field::of(K::kL4Proto), Field::of(K::kCtOrigSaddr),
                               Field::of(K::kCtOrigProtoSrc)});
          } else {
            r.load(Reg::kKey, {Field::of(K::kL4Proto), Field::of(K::kCtOrigSaddr),
                               Field::of(K::kCtOrigProtoSrc), Field::of(K::kCtOrigDaddr)});
          }
          r.load(Reg::kData, {Field::of(K::kCtReplyDaddr), Field::of(K::kCtReplyProtoDst)})
              .update_set(kNatOutMap, /*with_data=*/true, l4.lifetime_ms);
        });
      }
      record.rules.push_back([=](RuleBuilder& r) {
        outbound(r)
            .load(Reg::kKey, {Field::of(K::kL4Proto), Field::of(K::kCtReplyProtoDst)})
            .load(Reg::kData, {Field::of(K::kCtOrigSaddr), Field::of(K::kCtOrigProtoSrc)})
            .update_set(kNatInMap, /*with_data=*/true, l4.lifetime_ms);
      });
      if (adf) {
        record.rules.push_back([=](RuleBuilder& r) {
          outbound(r)
              .load(Reg::kKey, {Field::of(K::kL4Proto), Field::of(K::kCtOrigSaddr),
                                Field::of(K::kCtOrigProtoSrc), Field::of(K::kCtOrigDaddr)})
              .update_set(kNatPeers, /*with_data=*/false, l4.lifetime_ms);
        });
      }
    }
  }

  // --- forward: filtering of new flows that reached a mapping.
  NftChainSpec forward{"forward", "filter", NF_INET_FORWARD, kPrioFilter, {}};
  forward.rules.push_back([](RuleBuilder& r) { r.ct_state(kCtEstablished | kCtRelated).accept(); });
  auto filtering = [&](auto&& match) {
    if (eif) {
      forward.rules.push_back(
          [=](RuleBuilder& r) { match(r).ct_state(kCtNew).ct_status(IPS_DST_NAT).accept(); });
    } else if (adf) {
      forward.rules.push_back([=](RuleBuilder& r) {
        match(r)
            .ct_state(kCtNew)
            .ct_status(IPS_DST_NAT)
            .in_set(kNatPeers, {Field::of(K::kL4Proto), Field::of(K::kIpDaddr),
                                Field::of(K::kThDport), Field::of(K::kIpSaddr)})
            .accept();
      });
    }
    // Address-and-port-dependent: only the established flows accepted above.
    forward.rules.push_back([=](RuleBuilder& r) { match(r).drop(); });
  };
  filtering([wan](RuleBuilder& r) -> RuleBuilder& { return r.iifname(wan); });
  // Hairpinned flows are not filtered: like NAT loopback on real routers, a LAN host reaches any
  // mapping of its own NAT through the public address (and must, for upstream's pinned
  // behaviour). Filtering them would also lose state: a hairpinned datagram refused by the
  // receiver's filter is dropped before it could open the sender's own filter.

  table.chains = {std::move(pre), std::move(post), std::move(record), std::move(forward)};
  return table;
}

}  // namespace patchbay::internal
