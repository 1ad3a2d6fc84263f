// LabCore: the state and kernel orchestration behind patchbay::Lab and its node handles.
//
// Threading: all kernel work (namespaces, netlink, nftables, sysctls) runs on the lab's
// control thread — the only thread that ever hops between namespaces. `mu_` guards the records;
// node handles read them from any thread. User code never runs under `mu_` (a callback may
// call back into the lab).
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "address_plan.hpp"
#include "event_log.hpp"
#include "link_capture.hpp"
#include "link_conditioner.hpp"
#include "nft_ruleset.hpp"
#include "node_log.hpp"
#include "node_runtime.hpp"
#include "patchbay/lab.hpp"
#include "pid_namespace.hpp"
#include "route_socket.hpp"
#include "unique_fd.hpp"
#include "worker_thread.hpp"

namespace patchbay::internal {

struct DeviceIfaceRecord {
  std::string name;
  NodeId index = 0;         // from the lab's id counter: names the router port v<index>
  NodeId router = 0;        // gateway router
  std::string router_port;  // "v<index>" inside the router
  std::optional<Ipv4Net> v4;
  std::optional<Ipv6Net> v6;
  Ipv6Address ll6;
  MacAddress mac{};
  bool up = true;
  LinkConditions condition{};
};

struct RouterData {
  Nat nat = Nat::None;
  std::optional<NatConfig> nat_config;  // the behaviour of `nat`; nullopt for Nat::None
  NatV6Mode nat_v6 = NatV6Mode::None;
  Firewall firewall = Firewall::None;
  std::optional<FirewallConfig> firewall_config;  // nullopt for Firewall::None
  bool block_icmp_frag_needed = false;
  IpSupport ip_support = IpSupport::V4Only;
  LanPool pool = LanPool::Public;
  std::optional<NodeId> upstream;
  std::optional<std::string> region;  // the nearest region above (or of) this router
  std::optional<int> mtu;
  std::string wan_name;     // "ix" or "wan"
  std::string parent_port;  // "i<id>" in the lab root or "h<id>" in the upstream router
  LinkConditions uplink_condition{};
  std::optional<LinkCondition> downlink_condition{};
  std::optional<Ipv4Net> wan_v4;
  std::optional<Ipv6Net> wan_v6;
  Ipv6Address wan_ll6;
  MacAddress wan_mac{};
  std::optional<Ipv4Net> lan_v4;  // network prefix
  std::optional<Ipv6Net> lan_v6;
  // Outside prefix of NPTv6, from the lab's NPTv6 pool: allocated when the router first uses
  // NPTv6 and kept (stable across mode changes) until the router is removed.
  std::optional<Ipv6Net> nptv6_prefix;
  std::optional<LanHosts> hosts_v4;
  std::optional<LanHosts> hosts_v6;
  Ipv6Address lan_ll6;
  MacAddress lan_mac{};
  int lan_ifindex = 0;
  // Routes this router's build installed in ancestor namespaces (removed with the router).
  struct ForeignRoute {
    NodeId ns_owner;  // kIxId for the lab root
    IpPrefix dst;
    boost::asio::ip::address via;
  };
  std::vector<ForeignRoute> return_routes;
};

struct DeviceData {
  std::vector<DeviceIfaceRecord> ifaces;
  std::string default_iface;
  std::optional<int> mtu;
};

struct NodeRecord {
  NodeId id = 0;
  std::string name;
  NodeKind kind = NodeKind::Device;
  UniqueFd netns;
  std::unique_ptr<RouteSocket> rtnl;
  std::unique_ptr<NftSocket> nft;  // routers only
  std::shared_ptr<NodeRuntime> runtime;
  // The node's loggers (node_log.hpp): the user's (target = the node's name) and the library's
  // (target "patchbay"), both writing the node's tracing files.
  std::shared_ptr<spdlog::logger> user_log;
  std::shared_ptr<spdlog::logger> lib_log;
  std::optional<RouterData> router;
  std::optional<DeviceData> device;
  ino_t netns_inode = 0;
  bool removing = false;  // remove_node() is tearing it down: nothing may attach to it any more
};

inline constexpr NodeId kIxId = 1;

class LabCore : public std::enable_shared_from_this<LabCore> {
 public:
  explicit LabCore(LabOptions options);
  ~LabCore();  // close()

  // Tears everything down now: processes, threads, namespaces, the temporary directory.
  // Idempotent. Afterwards every node is dead and every operation throws Error(kRemoved). Must
  // not be called from one of the lab's own threads (see called_from_lab_thread()).
  void close() {
    if (mark_closed()) teardown();
  }
  // The two halves of close(): mark_closed() makes every node dead at once (false if it already
  // was); teardown() frees everything and may run later, on another thread.
  bool mark_closed();
  void teardown();
  // True on the control thread or any thread of a node (code running inside the lab).
  bool called_from_lab_thread() const;

  // `region_router`: the router of a region being added (its reserved name is allowed).
  Router build_router(const RouterBuilder::Spec& spec, bool region_router = false);
  Device build_device(const DeviceBuilder::Spec& spec);
  void remove_node(NodeId id, NodeKind kind);

  std::optional<NodeId> find(const std::string& name, NodeKind kind) const;
  std::vector<std::pair<NodeId, std::string>> list(NodeKind kind) const;
  std::string node_name(NodeId id) const;

  // Accessors used by handles; all throw Error(kRemoved) for unknown ids.
  RouterData router_data(NodeId id) const;
  DeviceData device_data(NodeId id) const;
  std::vector<Interface> interfaces(NodeId id) const;
  std::shared_ptr<NodeRuntime> runtime(NodeId id) const;
  std::shared_ptr<spdlog::logger> logger(NodeId id) const;
  bool alive(NodeId id) const;
  std::string describe_kernel_state(NodeId id);

  void set_link(NodeId device, const std::string& iface, bool up);
  // A change of a running router's rules; unset fields keep their value.
  struct RulesChange {
    std::optional<Nat> nat{};
    std::optional<NatConfig> nat_config{};  // with nat == Custom
    std::optional<NatV6Mode> nat_v6{};
    std::optional<Firewall> firewall{};
    std::optional<FirewallConfig> firewall_config{};  // with firewall == Custom
    std::optional<bool> block_icmp_frag_needed{};
  };
  void set_router_rules(NodeId router, const RulesChange& change);
  void flush_nat_state(NodeId router);
  void set_default_route(NodeId device, const std::string& iface);
  // Moves a device interface to another router's LAN (same name and MAC, new addresses).
  void replug(NodeId device, const std::string& iface, NodeId router);

  // Link conditions (link_conditioner.hpp). Each validates, applies and records the change, or
  // throws and leaves the link as it was.
  void set_iface_condition(NodeId device, const std::string& iface,
                           const LinkConditions& conditions);
  void set_uplink_condition(NodeId router, const LinkConditions& conditions);
  void set_downlink_condition(NodeId router, const std::optional<LinkCondition>& condition);
  // Between a device and its gateway, or a router and the router directly upstream of it.
  void set_link_condition(NodeId a, NodeId b, const LinkConditions& conditions);
  LinkBackend link_backend();

  // Regions (patchbay/region.hpp).
  void add_region(const std::string& name);
  bool has_region(const std::string& name) const;
  std::vector<std::string> region_names() const;
  void link_regions(const std::string& a, const std::string& b, const RegionLink& link);
  void set_region_link(const std::string& a, const std::string& b, const RegionLink& link);
  void set_region_link_broken(const std::string& a, const std::string& b, bool broken);
  bool region_link_broken(const std::string& a, const std::string& b) const;
  std::uint64_t seed() const { return seed_; }

  std::string state_json() const;
  // Appends an event to events.jsonl and rewrites state.json, when the lab writes output (an
  // output directory was given). Takes mu_.
  void emit_event(std::string_view kind, const EventLog::Payload& payload);
  // Node::start_capture / stop_capture (link_capture.hpp).
  void start_capture(NodeId node, const std::string& iface, const std::filesystem::path& path,
                     std::uint64_t max_bytes);
  void stop_capture(NodeId node, const std::string& iface);
  // Node::event: the node's own events file and a user_event in events.jsonl.
  void user_event(NodeId node, const std::string& name,
                  const std::vector<std::pair<std::string, std::string>>& fields);
  void write_artifacts(const std::filesystem::path& dir);
  std::size_t thread_count() const;

  const LabOptions& options() const { return options_; }
  const std::filesystem::path& outdir() const { return outdir_; }
  std::weak_ptr<LabCore> weak() { return weak_from_this(); }

 private:
  // Starts the always-on ring capture of `iface` of `rec` if the lab has one (mu_ held, on the
  // control thread).
  void start_ring_capture_locked(NodeRecord& rec, const std::string& iface);
  // Stops every capture of the node (mu_ held); never throws.
  void stop_captures_locked(const NodeRecord& rec) noexcept;
  std::string capture_key(const NodeRecord& rec, const std::string& iface) const;
  // The same with mu_ held.
  void emit_event_locked(std::string_view kind, const EventLog::Payload& payload);
  std::string state_json_locked() const;
  nlohmann::json router_state(const NodeRecord& rec) const;  // caller holds mu_
  nlohmann::json device_state(const NodeRecord& rec) const;
  NodeRecord& record(NodeId id);  // caller holds mu_
  const NodeRecord& record(NodeId id) const;
  void check_name_free(const std::string& name, std::string_view kind) const;
  std::shared_ptr<NodeRuntime> make_runtime(NodeRecord& rec, std::string_view kind);
  // Creates the namespace of a new node on the control thread, with its sockets and base
  // sysctls, and returns the control thread to the lab root.
  // `ipv6` false: IPv6 is off in the namespace (a node without IPv6 addresses).
  void create_node_namespace(NodeRecord& rec, bool forwarding_v4, bool forwarding_v6, bool ipv6);
  void install_default_routes(NodeRecord& dev, const DeviceIfaceRecord& iface);
  int pid_namespace_fd();
  void teardown_node(NodeRecord& rec);
  void kill_stray_processes(ino_t netns_inode);
  void check_attachable(const NodeRecord& router) const;
  bool lan_overlaps(const Ipv4Net& net) const;
  struct RegionRecord {
    std::string name;
    int index = 0;  // 1..15: the region's /20 is 198.18.(16 x index).0/20
    NodeId router = 0;
    int next_lan = 1;  // next /24 of the /20 for a public router in the region (1..15)
  };
  struct RegionLinkRecord {
    int number = 0;  // k: 203.0.113.(4k)/30, fd11:0:0:k::/126, bridge "rl<k>"
    struct Side {
      std::string region;
      NodeId router = 0;
      std::string iface;  // in the region router: "rg<peer index>"
      std::string port;   // the veth's other end, on the link's bridge in the lab root
      Ipv4Address v4;
      Ipv6Address v6;
    };
    Side side[2];
    RegionLink link{};
    bool broken = false;
  };
  RegionRecord& region_record(const std::string& name);  // throws kNotFound
  RegionLinkRecord& region_link(const std::string& a, const std::string& b);
  const RegionLinkRecord* find_region_link(const std::string& a, const std::string& b) const;
  LinkEnds region_link_ends(const RegionLinkRecord& l);
  // Routes in every region linked to `region` for `dst` (via that link's near address);
  // appended to `added`.
  void add_cross_region_routes(const std::string& region, const IpPrefix& dst, bool v6,
                               std::vector<RouterData::ForeignRoute>& added);
  // The two ends of a device interface's link, or of a router's uplink (caller holds mu_).
  LinkEnds iface_link(NodeRecord& dev, const DeviceIfaceRecord& iface);
  LinkEnds uplink_link(NodeRecord& router, const RouterData& data);
  DownlinkEnds downlink_ends(NodeRecord& router, const RouterData& data);

  LabOptions options_;
  std::filesystem::path outdir_;
  bool owns_outdir_ = false;

  mutable std::mutex mu_;
  bool closed_ = false;
  // Never null after construction; disabled without a user output directory. Shared with the
  // nodes' runtimes, whose command events may outlive a node.
  std::shared_ptr<EventLog> events_;
  std::size_t capture_ring_bytes_ = 0;                   // per link; 0: no always-on capture
  std::unique_ptr<LinkCapture> capture_;                 // created with the first capture
  std::map<NodeId, std::unique_ptr<NodeRecord>> nodes_;  // includes the IX (lab root)
  NodeId next_id_ = 2;
  AddressPlan plan_;
  int ix_bridge_ifindex_ = 0;
  std::optional<PidNamespace> pidns_;
  std::uint64_t seed_ = 0;
  std::map<std::string, RegionRecord> regions_;
  std::vector<RegionLinkRecord> region_links_;
  // Runs on the control thread only; destroyed (emulator stopped) before the namespaces go.
  std::unique_ptr<LinkConditioner> conditioner_;
  std::unique_ptr<WorkerThread> control_;  // declared last: destroyed first
};

}  // namespace patchbay::internal
