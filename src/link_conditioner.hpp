// LinkConditioner: puts the LinkConditions of a lab's links into effect with the lab's backend.
//
//   LinkConditioner conditioner(LinkBackend::Auto, /*seed=*/42, root_netns_fd);
//   LinkEnds ends{.key = "v7", .label = "device 'laptop' interface 'eth0'", .seed_key = 7, ...};
//   conditioner.apply(ends, /*before=*/{}, LinkPreset::Wifi);  // both directions Wi-Fi
//   conditioner.apply(ends, LinkPreset::Wifi, {});             // cleared
//   conditioner.forget(ends);  // before the link's node goes away
//
// Every lab link is a veth pair: the node's end (in the node) and the outer end, a port of a
// bridge in the namespace above (a router's LAN bridge, or the IX bridge in the lab root).
//
// Kernel backend: netem/tbf qdiscs (qdisc_netem.hpp); egress on the node's end, ingress on the
// outer end, so each direction is shaped where it leaves.
//
// Userspace backend: the outer end leaves its bridge and the lab's FramePump joins it to a
// fresh veth pair whose other end takes its place on the bridge:
//
//     node end ══ outer end ─[AF_PACKET]─ pump ─[AF_PACKET]─ <outer>e ══ <outer>s ─ bridge
//
// The node end is never touched: same interface, addresses and carrier, so code in the node
// sees nothing but the impairment. The splice's own interfaces get IPv6 off and arp_ignore=8,
// so the namespace's stack never answers for frames that only pass through; the sockets are
// open before the outer end leaves the bridge, so no frame is lost while splicing. Clearing
// the condition undoes the splice (the veth path is the fastest one). The pump thread starts
// with the lab's first emulated link.
//
// All calls run on the lab's control thread (they hop namespaces).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "frame_pump.hpp"
#include "patchbay/link_condition.hpp"

namespace patchbay::internal {

class NftSocket;
class RouteSocket;

// One link of the lab, as the conditioner needs to see it.
struct LinkEnds {
  std::string key;             // unique within the lab while the link exists (the outer end's name)
  std::string label;           // for messages: "device 'laptop' interface 'eth0'"
  std::uint64_t seed_key = 0;  // stable across runs of the same test (the link's creation index)
  RouteSocket* node_rtnl = nullptr;
  std::string node_ifname;
  int outer_netns = -1;
  RouteSocket* outer_rtnl = nullptr;
  std::string outer_ifname;
  std::string bridge_name;
  int mtu = 1500;
};

// A router's downlink: everything the router's own stack sends into its LAN bridge (routed
// traffic for all devices and sub-routers of the LAN, and the router's own packets). Frames
// bridged between LAN ports do not take it.
//
// Kernel backend: netem/tbf on the bridge device. Userspace backend: an AF_PACKET socket on the
// bridge device takes the stack's output, table bridge pb_downlink (downlink_rules.hpp) drops
// the original at the bridge's output hook, and the pump writes the frame into a port of its own:
//
//     stack ─ bridge ─[AF_PACKET, output only]─ pump ─ dl-p ══ dl-s ─ bridge ─ ports
struct DownlinkEnds {
  std::string key;    // unique within the lab: "downlink@<router id>"
  std::string label;  // "router 'home' downlink"
  std::uint64_t seed_key = 0;
  int netns = -1;  // the router's namespace
  RouteSocket* rtnl = nullptr;
  NftSocket* nft = nullptr;
  std::string bridge_name;
  int mtu = 1500;
};

// LinkLimits as the emulator's per-packet model takes them.
LinkModelParams model_params(const std::optional<LinkCondition>& condition);

class LinkConditioner {
 public:
  LinkConditioner(LinkBackend requested, std::uint64_t seed, int root_netns);
  ~LinkConditioner();
  LinkConditioner(const LinkConditioner&) = delete;
  LinkConditioner& operator=(const LinkConditioner&) = delete;

  // Kernel or Userspace; resolving Auto probes the kernel (once per process).
  LinkBackend backend();
  std::uint64_t seed() const { return seed_; }
  // The backend once backend() resolved it, else nullopt (readable from any thread).
  std::optional<LinkBackend> resolved_backend() const {
    const int b = resolved_code_.load();
    return b < 0 ? std::nullopt : std::optional(static_cast<LinkBackend>(b));
  }

  // Replaces the link's conditions `before` (what is in effect now) with `after`. On failure
  // the link keeps `before` and Error says why, naming the link.
  void apply(const LinkEnds& link, const LinkConditions& before, const LinkConditions& after);
  // Drops whatever the conditioner holds for the link; for a link whose node is going away.
  // Never throws.
  void forget(const LinkEnds& link) noexcept;

  // The same for a router's downlink (one direction: into the LAN).
  void apply_downlink(const DownlinkEnds& downlink, const std::optional<LinkCondition>& before,
                      const std::optional<LinkCondition>& after);
  void forget_downlink(const DownlinkEnds& downlink) noexcept;

  // Emulator counters of a spliced link or downlink (nullopt if it is not emulated).
  std::optional<FramePump::LinkStats> emulator_stats(const std::string& key);
  // Whether the emulator thread runs (for thread accounting; readable from any thread).
  bool emulator_running() const { return pump_started_.load(); }

 private:
  struct Splice {
    FramePump::LinkId pump_link = 0;
    std::string pump_end;    // <outer>e, read by the pump
    std::string bridge_end;  // <outer>s, on the bridge
  };
  static constexpr const char* kDownlinkPumpEnd = "dl-p";
  static constexpr const char* kDownlinkBridgeEnd = "dl-s";

  void apply_kernel(const LinkEnds& link, const LinkConditions& before,
                    const LinkConditions& after);
  void apply_userspace(const LinkEnds& link, const LinkConditions& after);
  Splice splice(const LinkEnds& link, const LinkConditions& conditions);
  void unsplice(const LinkEnds& link, const Splice& s);
  Splice splice_downlink(const DownlinkEnds& downlink, const LinkCondition& condition);
  void unsplice_downlink(const DownlinkEnds& downlink, const Splice& s);
  void ensure_pump();

  LinkBackend requested_;
  std::optional<LinkBackend> resolved_;
  std::uint64_t seed_;
  int root_netns_;
  std::unique_ptr<FramePump> pump_;
  std::atomic<bool> pump_started_{false};
  std::atomic<int> resolved_code_{-1};
  std::map<std::string, Splice> spliced_;
};

}  // namespace patchbay::internal
