// RouteSocket: an rtnetlink connection (libnl-route) bound to one network namespace.
//
// A netlink socket belongs to the namespace of the thread that created it, so one RouteSocket
// per namespace is opened while the control thread is inside that namespace; afterwards it can
// be used from any thread. Every request waits for the kernel's ACK; failures throw
// Error(kKernel) naming the node, the operation and the kernel's message.
#pragma once

#include <boost/asio/ip/address.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct nl_sock;

namespace patchbay::internal {

using MacAddress = std::array<std::uint8_t, 6>;

struct IpPrefix {
  boost::asio::ip::address address;
  std::uint8_t prefix_len = 0;
};

// One end of a veth pair to create.
struct VethEnd {
  std::string name;
  int netns_fd = -1;  // namespace to create this end in; -1 = the socket's namespace
  std::optional<MacAddress> mac;
  bool up = false;
  int master_ifindex = 0;  // bridge to enslave to at creation (index in the end's namespace)
  std::optional<int> mtu;
};

struct LinkInfo {
  int ifindex = 0;
  std::string name;
  std::string kind;  // "veth", "bridge", ... ("" if unknown)
  bool up = false;
  bool carrier = false;
  bool oper_up = false;  // operstate UP: the kernel finished bringing the link up (qdisc active)
  int mtu = 0;
  int master_ifindex = 0;
  std::string mac;  // "aa:bb:..."
  std::uint64_t rx_bytes = 0, tx_bytes = 0, rx_packets = 0, tx_packets = 0;
};

struct AddressInfo {
  int ifindex = 0;
  IpPrefix prefix;
  std::uint32_t flags = 0;
};

struct RouteInfo {
  int family = 0;
  std::optional<IpPrefix> dst;  // nullopt = default route
  std::optional<boost::asio::ip::address> gateway;
  int oif = 0;
  int table = 0;
  std::string text;  // "10.0.1.0/24 via 198.18.0.10 dev ix"
};

class RouteSocket {
 public:
  // Opens a socket in the calling thread's current network namespace. `node` names the
  // namespace in error messages.
  static RouteSocket open_in_current_netns(const std::string& node);

  RouteSocket(RouteSocket&&) noexcept;
  RouteSocket& operator=(RouteSocket&&) noexcept;
  ~RouteSocket();

  const std::string& node() const { return node_; }

  // Interface index of `name`; throws Error(kNotFound) if there is none.
  int link_index(const std::string& name);
  // Whether the link's operstate is UP (one RTM_GETLINK for that link only).
  bool link_oper_up(const std::string& name);
  void set_link_up(int ifindex, bool up);
  void set_mtu(int ifindex, int mtu);
  // Enslaves the link to a bridge, or releases it from its bridge when master_ifindex is 0.
  void set_master(int ifindex, int master_ifindex);
  // Turns MAC learning on a bridge port on or off (IFLA_BRPORT_LEARNING).
  void set_bridge_port_learning(int ifindex, bool learning);
  // Returns once the link's operstate is UP (polling link_oper_up). A veth end that comes up
  // gets its carrier at once but its queueing discipline only when the kernel's link-watch
  // work runs; until then packets are dropped. Linkwatch needs the RTNL lock, which namespace
  // teardown elsewhere can hold for seconds on a loaded machine: hence the generous default.
  // Throws Error(kTimeout) naming the link after `limit`.
  void wait_until_oper_up(const std::string& name,
                          std::chrono::milliseconds limit = std::chrono::seconds(10));
  // Deletes a link (for a veth, both ends go at once, wherever the peer lives).
  void delete_link(int ifindex);

  // Creates a bridge in this namespace; returns its ifindex.
  int add_bridge(const std::string& name, const std::optional<MacAddress>& mac, bool up);

  // Creates a veth pair in one request; each end is created directly in its own namespace
  // (no moving of links). Returns the ifindex of `local` if it lives in this socket's
  // namespace, else 0.
  int add_veth(const VethEnd& local, const VethEnd& peer);

  // Adds an address; IPv6 addresses get IFA_F_NODAD unless `dad` is true. "Already exists" is
  // success.
  void add_address(int ifindex, const IpPrefix& prefix, bool dad = false);
  void delete_address(int ifindex, const IpPrefix& prefix);

  // Adds a route (main table). No gateway = on-link via `oif`. "Already exists" is success.
  void add_route(const IpPrefix& dst, const std::optional<boost::asio::ip::address>& gateway,
                 int oif = 0);
  void delete_route(const IpPrefix& dst, const std::optional<boost::asio::ip::address>& gateway,
                    int oif = 0);
  // Deletes every default route of `family` (AF_INET / AF_INET6) in the main table.
  void delete_default_routes(int family);

  std::vector<LinkInfo> list_links();
  std::vector<AddressInfo> list_addresses();
  std::vector<RouteInfo> list_routes(int family);  // main table

  // The underlying libnl socket, for requests this class does not wrap (qdiscs).
  nl_sock* raw() const { return sock_; }

  // Human-readable dump of links, addresses and routes (ip-like text).
  std::string describe();

 private:
  RouteSocket(nl_sock* sock, std::string node);
  nl_sock* sock_ = nullptr;
  std::string node_;
};

}  // namespace patchbay::internal
