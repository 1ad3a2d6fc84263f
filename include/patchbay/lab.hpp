// Lab — one isolated emulated network — and the builders that add routers and devices to it.
//
//   patchbay::Lab lab;
//   patchbay::Router dc = lab.add_router("dc").preset(patchbay::RouterPreset::Public).build();
//   patchbay::Router home = lab.add_router("home").preset(patchbay::RouterPreset::Home).build();
//   patchbay::Device server = lab.add_device("server").iface("eth0", dc).build();
//   patchbay::Device laptop = lab.add_device("laptop").iface("eth0", home).build();
//   laptop.run_command({"ping", "-c1", server.ip()->to_string()});
//
// A lab owns a private root namespace holding the IX bridge (198.18.0.1/24, 2001:db8::1/64),
// one network namespace per node, the veth links between them, NAT rules, the threads that run
// code in nodes and the processes started there. Destroying the Lab frees all of it; node
// handles do not keep it alive. Building needs the process bootstrap (bootstrap.hpp) unless the
// process is root in the initial user namespace.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "patchbay/addresses.hpp"
#include "patchbay/link_condition.hpp"
#include "patchbay/node.hpp"
#include "patchbay/presets.hpp"
#include "patchbay/region.hpp"

namespace patchbay {

struct LabOptions {
  // Shown in state.json and logs; the GoogleTest fixture uses the test's full name.
  std::string label{};
  // Where command output and artifacts go. Empty: a private temporary directory that is
  // removed with the lab.
  std::filesystem::path outdir{};
  // Duplicate address detection on IPv6 addresses. Off by default so addresses are usable at
  // once (tests stay deterministic).
  bool ipv6_dad = false;
  // How link conditions are applied (docs/link-conditions.md). Auto picks the kernel's netem
  // where it exists and the userspace emulator elsewhere; the environment variable
  // PATCHBAY_LINK_BACKEND (auto, kernel, userspace) overrides Auto.
  LinkBackend link_backend = LinkBackend::Auto;
  // Seeds the userspace emulator's random draws (loss, jitter, duplicate, corrupt, reorder):
  // the same seed and the same packets give the same pattern, link by link. PATCHBAY_SEED
  // overrides the default; state.json records the seed used.
  std::optional<std::uint64_t> seed{};
  // Always-on packet capture: every device interface and router uplink keeps its most recent
  // `capture_ring_bytes` of packets, written as `<kind>.<name>.<iface>.pcapng` with the failure
  // artifacts (write_artifacts). 0: off, unless PATCHBAY_CAPTURE_MIB (MiB per link) is set.
  std::size_t capture_ring_bytes = 0;
};

class RouterBuilder;
class DeviceBuilder;

class Lab {
 public:
  explicit Lab(LabOptions options = {});
  // Frees everything before returning: all nodes stop at once (processes killed, threads asked
  // to stop), then threads are joined and namespaces closed. Handles then throw Error(kRemoved).
  ~Lab();
  Lab(Lab&&) noexcept;
  Lab& operator=(Lab&&) noexcept;
  Lab(const Lab&) = delete;
  Lab& operator=(const Lab&) = delete;

  [[nodiscard]] RouterBuilder add_router(std::string name);
  [[nodiscard]] DeviceBuilder add_device(std::string name);

  std::optional<Router> router(const std::string& name) const;
  std::optional<Device> device(const std::string& name) const;
  std::vector<Router> routers() const;
  std::vector<Device> devices() const;
  Ix ix() const;

  // Tears down the node's namespace, threads and processes. A router can only be removed once
  // no device or sub-router is attached to it. Not allowed from code running inside the lab
  // (the removal joins threads that may be waiting for the caller).
  void remove_device(const Device& device);
  void remove_router(const Router& router);

  const std::string& label() const;
  const std::filesystem::path& outdir() const;

  // The topology as JSON text (nodes, interfaces, addresses, NAT, routes between them).
  std::string state_json() const;
  // Writes state.json and per-node kernel state (addresses, routes, nftables) into `dir`.
  void write_artifacts(const std::filesystem::path& dir) const;

  // The backend that applies link conditions in this lab: Kernel or Userspace (Auto resolved).
  // Resolving Auto probes the kernel once per process.
  LinkBackend link_backend() const;
  // The seed of the lab's link emulation (see LabOptions::seed).
  std::uint64_t seed() const;

  // Impairs the link between `a` and `b`: a device and its gateway router (that interface of
  // the device), or a router and the router directly upstream of it (the lower router's
  // uplink). Directions are seen from the lower node: egress is the device's (or lower
  // router's) upload. An empty LinkConditions clears the link. Throws Error(kNotFound) when the
  // two are not directly connected.
  void set_link_condition(const Node& a, const Node& b, const LinkConditions& conditions);

  // Regions (region.hpp). add_region builds the region's router; names must be non-empty and
  // unique, and at most 15 regions fit in the address plan.
  Region add_region(const std::string& name);
  std::optional<Region> region(const std::string& name) const;
  std::vector<Region> regions() const;
  // Joins two regions; each direction gets `link`'s latency, jitter, loss and rate. Throws
  // Error(kAlreadyExists) if they are linked already, Error(kNotFound) for an unknown region.
  void link_regions(const Region& a, const Region& b, const RegionLink& link);
  // Changes a region link's condition (kept while the link is broken, applied on restore).
  void set_region_link(const Region& a, const Region& b, const RegionLink& link);
  // Partitions two regions: from the next packet on, everything between them is dropped (both
  // directions, IPv4 and IPv6); packets already on the link still arrive. restore undoes it.
  // Errors name the regions: no such link, already broken, not broken.
  void break_region_link(const Region& a, const Region& b);
  void restore_region_link(const Region& a, const Region& b);
  bool region_link_broken(const Region& a, const Region& b) const;
  // us, eu and asia, linked us-eu 40 ms, us-asia 95 ms, eu-asia 120 ms (one way, good links).
  DefaultRegions add_default_regions();

  // Number of threads the lab currently runs (control thread plus per-node workers).
  std::size_t thread_count() const;

 private:
  std::shared_ptr<internal::LabCore> core_;
};

class RouterBuilder {
 public:
  // A preset supplies defaults for nat, firewall, ip_support and pool; explicit setters win.
  RouterBuilder& preset(RouterPreset p);
  RouterBuilder& nat(Nat n);
  // A NAT of custom behaviour (the router then reports Nat::Custom).
  RouterBuilder& nat(const NatConfig& config);
  // IPv6 translation on the uplink (default None: IPv6 LANs are routed).
  RouterBuilder& nat_v6(NatV6Mode mode);
  RouterBuilder& firewall(Firewall f);
  RouterBuilder& firewall(const FirewallConfig& config);
  RouterBuilder& ip_support(IpSupport s);
  RouterBuilder& pool(LanPool p);
  // Attach below another router's LAN instead of the IX.
  RouterBuilder& upstream(const Router& parent);
  RouterBuilder& upstream(const std::string& parent_name);
  // Places the router in a region: it hangs below the region's router (so not together with
  // upstream()); with the public pool its LAN is the region's next /24.
  RouterBuilder& region(const Region& region);
  // Explicit LAN prefix instead of the pool's next one (gateway .1, hosts from .2).
  RouterBuilder& lan_cidr(const std::string& cidr);
  // The MTU of the router's LAN: its bridge, every port on it and, unless they set their own,
  // the interfaces of devices and routers attached there. (The router's uplink belongs to its
  // parent's LAN and has that LAN's MTU: one L2 segment, one MTU, so an oversized packet is
  // refused by a router with an ICMP error rather than silently by a bridge.)
  RouterBuilder& mtu(int mtu);
  // Drops the ICMP "fragmentation needed" and ICMPv6 "packet too big" errors this router
  // forwards: a path-MTU black hole for the hosts on either side of it.
  RouterBuilder& block_icmp_frag_needed(bool block = true);
  // Impairs the uplink (towards the IX or the upstream router); egress is the router's upload.
  RouterBuilder& uplink_condition(const LinkConditions& conditions);
  // Impairs the router's downlink: everything it routes into its LAN (the download of all its
  // devices and sub-routers together, sharing one rate) and its own packets there. Traffic
  // between devices of the LAN is bridged and does not take it.
  RouterBuilder& downlink_condition(const LinkCondition& condition);

  // Creates the router; on failure nothing of it remains and Error says why.
  [[nodiscard]] Router build();

  struct Spec {
    std::string name;
    std::optional<RouterPreset> preset;
    std::optional<Nat> nat;
    std::optional<NatConfig> nat_config;  // with nat == Custom
    std::optional<NatV6Mode> nat_v6;
    std::optional<Firewall> firewall;
    std::optional<FirewallConfig> firewall_config;  // with firewall == Custom
    std::optional<IpSupport> ip_support;
    std::optional<LanPool> pool;
    std::optional<std::string> upstream;
    std::optional<std::string> region;
    std::optional<std::string> lan_cidr;
    std::optional<int> mtu;
    bool block_icmp_frag_needed = false;
    LinkConditions uplink_condition;
    std::optional<LinkCondition> downlink_condition;
  };
  RouterBuilder(std::shared_ptr<internal::LabCore> core, std::string name);

 private:
  std::shared_ptr<internal::LabCore> core_;
  Spec spec_;
};

class DeviceBuilder {
 public:
  // Adds an interface attached to `gateway`'s LAN. The first interface is the default one.
  DeviceBuilder& iface(std::string name, const Router& gateway);
  DeviceBuilder& iface(std::string name, const std::string& gateway_name);
  // The same, with the link impaired from the start (egress: the device's upload).
  DeviceBuilder& iface(std::string name, const Router& gateway, const LinkConditions& conditions);
  // Adds an interface named eth<n> (n = interfaces so far).
  DeviceBuilder& uplink(const Router& gateway);
  // Chooses which interface carries the default routes.
  DeviceBuilder& default_via(std::string iface_name);
  DeviceBuilder& mtu(int mtu);

  [[nodiscard]] Device build();

  struct IfaceSpec {
    std::string name;
    std::string gateway;
    LinkConditions condition;
  };
  struct Spec {
    std::string name;
    std::vector<IfaceSpec> ifaces;
    std::optional<std::string> default_iface;
    std::optional<int> mtu;
  };
  DeviceBuilder(std::shared_ptr<internal::LabCore> core, std::string name);

 private:
  std::shared_ptr<internal::LabCore> core_;
  Spec spec_;
};

}  // namespace patchbay
