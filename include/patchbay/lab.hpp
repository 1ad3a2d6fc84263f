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
#include "patchbay/node.hpp"
#include "patchbay/presets.hpp"

namespace patchbay {

struct LabOptions {
  // Shown in state.json and logs; the GoogleTest fixture uses the test's full name.
  std::string label;
  // Where command output and artifacts go. Empty: a private temporary directory that is
  // removed with the lab.
  std::filesystem::path outdir;
  // Duplicate address detection on IPv6 addresses. Off by default so addresses are usable at
  // once (tests stay deterministic).
  bool ipv6_dad = false;
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
  // Explicit LAN prefix instead of the pool's next one (gateway .1, hosts from .2).
  RouterBuilder& lan_cidr(const std::string& cidr);
  RouterBuilder& mtu(int mtu);

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
    std::optional<std::string> lan_cidr;
    std::optional<int> mtu;
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
  // Adds an interface named eth<n> (n = interfaces so far).
  DeviceBuilder& uplink(const Router& gateway);
  // Chooses which interface carries the default routes.
  DeviceBuilder& default_via(std::string iface_name);
  DeviceBuilder& mtu(int mtu);

  [[nodiscard]] Device build();

  struct IfaceSpec {
    std::string name;
    std::string gateway;
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
