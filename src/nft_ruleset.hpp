// Router packet filtering and NAT through nftables, programmed in-process with libnftnl +
// libmnl: a whole router ruleset is one netlink batch, i.e. one atomic transaction.
//
// The ruleset is described as data (RouterRules) and rendered into our own tables:
//   ip   pb_nat    — source NAT on the uplink (+ an empty dstnat chain, see below)
//   ip   pb_filter — established-only inbound for NATed LANs (address-and-port-dependent)
//   inet pb_fw     — firewall presets (both families)
// Applying replaces these tables atomically (add/delete/add in one batch), so changing a
// router's NAT or firewall never leaves a moment without rules.
#pragma once

#include <boost/asio/ip/address_v4.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "patchbay/presets.hpp"

// libmnl's socket type. Declared at global scope so that `struct mnl_socket*` below names it
// rather than declaring a new patchbay::internal::mnl_socket.
struct mnl_socket;

namespace patchbay::internal {

struct RouterRules {
  std::string wan_ifname;  // "ix" or "wan"
  std::string lan_ifname;  // the LAN bridge
  std::optional<boost::asio::ip::address_v4> wan_ipv4;
  Nat nat = Nat::None;
  Firewall firewall = Firewall::None;
};

class NftSocket {
 public:
  // Opens a NETLINK_NETFILTER socket in the calling thread's network namespace.
  static NftSocket open_in_current_netns(const std::string& node);
  NftSocket(NftSocket&&) noexcept;
  NftSocket& operator=(NftSocket&&) noexcept;
  ~NftSocket();

  // Installs `rules` as one batch, replacing earlier pb_* tables. Throws Error(kKernel) with
  // the node name and the kernel's error text; on failure the previous ruleset stays.
  void apply(const RouterRules& rules);
  // Like apply() for a namespace that has none of our tables yet (a router being built). Skips
  // the delete step: a deleted table is freed by deferred kernel work that the socket's close
  // then waits for (an RCU grace period, ~7 ms here).
  void install(const RouterRules& rules);
  // Removes every pb_* table (one batch). No-op when there are none.
  void clear();
  // Text rendering of all tables, chains and rules of the namespace.
  std::string list_ruleset();

 private:
  NftSocket(struct mnl_socket* sock, std::string node);
  struct mnl_socket* sock_ = nullptr;
  std::string node_;
  std::uint32_t seq_ = 0;
};

}  // namespace patchbay::internal
