#include "route_socket.hpp"

#include <linux/if.h>

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>
#include <sched.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <sstream>
#include <thread>
#include <type_traits>
#include <utility>

#include "netlink_error.hpp"
#include "patchbay/error.hpp"

namespace patchbay::internal {
namespace {

// ---------------------------------------------------------------------------------------------
// RAII for libnl objects

template <auto Fn>
struct Release {
  template <class T>
  void operator()(T* p) const {
    if (p != nullptr) Fn(p);
  }
};

using LinkPtr = std::unique_ptr<rtnl_link, Release<&rtnl_link_put>>;
using CachePtr = std::unique_ptr<nl_cache, Release<&nl_cache_free>>;
using NlAddrPtr = std::unique_ptr<nl_addr, Release<&nl_addr_put>>;
using AddrPtr = std::unique_ptr<rtnl_addr, Release<&rtnl_addr_put>>;
using RoutePtr = std::unique_ptr<rtnl_route, Release<&rtnl_route_put>>;
using NexthopPtr = std::unique_ptr<rtnl_nexthop, Release<&rtnl_route_nh_free>>;
using MsgPtr = std::unique_ptr<nl_msg, Release<&nlmsg_free>>;

// ---------------------------------------------------------------------------------------------
// Kernel error capture
//
// libnl folds the kernel's errno into its own NLE_* codes, which is lossy (ENETUNREACH becomes
// "Unspecific failure", ESRCH and ENOENT both "Object not found"), and it drops the
// extended-ack text that says *which* attribute the kernel disliked. A custom error callback
// records both; the callback runs synchronously on the thread that issued the request, so a
// thread_local slot needs no per-socket state.

struct KernelReply {
  int sys_errno = 0;        // positive errno from NLMSG_ERROR, 0 if the kernel sent none
  std::string ext_message;  // NLMSGERR_ATTR_MSG, if the kernel explained itself
};

thread_local KernelReply t_reply;

int record_kernel_error(sockaddr_nl* /*from*/, nlmsgerr* err, void* /*arg*/) {
  t_reply.sys_errno = -err->error;
  t_reply.ext_message = extended_ack_message(err);
  // NL_STOP makes libnl return its usual translated code, so callers still see NLE_EXIST etc.
  return NL_STOP;
}

// Best errno for an error libnl raised itself (no NLMSG_ERROR involved).
int errno_from_nlerr(int nl_err) {
  static constexpr std::pair<int, int> kErrnos[] = {
      {NLE_INTR, EINTR},
      {NLE_BAD_SOCK, EBADF},
      {NLE_AGAIN, EAGAIN},
      {NLE_NOMEM, ENOMEM},
      {NLE_EXIST, EEXIST},
      {NLE_INVAL, EINVAL},
      {NLE_RANGE, ERANGE},
      {NLE_MSGSIZE, EMSGSIZE},
      {NLE_OPNOTSUPP, EOPNOTSUPP},
      {NLE_AF_NOSUPPORT, EAFNOSUPPORT},
      {NLE_OBJ_NOTFOUND, ENOENT},
      {NLE_NOATTR, ENODATA},
      {NLE_MISSING_ATTR, EINVAL},
      {NLE_AF_MISMATCH, EAFNOSUPPORT},
      {NLE_SEQ_MISMATCH, EPROTO},
      {NLE_MSG_OVERFLOW, EOVERFLOW},
      {NLE_MSG_TRUNC, EMSGSIZE},
      {NLE_NOADDR, EADDRNOTAVAIL},
      {NLE_SRCRT_NOSUPPORT, EOPNOTSUPP},
      {NLE_MSG_TOOSHORT, EBADMSG},
      {NLE_MSGTYPE_NOSUPPORT, EOPNOTSUPP},
      {NLE_OBJ_MISMATCH, EINVAL},
      {NLE_NOCACHE, ENOENT},
      {NLE_BUSY, EBUSY},
      {NLE_PROTO_MISMATCH, EPROTONOSUPPORT},
      {NLE_NOACCESS, EACCES},
      {NLE_PERM, EPERM},
      {NLE_PARSE_ERR, EBADMSG},
      {NLE_NODEV, ENODEV},
      {NLE_IMMUTABLE, EPERM},
      {NLE_DUMP_INTR, EINTR},
      {NLE_ATTRSIZE, ERANGE},
  };
  int code = nl_err < 0 ? -nl_err : nl_err;
  for (const auto& [nle, sys] : kErrnos) {
    if (nle == code) return sys;
  }
  return 0;
}

struct Failure {
  int nl_err = 0;
  KernelReply reply;
};

// Runs one libnl request; returns 0 or the failure (libnl code plus what the kernel said).
template <class F>
Failure run(F&& request) {
  t_reply = {};
  int rc = request();
  Failure f;
  if (rc < 0) {
    f.nl_err = rc;
    f.reply = std::move(t_reply);
  }
  t_reply = {};
  return f;
}

bool failed(const Failure& f) { return f.nl_err < 0; }

bool is_exists(const Failure& f) {
  return f.reply.sys_errno != 0 ? f.reply.sys_errno == EEXIST : f.nl_err == -NLE_EXIST;
}

// Describes the operation for an error message. Built only when something fails, because naming
// a link by its name costs another request.
class What {
 public:
  What(std::string text) : text_(std::move(text)) {}  // NOLINT: implicit on purpose
  What(const char* text) : text_(text) {}             // NOLINT
  template <class F, class = std::enable_if_t<std::is_invocable_r_v<std::string, const F&>>>
  What(F make) : make_(std::move(make)) {}  // NOLINT
  std::string str() const { return make_ ? make_() : text_; }

 private:
  std::string text_;
  std::function<std::string()> make_;
};

[[noreturn]] void throw_failure(const std::string& node, const What& what_, const Failure& f) {
  const std::string what = what_.str();
  if (f.reply.sys_errno != 0) {
    // The kernel's errno text is precise; the ext-ack message says which attribute failed.
    std::string message = what;
    if (!f.reply.ext_message.empty()) message += ": " + f.reply.ext_message;
    throw Error(ErrorKind::kKernel, node, message, f.reply.sys_errno);
  }
  // An error libnl raised itself, or one whose errno libnl's callback swallowed.
  int sys_errno = errno_from_nlerr(f.nl_err);
  std::string text = nl_geterror(f.nl_err);
  if (sys_errno != 0 && text == std::strerror(sys_errno)) {
    throw Error(ErrorKind::kKernel, node, what, sys_errno);
  }
  throw Error(ErrorKind::kKernel, node, what + ": " + text, sys_errno);
}

void check(const std::string& node, const What& what, const Failure& f) {
  if (failed(f)) throw_failure(node, what, f);
}

[[noreturn]] void throw_nomem(const std::string& node, const What& what) {
  throw Error(ErrorKind::kKernel, node, what.str() + ": libnl allocation failed", ENOMEM);
}

// ---------------------------------------------------------------------------------------------
// Conversions

std::string quoted(const std::string& s) { return "'" + s + "'"; }

void check_ifname(const std::string& node, const What& what, const std::string& name) {
  // libnl silently truncates names to IFNAMSIZ - 1, which would create a wrongly named link.
  if (name.size() >= IFNAMSIZ) {
    throw Error(ErrorKind::kKernel, node,
                what.str() + ": interface name " + quoted(name) + " is longer than " +
                    std::to_string(IFNAMSIZ - 1) + " bytes",
                EINVAL);
  }
}

std::string prefix_text(const IpPrefix& p) {
  return p.address.to_string() + "/" + std::to_string(p.prefix_len);
}

std::string mac_text(const std::uint8_t* bytes, std::size_t len) {
  std::string out;
  char buf[4];
  for (std::size_t i = 0; i < len; ++i) {
    std::snprintf(buf, sizeof buf, i == 0 ? "%02x" : ":%02x", bytes[i]);
    out += buf;
  }
  return out;
}

int family_of(const boost::asio::ip::address& a) { return a.is_v4() ? AF_INET : AF_INET6; }

std::vector<std::uint8_t> bytes_of(const boost::asio::ip::address& a) {
  if (a.is_v4()) {
    auto b = a.to_v4().to_bytes();
    return {b.begin(), b.end()};
  }
  auto b = a.to_v6().to_bytes();
  return {b.begin(), b.end()};
}

NlAddrPtr make_nl_addr(const std::string& node, const What& what, const boost::asio::ip::address& a,
                       int prefix_len) {
  auto bytes = bytes_of(a);
  NlAddrPtr addr(nl_addr_build(family_of(a), bytes.data(), bytes.size()));
  if (!addr) throw_nomem(node, what);
  nl_addr_set_prefixlen(addr.get(), prefix_len);
  return addr;
}

// The kernel rejects IPv4 routes whose destination has host bits set ("Invalid prefix for
// given prefix length") while IPv6 silently masks them; masking here makes both behave alike.
boost::asio::ip::address network_of(const IpPrefix& p) {
  auto bytes = bytes_of(p.address);
  std::size_t bits = p.prefix_len;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (bits >= 8) {
      bits -= 8;
    } else {
      bytes[i] &= static_cast<std::uint8_t>(0xff00u >> bits);
      bits = 0;
    }
  }
  if (p.address.is_v4()) {
    boost::asio::ip::address_v4::bytes_type b{};
    std::copy(bytes.begin(), bytes.end(), b.begin());
    return boost::asio::ip::address_v4(b);
  }
  boost::asio::ip::address_v6::bytes_type b{};
  std::copy(bytes.begin(), bytes.end(), b.begin());
  return boost::asio::ip::address_v6(b);
}

std::optional<boost::asio::ip::address> to_ip(nl_addr* a) {
  if (a == nullptr) return std::nullopt;
  const auto* data = static_cast<const std::uint8_t*>(nl_addr_get_binary_addr(a));
  unsigned len = nl_addr_get_len(a);
  if (nl_addr_get_family(a) == AF_INET && len == 4) {
    boost::asio::ip::address_v4::bytes_type b{};
    std::memcpy(b.data(), data, 4);
    return boost::asio::ip::address_v4(b);
  }
  if (nl_addr_get_family(a) == AF_INET6 && len == 16) {
    boost::asio::ip::address_v6::bytes_type b{};
    std::memcpy(b.data(), data, 16);
    return boost::asio::ip::address_v6(b);
  }
  return std::nullopt;
}

const char* family_name(int family) {
  return family == AF_INET ? "IPv4" : family == AF_INET6 ? "IPv6" : "unspec";
}

const char* route_type_name(int type) {
  static constexpr std::pair<int, const char*> kTypes[] = {
      {RTN_UNICAST, ""},
      {RTN_LOCAL, "local"},
      {RTN_BROADCAST, "broadcast"},
      {RTN_ANYCAST, "anycast"},
      {RTN_MULTICAST, "multicast"},
      {RTN_BLACKHOLE, "blackhole"},
      {RTN_UNREACHABLE, "unreachable"},
      {RTN_PROHIBIT, "prohibit"},
      {RTN_THROW, "throw"},
  };
  for (const auto& [value, name] : kTypes) {
    if (value == type) return name;
  }
  return "unknown-type";
}

std::string address_flags_text(std::uint32_t flags) {
  static constexpr std::pair<std::uint32_t, const char*> kNames[] = {
      {IFA_F_NODAD, "nodad"},           {IFA_F_TENTATIVE, "tentative"},
      {IFA_F_DADFAILED, "dadfailed"},   {IFA_F_DEPRECATED, "deprecated"},
      {IFA_F_OPTIMISTIC, "optimistic"}, {IFA_F_SECONDARY, "secondary"},
  };
  std::string out;
  for (const auto& [bit, name] : kNames) {
    if ((flags & bit) != 0) out += std::string(" ") + name;
  }
  return out;
}

template <class T, class F>
void for_each_object(nl_cache* cache, F&& f) {
  for (nl_object* obj = nl_cache_get_first(cache); obj != nullptr; obj = nl_cache_get_next(obj)) {
    f(reinterpret_cast<T*>(obj));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Socket lifetime

RouteSocket RouteSocket::open_in_current_netns(const std::string& node) {
  const std::string what = "open rtnetlink socket in " + quoted(node);
  nl_sock* sock = nl_socket_alloc();
  if (sock == nullptr) throw_nomem(node, what);
  // Owned from here on, so a failed connect does not leak.
  RouteSocket owner(sock, node);
  check(node, what, run([&] { return nl_connect(sock, NETLINK_ROUTE); }));
  // Best effort: older kernels without extended acks still report the errno.
  int one = 1;
  ::setsockopt(nl_socket_get_fd(sock), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  nl_socket_modify_err_cb(sock, NL_CB_CUSTOM, record_kernel_error, nullptr);
  return owner;
}

RouteSocket::RouteSocket(nl_sock* sock, std::string node) : sock_(sock), node_(std::move(node)) {}

RouteSocket::RouteSocket(RouteSocket&& other) noexcept
    : sock_(std::exchange(other.sock_, nullptr)), node_(std::move(other.node_)) {}

RouteSocket& RouteSocket::operator=(RouteSocket&& other) noexcept {
  if (this != &other) {
    if (sock_ != nullptr) nl_socket_free(sock_);
    sock_ = std::exchange(other.sock_, nullptr);
    node_ = std::move(other.node_);
  }
  return *this;
}

RouteSocket::~RouteSocket() {
  if (sock_ != nullptr) nl_socket_free(sock_);
}

// ---------------------------------------------------------------------------------------------
// Links

int RouteSocket::link_index(const std::string& name) {
  auto not_found = [&] {
    return Error(ErrorKind::kNotFound, node_,
                 "no interface " + quoted(name) + " in " + quoted(node_));
  };
  if (name.empty() || name.size() >= IFNAMSIZ) throw not_found();
  rtnl_link* raw = nullptr;
  Failure f = run([&] { return rtnl_link_get_kernel(sock_, 0, name.c_str(), &raw); });
  LinkPtr link(raw);
  if (failed(f)) {
    // rtnl_link_get_kernel uses its own error callback, so only libnl's code is left here.
    if (f.reply.sys_errno == ENODEV || f.nl_err == -NLE_NODEV || f.nl_err == -NLE_OBJ_NOTFOUND) {
      throw not_found();
    }
    throw_failure(node_, "look up interface " + quoted(name) + " in " + quoted(node_), f);
  }
  if (!link) throw not_found();
  return rtnl_link_get_ifindex(link.get());
}

bool RouteSocket::link_oper_up(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    throw Error(ErrorKind::kNotFound, node_,
                "no interface " + quoted(name) + " in " + quoted(node_));
  }
  rtnl_link* raw = nullptr;
  Failure f = run([&] { return rtnl_link_get_kernel(sock_, 0, name.c_str(), &raw); });
  LinkPtr link(raw);
  if (failed(f) || !link) {
    throw_failure(node_, "look up interface " + quoted(name) + " in " + quoted(node_), f);
  }
  return rtnl_link_get_operstate(link.get()) == IF_OPER_UP;
}

namespace {

// A bare RTM_SETLINK whose ifi_change names exactly the flags to touch; rtnl_link_change() would
// first need the current link object to compute the same thing.
MsgPtr link_request(int ifindex, unsigned flags, unsigned change) {
  MsgPtr msg(nlmsg_alloc_simple(RTM_SETLINK, 0));
  if (!msg) return msg;
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  ifi.ifi_flags = flags;
  ifi.ifi_change = change;
  if (nlmsg_append(msg.get(), &ifi, sizeof ifi, NLMSG_ALIGNTO) < 0) msg.reset();
  return msg;
}

// "'eth0' (3)" if the kernel knows link 3, else "link 3".
std::string link_label(nl_sock* sock, int ifindex) {
  rtnl_link* raw = nullptr;
  if (ifindex > 0 &&
      run([&] { return rtnl_link_get_kernel(sock, ifindex, nullptr, &raw); }).nl_err == 0) {
    LinkPtr link(raw);
    if (link && rtnl_link_get_name(link.get()) != nullptr) {
      return quoted(rtnl_link_get_name(link.get())) + " (" + std::to_string(ifindex) + ")";
    }
  }
  return "link " + std::to_string(ifindex);
}

}  // namespace

void RouteSocket::set_link_up(int ifindex, bool up) {
  const What what = [&] {
    return "set " + link_label(sock_, ifindex) + (up ? " up" : " down") + " in " + quoted(node_);
  };
  MsgPtr msg = link_request(ifindex, up ? IFF_UP : 0, IFF_UP);
  if (!msg) throw_nomem(node_, what);
  // nl_send_sync frees the message whatever happens.
  check(node_, what, run([&] { return nl_send_sync(sock_, msg.release()); }));
}

void RouteSocket::set_mtu(int ifindex, int mtu) {
  const What what = [&] {
    return "set mtu " + std::to_string(mtu) + " on " + link_label(sock_, ifindex) + " in " +
           quoted(node_);
  };
  MsgPtr msg = link_request(ifindex, 0, 0);
  if (!msg || nla_put_u32(msg.get(), IFLA_MTU, static_cast<std::uint32_t>(mtu)) < 0) {
    throw_nomem(node_, what);
  }
  check(node_, what, run([&] { return nl_send_sync(sock_, msg.release()); }));
}

void RouteSocket::set_master(int ifindex, int master_ifindex) {
  const What what = [&] {
    return (master_ifindex ? "enslave " + link_label(sock_, ifindex) + " to " +
                                 link_label(sock_, master_ifindex)
                           : "release " + link_label(sock_, ifindex) + " from its bridge") +
           " in " + quoted(node_);
  };
  MsgPtr msg = link_request(ifindex, 0, 0);
  if (!msg || nla_put_u32(msg.get(), IFLA_MASTER, static_cast<std::uint32_t>(master_ifindex)) < 0) {
    throw_nomem(node_, what);
  }
  check(node_, what, run([&] { return nl_send_sync(sock_, msg.release()); }));
}

void RouteSocket::set_bridge_port_learning(int ifindex, bool learning) {
  const What what = [&] {
    return std::string(learning ? "enable" : "disable") + " MAC learning on bridge port " +
           link_label(sock_, ifindex) + " in " + quoted(node_);
  };
  // AF_BRIDGE + IFLA_PROTINFO: the bridge's own port attributes, as `bridge link set` sends.
  MsgPtr msg(nlmsg_alloc_simple(RTM_SETLINK, 0));
  ifinfomsg ifi{};
  ifi.ifi_family = AF_BRIDGE;
  ifi.ifi_index = ifindex;
  nlattr* protinfo = nullptr;
  if (!msg || nlmsg_append(msg.get(), &ifi, sizeof ifi, NLMSG_ALIGNTO) < 0 ||
      (protinfo = nla_nest_start(msg.get(), IFLA_PROTINFO | NLA_F_NESTED)) == nullptr ||
      nla_put_u8(msg.get(), IFLA_BRPORT_LEARNING, learning ? 1 : 0) < 0 ||
      nla_nest_end(msg.get(), protinfo) < 0) {
    throw_nomem(node_, what);
  }
  check(node_, what, run([&] { return nl_send_sync(sock_, msg.release()); }));
}

void RouteSocket::wait_until_oper_up(const std::string& name, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (link_oper_up(name)) return;
    if (std::chrono::steady_clock::now() > deadline) {
      throw Error(ErrorKind::kTimeout, node_ + "/" + name,
                  "link " + quoted(name) + " in " + quoted(node_) + " did not come up within " +
                      std::to_string(limit.count()) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

void RouteSocket::delete_link(int ifindex) {
  const What what = [&] { return "delete " + link_label(sock_, ifindex) + " in " + quoted(node_); };
  MsgPtr msg(nlmsg_alloc_simple(RTM_DELLINK, 0));
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  if (!msg || nlmsg_append(msg.get(), &ifi, sizeof ifi, NLMSG_ALIGNTO) < 0)
    throw_nomem(node_, what);
  check(node_, what, run([&] { return nl_send_sync(sock_, msg.release()); }));
}

namespace {

void configure_new_link(const std::string& node, const What& what, rtnl_link* link,
                        const std::string& name, const std::optional<MacAddress>& mac,
                        const std::optional<int>& mtu) {
  rtnl_link_set_name(link, name.c_str());
  if (mac) {
    NlAddrPtr lladdr(nl_addr_build(AF_LLC, mac->data(), mac->size()));
    if (!lladdr) throw_nomem(node, what);
    rtnl_link_set_addr(link, lladdr.get());  // takes its own reference
  }
  if (mtu) rtnl_link_set_mtu(link, static_cast<unsigned>(*mtu));
}

// A netlink socket belongs to the namespace of the thread that creates it. Creating it on a
// short-lived thread keeps the caller's own namespace untouched (no setns there and back).
RouteSocket open_socket_in(int netns_fd, const std::string& node, const std::string& what) {
  std::optional<RouteSocket> sock;
  std::exception_ptr error;
  std::thread([&] {
    try {
      if (::setns(netns_fd, CLONE_NEWNET) != 0) {
        throw Error(ErrorKind::kKernel, node, what + ": cannot enter the peer's namespace", errno);
      }
      sock.emplace(RouteSocket::open_in_current_netns(node));
    } catch (...) {
      error = std::current_exception();
    }
  }).join();
  if (error) std::rethrow_exception(error);
  return std::move(*sock);
}

}  // namespace

int RouteSocket::add_bridge(const std::string& name, const std::optional<MacAddress>& mac,
                            bool up) {
  const std::string what = "add bridge " + quoted(name) + " in " + quoted(node_);
  check_ifname(node_, what, name);
  LinkPtr link(rtnl_link_bridge_alloc());
  if (!link) throw_nomem(node_, what);
  configure_new_link(node_, what, link.get(), name, mac, std::nullopt);
  if (up) rtnl_link_set_flags(link.get(), IFF_UP);
  check(node_, what,
        run([&] { return rtnl_link_add(sock_, link.get(), NLM_F_CREATE | NLM_F_EXCL); }));
  return link_index(name);
}

// What the kernel honours in one veth RTM_NEWLINK (verified on 6.x by route_socket_test.cpp):
//  * peer attributes IFLA_IFNAME, IFLA_ADDRESS, IFLA_MTU and IFLA_NET_NS_FD: yes, so each end
//    is born in its own namespace with its final name and MAC;
//  * IFF_UP and IFLA_MASTER on the main device: yes, applied after the pair is linked;
//  * IFF_UP on the peer: fails the whole request with ENOTCONN, because veth_newlink configures
//    the peer before the two ends know each other and veth_open refuses a lonely end;
//  * IFLA_MASTER on the peer: silently ignored.
// So the peer's "up" and "master" are applied by a second request, through a socket in the
// peer's namespace; if that fails the pair is deleted again so no half-made link remains.
int RouteSocket::add_veth(const VethEnd& local, const VethEnd& peer) {
  const std::string what =
      "add veth " + quoted(local.name) + "/" + quoted(peer.name) + " in " + quoted(node_);
  check_ifname(node_, what, local.name);
  check_ifname(node_, what, peer.name);
  LinkPtr link(rtnl_link_veth_alloc());
  if (!link) throw_nomem(node_, what);
  // get_peer hands out an extra reference; both are dropped independently.
  LinkPtr peer_link(rtnl_link_veth_get_peer(link.get()));
  if (!peer_link) throw_nomem(node_, what);

  configure_new_link(node_, what, link.get(), local.name, local.mac, local.mtu);
  configure_new_link(node_, what, peer_link.get(), peer.name, peer.mac, peer.mtu);
  if (local.netns_fd >= 0) rtnl_link_set_ns_fd(link.get(), local.netns_fd);
  if (peer.netns_fd >= 0) rtnl_link_set_ns_fd(peer_link.get(), peer.netns_fd);
  if (local.up) rtnl_link_set_flags(link.get(), IFF_UP);
  if (local.master_ifindex != 0) rtnl_link_set_master(link.get(), local.master_ifindex);

  // Opened before creating anything, so failing to enter the namespace leaves nothing behind.
  const bool finish_peer = peer.up || peer.master_ifindex != 0;
  std::optional<RouteSocket> peer_ns;
  if (finish_peer && peer.netns_fd >= 0) {
    peer_ns.emplace(open_socket_in(peer.netns_fd, node_, what));
  }

  check(node_, what,
        run([&] { return rtnl_link_add(sock_, link.get(), NLM_F_CREATE | NLM_F_EXCL); }));

  if (finish_peer) {
    const std::string peer_what = what + ": configure peer " + quoted(peer.name);
    nl_sock* sock = peer_ns ? peer_ns->sock_ : sock_;
    rtnl_link* found = nullptr;
    Failure f = run([&] { return rtnl_link_get_kernel(sock, 0, peer.name.c_str(), &found); });
    LinkPtr created(found);
    if (!failed(f) && !created) f.nl_err = -NLE_OBJ_NOTFOUND;
    if (failed(f)) throw_failure(node_, peer_what, f);
    int index = rtnl_link_get_ifindex(created.get());

    MsgPtr msg = link_request(index, peer.up ? IFF_UP : 0, IFF_UP);
    if (!msg) throw_nomem(node_, peer_what);
    if (peer.master_ifindex != 0 &&
        nla_put_u32(msg.get(), IFLA_MASTER, static_cast<std::uint32_t>(peer.master_ifindex)) < 0) {
      throw_nomem(node_, peer_what);
    }
    f = run([&] { return nl_send_sync(sock, msg.release()); });
    if (failed(f)) {
      // Deleting one end removes the pair; a failure here changes nothing for the caller.
      run([&] { return rtnl_link_delete(sock, created.get()); });
      throw_failure(node_, peer_what, f);
    }
  }
  return local.netns_fd < 0 ? link_index(local.name) : 0;
}

// ---------------------------------------------------------------------------------------------
// Addresses

namespace {

AddrPtr make_address(const std::string& node, const What& what, int ifindex,
                     const IpPrefix& prefix) {
  AddrPtr addr(rtnl_addr_alloc());
  if (!addr) throw_nomem(node, what);
  NlAddrPtr local = make_nl_addr(node, what, prefix.address, prefix.prefix_len);
  rtnl_addr_set_ifindex(addr.get(), ifindex);
  rtnl_addr_set_family(addr.get(), family_of(prefix.address));
  if (int err = rtnl_addr_set_local(addr.get(), local.get()); err < 0) {
    throw_failure(node, what, Failure{err, {}});
  }
  rtnl_addr_set_prefixlen(addr.get(), prefix.prefix_len);
  return addr;
}

}  // namespace

void RouteSocket::add_address(int ifindex, const IpPrefix& prefix, bool dad) {
  const What what = [&] {
    return "add address " + prefix_text(prefix) + " to " + link_label(sock_, ifindex) + " in " +
           quoted(node_);
  };
  AddrPtr addr = make_address(node_, what, ifindex, prefix);
  // Lab links come up with fresh, unique addresses; waiting seconds for DAD buys nothing.
  if (prefix.address.is_v6() && !dad) rtnl_addr_set_flags(addr.get(), IFA_F_NODAD);
  Failure f = run([&] { return rtnl_addr_add(sock_, addr.get(), NLM_F_EXCL); });
  if (failed(f) && !is_exists(f)) throw_failure(node_, what, f);
}

void RouteSocket::delete_address(int ifindex, const IpPrefix& prefix) {
  const What what = [&] {
    return "delete address " + prefix_text(prefix) + " from " + link_label(sock_, ifindex) +
           " in " + quoted(node_);
  };
  AddrPtr addr = make_address(node_, what, ifindex, prefix);
  check(node_, what, run([&] { return rtnl_addr_delete(sock_, addr.get(), 0); }));
}

// ---------------------------------------------------------------------------------------------
// Routes

namespace {

// "add route 10.0.0.0/8 via 10.0.1.1 dev 'eth0' (2) in 'home'"
std::string route_text(nl_sock* sock, const char* verb, const std::string& node,
                       const IpPrefix& dst, const std::optional<boost::asio::ip::address>& gateway,
                       int oif) {
  std::string s = std::string(verb) + " route " +
                  (dst.prefix_len == 0 ? std::string("default") : prefix_text(dst));
  if (gateway) s += " via " + gateway->to_string();
  if (oif != 0) s += " dev " + link_label(sock, oif);
  return s + " in " + quoted(node);
}

RoutePtr make_route(const std::string& node, const What& what, const IpPrefix& dst,
                    const std::optional<boost::asio::ip::address>& gateway, int oif) {
  if (gateway && gateway->is_v4() != dst.address.is_v4()) {
    throw Error(ErrorKind::kInvalidArgument, node,
                what.str() + ": gateway and destination are of different address families");
  }
  RoutePtr route(rtnl_route_alloc());
  if (!route) throw_nomem(node, what);
  rtnl_route_set_family(route.get(), family_of(dst.address));
  rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
  rtnl_route_set_type(route.get(), RTN_UNICAST);
  NlAddrPtr dst_addr = make_nl_addr(node, what, network_of(dst), dst.prefix_len);
  if (int err = rtnl_route_set_dst(route.get(), dst_addr.get()); err < 0) {
    throw_failure(node, what, Failure{err, {}});
  }
  if (gateway || oif != 0) {
    NexthopPtr nh(rtnl_route_nh_alloc());
    if (!nh) throw_nomem(node, what);
    if (gateway) {
      NlAddrPtr gw = make_nl_addr(node, what, *gateway, gateway->is_v4() ? 32 : 128);
      rtnl_route_nh_set_gateway(nh.get(), gw.get());  // takes its own reference
    }
    if (oif != 0) rtnl_route_nh_set_ifindex(nh.get(), oif);
    rtnl_route_add_nexthop(route.get(), nh.release());  // the route owns it now
  }
  return route;
}

}  // namespace

void RouteSocket::add_route(const IpPrefix& dst,
                            const std::optional<boost::asio::ip::address>& gateway, int oif) {
  const What what = [&] { return route_text(sock_, "add", node_, dst, gateway, oif); };
  RoutePtr route = make_route(node_, what, dst, gateway, oif);
  rtnl_route_set_protocol(route.get(), RTPROT_STATIC);
  rtnl_route_set_scope(route.get(), gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
  Failure f = run([&] { return rtnl_route_add(sock_, route.get(), NLM_F_EXCL); });
  if (failed(f) && !is_exists(f)) throw_failure(node_, what, f);
}

void RouteSocket::delete_route(const IpPrefix& dst,
                               const std::optional<boost::asio::ip::address>& gateway, int oif) {
  const What what = [&] { return route_text(sock_, "delete", node_, dst, gateway, oif); };
  RoutePtr route = make_route(node_, what, dst, gateway, oif);
  // Like `ip route del`: any protocol and scope match, so kernel-installed routes go too.
  rtnl_route_set_protocol(route.get(), RTPROT_UNSPEC);
  rtnl_route_set_scope(route.get(), RT_SCOPE_NOWHERE);
  check(node_, what, run([&] { return rtnl_route_delete(sock_, route.get(), 0); }));
}

void RouteSocket::delete_default_routes(int family) {
  const std::string what =
      std::string("delete default ") + family_name(family) + " routes in " + quoted(node_);
  nl_cache* raw = nullptr;
  check(node_, what, run([&] { return rtnl_route_alloc_cache(sock_, family, 0, &raw); }));
  CachePtr cache(raw);
  for_each_object<rtnl_route>(cache.get(), [&](rtnl_route* route) {
    if (rtnl_route_get_table(route) != RT_TABLE_MAIN) return;
    nl_addr* dst = rtnl_route_get_dst(route);
    if (dst != nullptr && nl_addr_get_prefixlen(dst) != 0) return;
    // Deleting the dumped object itself matches exactly that route (metric, nexthops).
    Failure f = run([&] { return rtnl_route_delete(sock_, route, 0); });
    // ESRCH: already gone (e.g. it went away with its link meanwhile).
    if (failed(f) && f.reply.sys_errno != ESRCH) throw_failure(node_, what, f);
  });
}

// ---------------------------------------------------------------------------------------------
// Listing

std::vector<LinkInfo> RouteSocket::list_links() {
  const std::string what = "list links in " + quoted(node_);
  nl_cache* raw = nullptr;
  check(node_, what, run([&] { return rtnl_link_alloc_cache(sock_, AF_UNSPEC, &raw); }));
  CachePtr cache(raw);
  std::vector<LinkInfo> out;
  for_each_object<rtnl_link>(cache.get(), [&](rtnl_link* link) {
    LinkInfo info;
    info.ifindex = rtnl_link_get_ifindex(link);
    if (const char* name = rtnl_link_get_name(link)) info.name = name;
    if (const char* kind = rtnl_link_get_type(link)) info.kind = kind;
    info.up = (rtnl_link_get_flags(link) & IFF_UP) != 0;
    info.carrier = rtnl_link_get_carrier(link) != 0;
    info.oper_up = rtnl_link_get_operstate(link) == IF_OPER_UP;
    info.mtu = static_cast<int>(rtnl_link_get_mtu(link));
    info.master_ifindex = rtnl_link_get_master(link);
    if (nl_addr* ll = rtnl_link_get_addr(link)) {
      info.mac = mac_text(static_cast<const std::uint8_t*>(nl_addr_get_binary_addr(ll)),
                          nl_addr_get_len(ll));
    }
    info.rx_bytes = rtnl_link_get_stat(link, RTNL_LINK_RX_BYTES);
    info.tx_bytes = rtnl_link_get_stat(link, RTNL_LINK_TX_BYTES);
    info.rx_packets = rtnl_link_get_stat(link, RTNL_LINK_RX_PACKETS);
    info.tx_packets = rtnl_link_get_stat(link, RTNL_LINK_TX_PACKETS);
    out.push_back(std::move(info));
  });
  return out;
}

std::vector<AddressInfo> RouteSocket::list_addresses() {
  const std::string what = "list addresses in " + quoted(node_);
  nl_cache* raw = nullptr;
  check(node_, what, run([&] { return rtnl_addr_alloc_cache(sock_, &raw); }));
  CachePtr cache(raw);
  std::vector<AddressInfo> out;
  for_each_object<rtnl_addr>(cache.get(), [&](rtnl_addr* addr) {
    auto ip = to_ip(rtnl_addr_get_local(addr));
    if (!ip) return;
    AddressInfo info;
    info.ifindex = rtnl_addr_get_ifindex(addr);
    info.prefix = IpPrefix{*ip, static_cast<std::uint8_t>(rtnl_addr_get_prefixlen(addr))};
    info.flags = rtnl_addr_get_flags(addr);
    out.push_back(std::move(info));
  });
  return out;
}

std::vector<RouteInfo> RouteSocket::list_routes(int family) {
  const std::string what =
      std::string("list ") + family_name(family) + " routes in " + quoted(node_);
  std::map<int, std::string> names;
  for (const LinkInfo& l : list_links()) names[l.ifindex] = l.name;
  auto dev_name = [&](int ifindex) {
    auto it = names.find(ifindex);
    return it != names.end() ? it->second : "if" + std::to_string(ifindex);
  };

  nl_cache* raw = nullptr;
  check(node_, what, run([&] { return rtnl_route_alloc_cache(sock_, family, 0, &raw); }));
  CachePtr cache(raw);
  std::vector<RouteInfo> out;
  for_each_object<rtnl_route>(cache.get(), [&](rtnl_route* route) {
    if (rtnl_route_get_table(route) != RT_TABLE_MAIN) return;
    RouteInfo info;
    info.family = rtnl_route_get_family(route);
    info.table = static_cast<int>(rtnl_route_get_table(route));
    std::string text = route_type_name(rtnl_route_get_type(route));
    if (!text.empty()) text += " ";
    nl_addr* dst = rtnl_route_get_dst(route);
    if (dst != nullptr && nl_addr_get_prefixlen(dst) != 0) {
      if (auto ip = to_ip(dst)) {
        info.dst = IpPrefix{*ip, static_cast<std::uint8_t>(nl_addr_get_prefixlen(dst))};
      }
    }
    text += info.dst ? prefix_text(*info.dst) : "default";
    int count = rtnl_route_get_nnexthops(route);
    for (int i = 0; i < count; ++i) {
      rtnl_nexthop* nh = rtnl_route_nexthop_n(route, i);
      auto gw = to_ip(rtnl_route_nh_get_gateway(nh));
      int oif = rtnl_route_nh_get_ifindex(nh);
      if (i == 0) {
        info.gateway = gw;
        info.oif = oif;
      }
      if (count > 1) text += " nexthop";
      if (gw) text += " via " + gw->to_string();
      if (oif != 0) text += " dev " + dev_name(oif);
    }
    info.text = std::move(text);
    out.push_back(std::move(info));
  });
  return out;
}

std::string RouteSocket::describe() {
  // Used for failure artifacts: a partial dump beats an exception thrown while reporting.
  std::ostringstream out;
  out << "network namespace " << quoted(node_) << "\n";
  std::vector<LinkInfo> links;
  std::vector<AddressInfo> addresses;
  try {
    links = list_links();
  } catch (const std::exception& e) {
    out << "  (" << e.what() << ")\n";
  }
  try {
    addresses = list_addresses();
  } catch (const std::exception& e) {
    out << "  (" << e.what() << ")\n";
  }
  std::map<int, std::string> names;
  for (const LinkInfo& l : links) names[l.ifindex] = l.name;

  out << "links:\n";
  for (const LinkInfo& l : links) {
    out << "  " << l.ifindex << ": " << l.name << " (" << (l.kind.empty() ? "-" : l.kind) << ") "
        << (l.up ? "UP" : "DOWN") << (l.carrier ? " carrier" : " no-carrier") << " mtu " << l.mtu;
    if (!l.mac.empty()) out << " mac " << l.mac;
    if (l.master_ifindex != 0) {
      auto it = names.find(l.master_ifindex);
      out << " master " << (it != names.end() ? it->second : "?") << " (" << l.master_ifindex
          << ")";
    }
    out << "\n      rx " << l.rx_packets << " packets " << l.rx_bytes << " bytes, tx "
        << l.tx_packets << " packets " << l.tx_bytes << " bytes\n";
    for (const AddressInfo& a : addresses) {
      if (a.ifindex != l.ifindex) continue;
      out << "      " << (a.prefix.address.is_v4() ? "inet " : "inet6 ") << prefix_text(a.prefix)
          << address_flags_text(a.flags) << "\n";
    }
  }
  for (int family : {AF_INET, AF_INET6}) {
    out << family_name(family) << " routes (main table):\n";
    try {
      for (const RouteInfo& r : list_routes(family)) out << "  " << r.text << "\n";
    } catch (const std::exception& e) {
      out << "  (" << e.what() << ")\n";
    }
  }
  out << "neighbours:\n";
  nl_cache* raw_neigh = nullptr;
  if (rtnl_neigh_alloc_cache(sock_, &raw_neigh) < 0) {
    out << "  (cannot list neighbours)\n";
  } else {
    CachePtr neigh(raw_neigh);
    for (nl_object* o = nl_cache_get_first(neigh.get()); o != nullptr; o = nl_cache_get_next(o)) {
      auto* n = reinterpret_cast<rtnl_neigh*>(o);
      char dst[64] = "?";
      char lladdr[64] = "-";
      char state[64] = "";
      if (rtnl_neigh_get_dst(n)) nl_addr2str(rtnl_neigh_get_dst(n), dst, sizeof dst);
      if (rtnl_neigh_get_lladdr(n)) nl_addr2str(rtnl_neigh_get_lladdr(n), lladdr, sizeof lladdr);
      rtnl_neigh_state2str(rtnl_neigh_get_state(n), state, sizeof state);
      auto it = names.find(rtnl_neigh_get_ifindex(n));
      out << "  " << dst << " dev " << (it != names.end() ? it->second : "?") << " lladdr "
          << lladdr << " " << state << "\n";
    }
  }
  return out.str();
}

}  // namespace patchbay::internal
