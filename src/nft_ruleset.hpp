// Router packet filtering and NAT through nftables, programmed in-process with libnftnl +
// libmnl: a whole router ruleset is one netlink batch, i.e. one atomic transaction.
//
// The planners in router_rules.hpp describe our tables as data (ip pb_nat, inet pb_fw,
// ip6 pb_nat6); this socket renders them. Applying replaces these tables atomically
// (add/delete/add in one batch), so changing a router's NAT or firewall never leaves a moment
// without rules.
#pragma once

#include <cstdint>
#include <string>

#include "router_rules.hpp"

// libmnl's socket type. Declared at global scope so that `struct mnl_socket*` below names it
// rather than declaring a new patchbay::internal::mnl_socket.
struct mnl_socket;

namespace patchbay::internal {

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
  // Creates, replaces or (table.wanted false) deletes one table outside the router plan, in
  // one batch: tables other parts of the lab own, such as the downlink splice's.
  void apply_table(const NftTableSpec& table);
  // Removes every pb_* table of the router plan (one batch). No-op when there are none.
  void clear();
  // Deletes all elements of the NAT table's mapping sets (the state `rules` created).
  void flush_nat_sets(const RouterRules& rules);
  // Text rendering of all tables, chains and rules of the namespace.
  std::string list_ruleset();

 private:
  NftSocket(struct mnl_socket* sock, std::string node);
  struct mnl_socket* sock_ = nullptr;
  std::string node_;
  std::uint32_t seq_ = 0;
};

}  // namespace patchbay::internal
