#include "link_conditioner.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <utility>

#include "downlink_rules.hpp"
#include "netns.hpp"
#include "nft_ruleset.hpp"
#include "patchbay/error.hpp"
#include "qdisc_netem.hpp"
#include "route_socket.hpp"
#include "sysctl.hpp"

namespace patchbay::internal {
namespace {

void apply_qdisc(RouteSocket& rs, const std::string& ifname,
                 const std::optional<LinkCondition>& condition, int mtu) {
  const int ifindex = rs.link_index(ifname);
  if (!condition || condition->limits().is_empty()) {
    clear_netem(rs.raw(), ifindex, rs.node());
  } else {
    apply_link_condition(rs.raw(), ifindex, NetemParams{condition->limits(), mtu}, rs.node());
  }
}

// Keeps the namespace's own stack out of an interface that only carries frames for the pump:
// no IPv6 (no link-local, router solicitations or MLD of its own) and no ARP replies for the
// namespace's addresses (arp_ignore 8), so only the emulated path answers the node.
void make_silent(const std::string& ifname, const std::string& node) {
  write_sysctl("net/ipv6/conf/" + ifname + "/disable_ipv6", "1", node);
  write_sysctl("net/ipv4/conf/" + ifname + "/arp_ignore", "8", node);
}

}  // namespace

LinkModelParams model_params(const std::optional<LinkCondition>& condition) {
  LinkModelParams p;
  if (!condition) return p;
  const LinkLimits& l = condition->limits();
  p.latency = std::chrono::milliseconds(l.latency_ms);
  p.jitter = std::chrono::milliseconds(l.jitter_ms);
  p.loss_pct = l.loss_pct;
  p.duplicate_pct = l.duplicate_pct;
  p.corrupt_pct = l.corrupt_pct;
  p.reorder_pct = l.reorder_pct;
  p.rate_bps = std::uint64_t{l.rate_kbit} * 1000;
  return p;
}

LinkConditioner::LinkConditioner(LinkBackend requested, std::uint64_t seed, int root_netns)
    : requested_(requested), seed_(seed), root_netns_(root_netns) {}

LinkConditioner::~LinkConditioner() {
  // The pump closes every spliced link's sockets; the interfaces go with their namespaces.
  pump_.reset();
  pump_started_ = false;
}

LinkBackend LinkConditioner::backend() {
  if (!resolved_) {
    if (requested_ == LinkBackend::Auto) {
      resolved_ = kernel_has_netem() ? LinkBackend::Kernel : LinkBackend::Userspace;
    } else {
      resolved_ = requested_;
    }
    resolved_code_ = static_cast<int>(*resolved_);
  }
  return *resolved_;
}

void LinkConditioner::apply(const LinkEnds& link, const LinkConditions& before,
                            const LinkConditions& after) {
  for (const auto* c : {&after.egress, &after.ingress}) {
    if (*c) c->value().limits().validate();
  }
  if (backend() == LinkBackend::Kernel) {
    apply_kernel(link, before, after);
  } else {
    apply_userspace(link, after);
  }
}

void LinkConditioner::apply_kernel(const LinkEnds& link, const LinkConditions& before,
                                   const LinkConditions& after) {
  try {
    apply_qdisc(*link.node_rtnl, link.node_ifname, after.egress, link.mtu);
  } catch (const Error& e) {
    throw Error(e.kind(), link.label, link.label + ": egress: " + e.what(), e.sys_errno());
  }
  try {
    apply_qdisc(*link.outer_rtnl, link.outer_ifname, after.ingress, link.mtu);
  } catch (const Error& e) {
    try {
      apply_qdisc(*link.node_rtnl, link.node_ifname, before.egress, link.mtu);
    } catch (...) {
      // The original error matters more; the egress side is reported in state as `after`.
    }
    throw Error(e.kind(), link.label, link.label + ": ingress: " + e.what(), e.sys_errno());
  }
}

void LinkConditioner::apply_userspace(const LinkEnds& link, const LinkConditions& after) {
  auto it = spliced_.find(link.key);
  const bool wanted = !after.empty();
  if (!wanted) {
    if (it != spliced_.end()) {
      Splice s = it->second;
      spliced_.erase(it);
      unsplice(link, s);
    }
    return;
  }
  if (it != spliced_.end()) {
    pump_->set_params(it->second.pump_link, model_params(after.egress),
                      model_params(after.ingress));
    return;
  }
  spliced_.emplace(link.key, splice(link, after));
}

LinkConditioner::Splice LinkConditioner::splice(const LinkEnds& link,
                                                const LinkConditions& conditions) {
  RouteSocket& rs = *link.outer_rtnl;
  Splice s;
  s.pump_end = link.outer_ifname + "e";
  s.bridge_end = link.outer_ifname + "s";
  const int bridge = rs.link_index(link.bridge_name);
  const int outer = rs.link_index(link.outer_ifname);
  bool created = false;
  bool released = false;
  try {
    // Both down at first: their sysctls must be set before IPv6 configures them.
    rs.add_veth(VethEnd{s.bridge_end, -1, std::nullopt, false, 0, link.mtu},
                VethEnd{s.pump_end, -1, std::nullopt, false, 0, link.mtu});
    created = true;
    const int pump_end = rs.link_index(s.pump_end);
    const int bridge_end = rs.link_index(s.bridge_end);
    UniqueFd node_side;
    UniqueFd bridge_side;
    {
      ReturnToRoot home(root_netns_);
      enter_netns(link.outer_netns, rs.node());
      make_silent(s.pump_end, rs.node());
      make_silent(s.bridge_end, rs.node());
      make_silent(link.outer_ifname, rs.node());
      // Opened before the outer end leaves the bridge: from here on its frames queue in the
      // socket, so none is lost while the splice completes.
      node_side = open_packet_socket(outer, link.label);
      bridge_side = open_packet_socket(pump_end, link.label);
    }
    rs.set_link_up(pump_end, true);
    rs.set_master(bridge_end, bridge);
    rs.set_link_up(bridge_end, true);
    rs.wait_until_oper_up(s.pump_end);
    rs.wait_until_oper_up(s.bridge_end);
    rs.set_master(outer, 0);
    released = true;
    ensure_pump();
    s.pump_link = pump_->add_link(std::move(node_side), std::move(bridge_side),
                                  model_params(conditions.egress), model_params(conditions.ingress),
                                  derive_seed(seed_, link.seed_key, 0));
  } catch (...) {
    try {
      if (released) rs.set_master(outer, bridge);
      if (created) rs.delete_link(rs.link_index(s.pump_end));
    } catch (...) {
      // Reported below through the original error; the node's namespace still goes away
      // cleanly with its lab.
    }
    throw;
  }
  return s;
}

void LinkConditioner::unsplice(const LinkEnds& link, const Splice& s) {
  // Frames the emulator still holds are dropped, as a cable swap would.
  pump_->remove_link(s.pump_link);
  RouteSocket& rs = *link.outer_rtnl;
  rs.set_master(rs.link_index(link.outer_ifname), rs.link_index(link.bridge_name));
  rs.delete_link(rs.link_index(s.pump_end));
}

void LinkConditioner::forget(const LinkEnds& link) noexcept {
  auto it = spliced_.find(link.key);
  if (it == spliced_.end()) return;
  Splice s = it->second;
  spliced_.erase(it);
  try {
    pump_->remove_link(s.pump_link);
    link.outer_rtnl->delete_link(link.outer_rtnl->link_index(s.pump_end));
  } catch (const std::exception&) {
    // The outer namespace may already be on its way out with the whole lab.
  }
}

void LinkConditioner::ensure_pump() {
  if (pump_) return;
  pump_ = std::make_unique<FramePump>();
  pump_started_ = true;
}

void LinkConditioner::apply_downlink(const DownlinkEnds& downlink,
                                     const std::optional<LinkCondition>& before,
                                     const std::optional<LinkCondition>& after) {
  if (after) after->limits().validate();
  const bool wanted = after && !after->limits().is_empty();
  if (backend() == LinkBackend::Kernel) {
    try {
      apply_qdisc(*downlink.rtnl, downlink.bridge_name, wanted ? after : std::nullopt,
                  downlink.mtu);
    } catch (const Error& e) {
      throw Error(e.kind(), downlink.label, downlink.label + ": " + e.what(), e.sys_errno());
    }
    return;
  }
  (void)before;  // the emulator replaces its parameters as a whole
  auto it = spliced_.find(downlink.key);
  if (!wanted) {
    if (it != spliced_.end()) {
      Splice s = it->second;
      spliced_.erase(it);
      unsplice_downlink(downlink, s);
    }
    return;
  }
  if (it != spliced_.end()) {
    pump_->set_params(it->second.pump_link, model_params(after), LinkModelParams{});
    return;
  }
  spliced_.emplace(downlink.key, splice_downlink(downlink, *after));
}

LinkConditioner::Splice LinkConditioner::splice_downlink(const DownlinkEnds& downlink,
                                                         const LinkCondition& condition) {
  RouteSocket& rs = *downlink.rtnl;
  Splice s;
  s.pump_end = kDownlinkPumpEnd;
  s.bridge_end = kDownlinkBridgeEnd;
  const int bridge = rs.link_index(downlink.bridge_name);
  bool created = false;
  bool pumped = false;
  try {
    rs.add_veth(VethEnd{s.bridge_end, -1, std::nullopt, false, 0, downlink.mtu},
                VethEnd{s.pump_end, -1, std::nullopt, false, 0, downlink.mtu});
    created = true;
    const int pump_end = rs.link_index(s.pump_end);
    const int bridge_end = rs.link_index(s.bridge_end);
    UniqueFd stack_side;
    UniqueFd lan_side;
    {
      ReturnToRoot home(root_netns_);
      enter_netns(downlink.netns, rs.node());
      make_silent(s.pump_end, rs.node());
      make_silent(s.bridge_end, rs.node());
      stack_side = open_packet_socket(bridge, downlink.label, PacketCapture::kSent);
      lan_side = open_packet_socket(pump_end, downlink.label, PacketCapture::kNothing);
    }
    rs.set_link_up(pump_end, true);
    rs.set_master(bridge_end, bridge);
    // The frames it brings in carry the bridge's own MAC as their source; learning would only
    // make the kernel log "received packet with own address as source address" for each.
    rs.set_bridge_port_learning(bridge_end, false);
    rs.set_link_up(bridge_end, true);
    rs.wait_until_oper_up(s.pump_end);
    rs.wait_until_oper_up(s.bridge_end);
    ensure_pump();
    s.pump_link =
        pump_->add_link(std::move(stack_side), std::move(lan_side), model_params(condition),
                        LinkModelParams{}, derive_seed(seed_, downlink.seed_key, 1));
    pumped = true;
    // From here the pump carries the router's LAN output. Frames the stack sent in the few
    // microseconds between the socket's bind and this batch went both ways (a duplicate at
    // most, never a loss).
    downlink.nft->apply_table(plan_downlink_divert(true));
  } catch (...) {
    try {
      if (pumped) pump_->remove_link(s.pump_link);
      if (created) rs.delete_link(rs.link_index(s.pump_end));
    } catch (...) {
      // Reported through the original error; the router's namespace goes away with its lab.
    }
    throw;
  }
  return s;
}

void LinkConditioner::unsplice_downlink(const DownlinkEnds& downlink, const Splice& s) {
  // The direct path first, so the router's output is never dropped with nobody carrying it.
  downlink.nft->apply_table(plan_downlink_divert(false));
  pump_->remove_link(s.pump_link);
  downlink.rtnl->delete_link(downlink.rtnl->link_index(s.pump_end));
}

void LinkConditioner::forget_downlink(const DownlinkEnds& downlink) noexcept {
  auto it = spliced_.find(downlink.key);
  if (it == spliced_.end()) return;
  Splice s = it->second;
  spliced_.erase(it);
  try {
    pump_->remove_link(s.pump_link);
  } catch (const std::exception&) {
    // The router's namespace, with the splice's interfaces and table, goes away with it.
  }
}

std::optional<FramePump::LinkStats> LinkConditioner::emulator_stats(const std::string& key) {
  auto it = spliced_.find(key);
  if (it == spliced_.end() || !pump_) return std::nullopt;
  return pump_->stats(it->second.pump_link);
}

}  // namespace patchbay::internal
