// Handles to the nodes of a lab — Router, Device and Ix (the lab's internet exchange) — and
// the ways to run code inside them without ever calling setns yourself.
//
//   patchbay::Device pc = ...;
//   // (a) a blocking callable, run in pc's network namespace; result or exception returned:
//   int fd_count = pc.run([] { return count_sockets(); });
//   // (b) Boost.Asio coroutines on pc's own io_context; a std::future for the result:
//   std::future<std::size_t> n = pc.spawn([&]() -> boost::asio::awaitable<std::size_t> {
//     boost::asio::ip::tcp::socket s(co_await boost::asio::this_coro::executor);
//     co_await s.async_connect({*srv.ip(), 8080}, boost::asio::use_awaitable);
//     co_return co_await s.async_write_some(boost::asio::buffer("hi", 2),
//     boost::asio::use_awaitable);
//   });
//   // (c) a thread in the namespace; (d) an OS command (see process.hpp):
//   auto done = pc.spawn_thread([] { serve_forever(); });
//   pc.run_command({"ping", "-c1", "198.18.1.2"});
//
// Handles are cheap to copy and never keep a lab alive: once the lab (or the node) is gone,
// every operation throws Error(kRemoved). name() and id() stay readable.
#pragma once

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "patchbay/addresses.hpp"
#include "patchbay/firewall.hpp"
#include "patchbay/link_condition.hpp"
#include "patchbay/nat.hpp"
#include "patchbay/presets.hpp"
#include "patchbay/process.hpp"

namespace spdlog {
class logger;
}

namespace patchbay {

namespace internal {
class LabCore;
}

using NodeId = std::uint64_t;

enum class NodeKind { Ix, Router, Device };

// A snapshot of one interface of a node, taken when it is requested.
struct Interface {
  std::string name;
  std::optional<Ipv4Net> ipv4;     // host address with the LAN's prefix length
  std::optional<Ipv6Net> ipv6;     // global (or ULA) address, /64
  std::optional<Ipv6Address> ll6;  // deterministic link-local address (fe80::/64)
  std::string mac;                 // "02:..." locally administered, deterministic
  bool up = true;                  // administratively up (link_down() clears it)
  std::string peer;                // the router (or IX) this interface attaches to
  bool is_default = false;         // carries the device's default routes
  // The link's impairment (egress = what this node sends); empty when unimpaired.
  LinkConditions condition;

  std::optional<Ipv4Address> ip() const {
    return ipv4 ? std::optional(ipv4->address) : std::nullopt;
  }
  std::optional<Ipv6Address> ip6() const {
    return ipv6 ? std::optional(ipv6->address) : std::nullopt;
  }
};

class Node {
 public:
  NodeId id() const { return id_; }
  const std::string& name() const { return name_; }
  NodeKind kind() const { return kind_; }
  // False once the node was removed or its lab destroyed.
  bool alive() const;

  // Runs `fn` on the node's blocking worker, inside the node's network namespace, and returns
  // its result; an exception thrown by `fn` is rethrown here. The worker thread starts on first
  // use. Calls from several threads run one after another.
  template <class F>
  auto run(F&& fn) const -> std::invoke_result_t<F&> {
    using R = std::invoke_result_t<F&>;
    if constexpr (std::is_void_v<R>) {
      run_blocking([&fn] { fn(); });
    } else {
      std::optional<R> result;
      run_blocking([&fn, &result] { result.emplace(fn()); });
      return std::move(*result);
    }
  }

  // Starts `coroutine_fn()` — a callable returning boost::asio::awaitable<T> — on the node's
  // io_context thread (started on first use) and returns a future for its result.
  // Create sockets inside the coroutine: a socket belongs to the namespace of the thread
  // that creates it.
  template <class F>
  auto spawn(F&& coroutine_fn) const {
    return boost::asio::co_spawn(io_context(), std::forward<F>(coroutine_fn),
                                 boost::asio::use_future);
  }

  // Starts a new thread inside the node's namespace running `fn()` (or `fn(stop_token)`), and
  // returns a future for its result. The lab requests stop and joins the thread when the node
  // goes away, so long-running bodies should watch the stop_token.
  template <class F>
  auto spawn_thread(F&& fn) const {
    if constexpr (std::is_invocable_v<F&, std::stop_token>) {
      using R = std::invoke_result_t<F&, std::stop_token>;
      auto task = std::make_shared<std::packaged_task<R(std::stop_token)>>(std::forward<F>(fn));
      std::future<R> result = task->get_future();
      start_thread([task](std::stop_token st) { (*task)(std::move(st)); });
      return result;
    } else {
      using R = std::invoke_result_t<F&>;
      auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(fn));
      std::future<R> result = task->get_future();
      start_thread([task](std::stop_token) { (*task)(); });
      return result;
    }
  }

  // Starts an OS command in the node (Boost.Process). See process.hpp.
  Process spawn_command(const Command& command) const;
  // Runs a command to completion and returns its exit code and output. Throws Error(kTimeout)
  // (after killing it) if it runs longer than `timeout`.
  CommandResult run_command(const Command& command,
                            std::chrono::milliseconds timeout = std::chrono::seconds(60)) const;

  // The node's io_context; its thread starts on first use. The reference is valid only while
  // the node exists: keep timers and sockets bound to it inside coroutines started by spawn().
  boost::asio::io_context& io_context() const;

  // Snapshots of the node's interfaces.
  std::vector<Interface> interfaces() const;
  // Throws Error(kNotFound) naming the interface if there is none of that name.
  Interface iface(const std::string& name) const;

  // Addresses, routes and nftables ruleset of the node, as text (for debugging and artifacts).
  std::string describe_kernel_state() const;

  // The node's logger (spdlog; include <spdlog/spdlog.h> to use it). With an output directory
  // its lines go to `<kind>.<name>.tracing.jsonl` (JSON: fields.message, level, target,
  // timestamp) and `<kind>.<name>.tracing.log` (text), next to the library's own lines about
  // the node (target "patchbay"); the level is PATCHBAY_LOG (default info). Its name, the
  // node's, is the target; `logger()->clone("myapp::conn")` gives another target, same files.
  std::shared_ptr<spdlog::logger> logger() const;

  // Captures every packet of interface `iface` (both directions) into the pcapng file `path`,
  // readable by tcpdump and Wireshark, until stop_capture(iface), the node's removal or the
  // lab's end, and at most `max_bytes` (later packets are counted, not written). Throws
  // Error(kNotFound) for an unknown interface, Error(kAlreadyExists) if it is being captured.
  void start_capture(const std::string& iface, const std::filesystem::path& path,
                     std::uint64_t max_bytes = 256u << 20) const;
  // Completes and closes the file. Throws Error(kNotFound) if `iface` is not being captured.
  void stop_capture(const std::string& iface) const;

  // A point on the node's timeline, for humans reading a failed test's artifacts:
  //   laptop.event("ConnectionEstablished", {{"peer", "198.18.0.10:4433"}, {"rtt_ms", "21"}});
  // With an output directory it is appended to `<kind>.<name>.events.jsonl` as
  // {"kind": name, <fields>..., "timestamp"} and to events.jsonl as a `user_event`; without one
  // it costs nothing. Callable from any thread, including the node's own. Throws
  // Error(kInvalidArgument) for an empty name or a field named "kind" or "timestamp".
  void event(const std::string& name,
             const std::vector<std::pair<std::string, std::string>>& fields = {}) const;

 protected:
  Node(std::weak_ptr<internal::LabCore> lab, NodeId id, std::string name, NodeKind kind)
      : lab_(std::move(lab)), id_(id), name_(std::move(name)), kind_(kind) {}

  std::shared_ptr<internal::LabCore> core() const;  // throws Error(kRemoved) if the lab is gone

  friend class Lab;
  friend class RouterBuilder;
  friend class DeviceBuilder;
  friend class Device;
  std::weak_ptr<internal::LabCore> lab_;
  NodeId id_ = 0;
  std::string name_;
  NodeKind kind_;

 private:
  void run_blocking(std::function<void()> job) const;
  void start_thread(std::function<void(std::stop_token)> body) const;
};

class Router : public Node {
 public:
  Nat nat() const;
  // The NAT's behaviour (a preset's expanded, or the custom one); nullopt for Nat::None.
  std::optional<NatConfig> nat_config() const;
  NatV6Mode nat_v6() const;
  // The outside /64 of NPTv6 (kept from its first use for the router's lifetime, so switching
  // back gives the same addresses); nullopt while the router never used NPTv6.
  std::optional<Ipv6Net> nptv6_prefix() const;
  Firewall firewall() const;
  // The firewall's rules; nullopt for Firewall::None.
  std::optional<FirewallConfig> firewall_config() const;
  IpSupport ip_support() const;
  // The router this one hangs below; nullopt for routers on the IX.
  std::optional<Router> upstream() const;
  // Uplink (WAN) addresses: on the IX, or on the upstream router's LAN.
  std::optional<Ipv4Address> uplink_ip() const;
  std::optional<Ipv6Address> uplink_ip6() const;
  // LAN prefixes and the router's own address on them.
  std::optional<Ipv4Net> lan_v4() const;
  std::optional<Ipv6Net> lan_v6() const;
  std::optional<Ipv4Address> lan_gateway() const;
  std::optional<Ipv6Address> lan_gateway6() const;
  // The region the router is in (nullopt outside regions; a region's own router is in it).
  std::optional<std::string> region() const;
  // Name of the uplink interface inside the router: "ix" or "wan".
  std::string uplink_iface() const;

  // Replace the NAT or the firewall of the running router: one atomic nftables transaction, so
  // there is no moment without rules. Existing connections keep their conntrack state (as on a
  // real router); flush_nat_state() drops it.
  // Conntrack timeouts follow the new NAT (kernel defaults for Nat::None); NAT mappings of the
  // old one are dropped with its table.
  void set_nat(Nat nat) const;
  void set_nat(const NatConfig& config) const;
  void set_nat_v6(NatV6Mode mode) const;
  void set_firewall(Firewall firewall) const;
  void set_firewall(const FirewallConfig& config) const;
  // Forgets all NAT state of this router: every conntrack entry (IPv4 and IPv6, over
  // ctnetlink) and every mapping the NAT remembers, so the next packet of every flow is new.
  void flush_nat_state() const;
  // See RouterBuilder::block_icmp_frag_needed.
  void set_block_icmp_frag_needed(bool block) const;
  bool blocks_icmp_frag_needed() const;
  // The router's LAN MTU (RouterBuilder::mtu), nullopt for the default 1500.
  std::optional<int> mtu() const;

  // Impairs the uplink (see RouterBuilder::uplink_condition); an empty value clears it. Takes
  // effect for the next packet; packets already held by the emulator keep their schedule.
  void set_uplink_condition(const LinkConditions& conditions) const;
  LinkConditions uplink_condition() const;
  // Impairs the downlink (see RouterBuilder::downlink_condition); nullopt clears it. Takes
  // effect for the next packet.
  void set_downlink_condition(const std::optional<LinkCondition>& condition) const;
  std::optional<LinkCondition> downlink_condition() const;

  Router(std::weak_ptr<internal::LabCore> lab, NodeId id, std::string name)
      : Node(std::move(lab), id, std::move(name), NodeKind::Router) {}
};

class Device : public Node {
 public:
  // Addresses of the default interface.
  std::optional<Ipv4Address> ip() const;
  std::optional<Ipv6Address> ip6() const;
  Interface default_iface() const;

  // Administratively takes an interface down or up (the router side too, so the link is dead
  // in both directions); routes through it are restored on link_up.
  void link_down(const std::string& iface) const;
  void link_up(const std::string& iface) const;
  // Impairs one interface's link in one or both directions (egress: what the device sends);
  // an empty LinkConditions clears it. The interface keeps its name, addresses and carrier:
  // code in the device sees no change other than the impairment. Takes effect for the next
  // packet. Throws Error(kNotFound) for an unknown interface, Error(kKernel) when the backend
  // cannot apply the condition (the link then keeps its previous condition).
  void set_link_condition(const std::string& iface, const LinkConditions& conditions) const;
  LinkConditions link_condition(const std::string& iface) const;

  // Unplugs an interface and plugs it into `router`'s LAN: the interface keeps its name, MAC and
  // link condition, gets new addresses from that LAN (the MTU of the device, else of the new
  // LAN), and the default routes follow if it carries them. Code in the device sees the link go
  // away and come back, as with a cable moved to another switch.
  void replug_iface(const std::string& iface, const Router& router) const;

  // Moves the default routes (IPv4 and IPv6) to another interface.
  void set_default_route(const std::string& iface) const;

  Device(std::weak_ptr<internal::LabCore> lab, NodeId id, std::string name)
      : Node(std::move(lab), id, std::move(name), NodeKind::Device) {}
};

// The lab's root namespace, home of the IX bridge ("the internet backbone").
class Ix : public Node {
 public:
  static Ipv4Address gateway() { return Ipv4Address({198, 18, 0, 1}); }
  static Ipv6Address gateway6();

  Ix(std::weak_ptr<internal::LabCore> lab, NodeId id)
      : Node(std::move(lab), id, "ix", NodeKind::Ix) {}
};

}  // namespace patchbay
