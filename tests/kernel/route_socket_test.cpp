// RouteSocket against the real kernel, inside namespaces the test creates (the test binary's
// main() has already entered a private user namespace).
#include "route_socket.hpp"

#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "netns.hpp"
#include "patchbay/error.hpp"
#include "unique_fd.hpp"
#include "worker_thread.hpp"

namespace patchbay::internal {
namespace {

using boost::asio::ip::make_address;

IpPrefix prefix(const char* address, int len) {
  return IpPrefix{make_address(address), static_cast<std::uint8_t>(len)};
}

// One network namespace: a worker thread living in it and a RouteSocket opened there.
class Namespace {
 public:
  explicit Namespace(std::string name)
      : name_(std::move(name)),
        thread_("rs-" + name_, [this] { fd_ = create_netns_on_this_thread(name_); }),
        sock_(thread_.invoke([this] { return RouteSocket::open_in_current_netns(name_); })) {}

  RouteSocket& sock() { return sock_; }
  WorkerThread& thread() { return thread_; }
  int fd() const { return fd_.get(); }

  std::optional<LinkInfo> link(const std::string& name) {
    for (LinkInfo& l : sock_.list_links()) {
      if (l.name == name) return l;
    }
    return std::nullopt;
  }

  // IFF_* flags straight from the kernel, for what LinkInfo does not carry.
  unsigned flags(const std::string& name) {
    return thread_.invoke([&] {
      nl_sock* sk = nl_socket_alloc();
      unsigned flags = 0;
      rtnl_link* link = nullptr;
      if (nl_connect(sk, NETLINK_ROUTE) == 0 &&
          rtnl_link_get_kernel(sk, 0, name.c_str(), &link) == 0) {
        flags = rtnl_link_get_flags(link);
        rtnl_link_put(link);
      }
      nl_socket_free(sk);
      return flags;
    });
  }

 private:
  std::string name_;
  UniqueFd fd_;
  WorkerThread thread_;
  RouteSocket sock_;
};

bool has_address(const std::vector<AddressInfo>& list, int ifindex, const IpPrefix& p,
                 std::uint32_t* flags = nullptr) {
  for (const AddressInfo& a : list) {
    if (a.ifindex == ifindex && a.prefix.address == p.address &&
        a.prefix.prefix_len == p.prefix_len) {
      if (flags != nullptr) *flags = a.flags;
      return true;
    }
  }
  return false;
}

std::optional<RouteInfo> find_route(const std::vector<RouteInfo>& routes, const std::string& text) {
  for (const RouteInfo& r : routes) {
    if (r.text == text) return r;
  }
  return std::nullopt;
}

std::string texts(const std::vector<RouteInfo>& routes) {
  std::string out;
  for (const RouteInfo& r : routes) out += "  " + r.text + "\n";
  return out;
}

constexpr MacAddress kMacA{0x02, 0x00, 0x00, 0x00, 0x0a, 0x01};
constexpr MacAddress kMacB{0x02, 0x00, 0x00, 0x00, 0x0b, 0x01};

class RouteSocketTest : public ::testing::Test {
 protected:
  // Connects a and b with veth "to-b" (in a) / "to-a" (in b), both up, 10.0.1.0/24 and
  // fd00:1::/64 on them. Returns the ifindex of "to-b" in a.
  int connect_a_b() {
    int ia = a_.sock().add_veth(VethEnd{"to-b", -1, kMacA, true, 0, std::nullopt},
                                VethEnd{"to-a", b_.fd(), kMacB, true, 0, std::nullopt});
    int ib = b_.sock().link_index("to-a");
    a_.sock().add_address(ia, prefix("10.0.1.1", 24));
    b_.sock().add_address(ib, prefix("10.0.1.2", 24));
    a_.sock().add_address(ia, prefix("fd00:1::1", 64));
    b_.sock().add_address(ib, prefix("fd00:1::2", 64));
    return ia;
  }

  Namespace a_{"a"};
  Namespace b_{"b"};
  Namespace c_{"c"};
};

TEST_F(RouteSocketTest, FreshNamespaceHasOnlyLoopback) {
  std::vector<LinkInfo> links = a_.sock().list_links();
  ASSERT_EQ(links.size(), 1u);
  EXPECT_EQ(links[0].name, "lo");
  EXPECT_EQ(links[0].ifindex, 1);
  EXPECT_FALSE(links[0].up);
  EXPECT_EQ(a_.sock().link_index("lo"), 1);
  EXPECT_EQ(a_.sock().node(), "a");
}

TEST_F(RouteSocketTest, UnknownLinkIsNotFound) {
  for (const std::string name : {"nope0", "a-name-longer-than-15", ""}) {
    try {
      a_.sock().link_index(name);
      ADD_FAILURE() << "no error for '" << name << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kNotFound) << e.what();
      EXPECT_NE(std::string(e.what()).find("'" + name + "'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("'a'"), std::string::npos) << e.what();
    }
  }
}

TEST_F(RouteSocketTest, VethPeerIsBornInItsNamespaceAndUp) {
  int ia = a_.sock().add_veth(VethEnd{"v-a", -1, kMacA, true, 0, 1400},
                              VethEnd{"v-b", b_.fd(), kMacB, true, 0, 1300});
  EXPECT_EQ(ia, a_.sock().link_index("v-a"));

  std::optional<LinkInfo> la = a_.link("v-a");
  std::optional<LinkInfo> lb = b_.link("v-b");
  ASSERT_TRUE(la && lb);
  EXPECT_EQ(la->kind, "veth");
  EXPECT_EQ(lb->kind, "veth");
  EXPECT_TRUE(la->up);
  EXPECT_TRUE(lb->up);
  EXPECT_TRUE(la->carrier);
  EXPECT_TRUE(lb->carrier);
  EXPECT_EQ(la->mtu, 1400);
  EXPECT_EQ(lb->mtu, 1300);
  EXPECT_EQ(la->mac, "02:00:00:00:0a:01");
  EXPECT_EQ(lb->mac, "02:00:00:00:0b:01");
  // Bringing a link up at creation must not drop the flags it was born with.
  EXPECT_NE(a_.flags("v-a") & IFF_MULTICAST, 0u);
  EXPECT_NE(b_.flags("v-b") & IFF_MULTICAST, 0u);
  EXPECT_NE(b_.flags("v-b") & IFF_UP, 0u);

  EXPECT_FALSE(a_.link("v-b"));
  EXPECT_FALSE(b_.link("v-a"));
  EXPECT_FALSE(c_.link("v-a") || c_.link("v-b"));
}

TEST_F(RouteSocketTest, VethEndsCanBothLiveElsewhere) {
  EXPECT_EQ(a_.sock().add_veth(VethEnd{"x-b", b_.fd(), std::nullopt, true, 0, std::nullopt},
                               VethEnd{"x-c", c_.fd(), std::nullopt, true, 0, std::nullopt}),
            0);
  std::optional<LinkInfo> lb = b_.link("x-b");
  std::optional<LinkInfo> lc = c_.link("x-c");
  ASSERT_TRUE(lb && lc);
  EXPECT_TRUE(lb->up && lb->carrier);
  EXPECT_TRUE(lc->up && lc->carrier);
  EXPECT_EQ(a_.sock().list_links().size(), 1u);  // just lo
}

TEST_F(RouteSocketTest, VethWithoutNamespacesStaysHereAndDown) {
  int ia = a_.sock().add_veth(VethEnd{"d0", -1, std::nullopt, false, 0, std::nullopt},
                              VethEnd{"d1", -1, std::nullopt, false, 0, std::nullopt});
  EXPECT_GT(ia, 1);
  std::optional<LinkInfo> l0 = a_.link("d0");
  std::optional<LinkInfo> l1 = a_.link("d1");
  ASSERT_TRUE(l0 && l1);
  EXPECT_FALSE(l0->up);
  EXPECT_FALSE(l1->up);
  EXPECT_EQ(l0->mtu, 1500);

  // Only the peer up: done by the follow-up request, in this namespace.
  a_.sock().add_veth(VethEnd{"e0", -1, std::nullopt, false, 0, std::nullopt},
                     VethEnd{"e1", -1, std::nullopt, true, 0, std::nullopt});
  EXPECT_FALSE(a_.link("e0")->up);
  EXPECT_TRUE(a_.link("e1")->up);
}

TEST_F(RouteSocketTest, BridgeAndEnslavementAtCreation) {
  int br = b_.sock().add_bridge("br-lan", MacAddress{0x02, 0, 0, 0, 0xbb, 0xbb}, true);
  EXPECT_EQ(br, b_.sock().link_index("br-lan"));
  std::optional<LinkInfo> lbr = b_.link("br-lan");
  ASSERT_TRUE(lbr);
  EXPECT_EQ(lbr->kind, "bridge");
  EXPECT_TRUE(lbr->up);
  EXPECT_EQ(lbr->mac, "02:00:00:00:bb:bb");
  EXPECT_NE(b_.flags("br-lan") & IFF_MULTICAST, 0u);

  // Local end created in b and enslaved there in the same request.
  a_.sock().add_veth(VethEnd{"port1", b_.fd(), std::nullopt, true, br, std::nullopt},
                     VethEnd{"up1", -1, std::nullopt, true, 0, std::nullopt});
  std::optional<LinkInfo> p1 = b_.link("port1");
  ASSERT_TRUE(p1);
  EXPECT_EQ(p1->master_ifindex, br);
  EXPECT_TRUE(p1->up);
  EXPECT_TRUE(a_.link("up1")->up);

  // Master on the peer end works too (applied by the follow-up request in b).
  a_.sock().add_veth(VethEnd{"up2", -1, std::nullopt, true, 0, std::nullopt},
                     VethEnd{"port2", b_.fd(), std::nullopt, true, br, std::nullopt});
  std::optional<LinkInfo> p2 = b_.link("port2");
  ASSERT_TRUE(p2);
  EXPECT_EQ(p2->master_ifindex, br);
  EXPECT_TRUE(p2->up);
  EXPECT_TRUE(p2->carrier);

  // A bridge born down stays down.
  int br2 = a_.sock().add_bridge("br-down", std::nullopt, false);
  EXPECT_FALSE(a_.link("br-down")->up);
  EXPECT_EQ(a_.link("br-down")->ifindex, br2);
}

TEST_F(RouteSocketTest, FailedPeerConfigurationLeavesNoLink) {
  try {
    a_.sock().add_veth(VethEnd{"h-a", -1, std::nullopt, true, 0, std::nullopt},
                       VethEnd{"h-b", b_.fd(), std::nullopt, true, 4242, std::nullopt});
    FAIL() << "enslaving to a missing master succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kKernel);
    EXPECT_NE(std::string(e.what()).find("'h-b'"), std::string::npos) << e.what();
    EXPECT_NE(e.sys_errno(), 0);
  }
  EXPECT_FALSE(a_.link("h-a"));
  EXPECT_FALSE(b_.link("h-b"));
}

TEST_F(RouteSocketTest, VethErrorsNameTheInterfaceAndNode) {
  try {
    a_.sock().add_veth(VethEnd{"this-name-is-too-long", -1, std::nullopt, true, 0, {}},
                       VethEnd{"ok", b_.fd(), std::nullopt, true, 0, {}});
    FAIL() << "long name accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kKernel);
    EXPECT_NE(std::string(e.what()).find("this-name-is-too-long"), std::string::npos) << e.what();
    EXPECT_EQ(e.culprit(), "a");
  }
  // Nothing was created, not even truncated.
  EXPECT_EQ(a_.sock().list_links().size(), 1u);
  EXPECT_EQ(b_.sock().list_links().size(), 1u);

  a_.sock().add_veth(VethEnd{"dup", -1, {}, true, 0, {}},
                     VethEnd{"dup-p", b_.fd(), {}, true, 0, {}});
  try {
    a_.sock().add_veth(VethEnd{"dup", -1, {}, true, 0, {}},
                       VethEnd{"dup-q", b_.fd(), {}, true, 0, {}});
    FAIL() << "duplicate name accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kKernel);
    EXPECT_EQ(e.sys_errno(), EEXIST);
    std::string what = e.what();
    EXPECT_NE(what.find("add veth 'dup'/'dup-q' in 'a'"), std::string::npos) << what;
  }
  EXPECT_FALSE(b_.link("dup-q"));
}

TEST_F(RouteSocketTest, LinkUpDownAndMtu) {
  int i =
      a_.sock().add_veth(VethEnd{"m0", -1, {}, false, 0, {}}, VethEnd{"m1", -1, {}, false, 0, {}});
  a_.sock().set_link_up(i, true);
  EXPECT_TRUE(a_.link("m0")->up);
  EXPECT_NE(a_.flags("m0") & IFF_MULTICAST, 0u);
  a_.sock().set_mtu(i, 9000);
  EXPECT_EQ(a_.link("m0")->mtu, 9000);
  EXPECT_TRUE(a_.link("m0")->up);
  a_.sock().set_link_up(i, false);
  EXPECT_FALSE(a_.link("m0")->up);
  EXPECT_EQ(a_.link("m0")->mtu, 9000);
  try {
    a_.sock().set_mtu(i, 10);
    FAIL() << "mtu 10 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kKernel);
    EXPECT_NE(std::string(e.what()).find("mtu 10"), std::string::npos) << e.what();
    EXPECT_NE(e.sys_errno(), 0);
  }
  EXPECT_THROW(a_.sock().set_link_up(777, true), Error);
}

TEST_F(RouteSocketTest, Addresses) {
  int ia = connect_a_b();
  std::vector<AddressInfo> list = a_.sock().list_addresses();
  std::uint32_t flags = 0;
  EXPECT_TRUE(has_address(list, ia, prefix("10.0.1.1", 24)));
  ASSERT_TRUE(has_address(list, ia, prefix("fd00:1::1", 64), &flags));
  EXPECT_NE(flags & IFA_F_NODAD, 0u);
  EXPECT_EQ(flags & IFA_F_TENTATIVE, 0u);  // usable at once

  // Adding again is fine.
  a_.sock().add_address(ia, prefix("10.0.1.1", 24));
  a_.sock().add_address(ia, prefix("fd00:1::1", 64));

  // With DAD requested the kernel runs it.
  a_.sock().add_address(ia, prefix("fd00:9::1", 64), /*dad=*/true);
  ASSERT_TRUE(has_address(a_.sock().list_addresses(), ia, prefix("fd00:9::1", 64), &flags));
  EXPECT_EQ(flags & IFA_F_NODAD, 0u);

  a_.sock().delete_address(ia, prefix("10.0.1.1", 24));
  a_.sock().delete_address(ia, prefix("fd00:1::1", 64));
  list = a_.sock().list_addresses();
  EXPECT_FALSE(has_address(list, ia, prefix("10.0.1.1", 24)));
  EXPECT_FALSE(has_address(list, ia, prefix("fd00:1::1", 64)));
  EXPECT_THROW(a_.sock().delete_address(ia, prefix("10.0.1.1", 24)), Error);

  try {
    a_.sock().add_address(4242, prefix("10.9.9.9", 24));
    FAIL() << "address on a missing link accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kKernel);
    EXPECT_NE(std::string(e.what()).find("10.9.9.9/24"), std::string::npos) << e.what();
    EXPECT_NE(e.sys_errno(), 0);
  }
}

TEST_F(RouteSocketTest, Routes) {
  int ia = connect_a_b();
  RouteSocket& s = a_.sock();
  s.add_route(prefix("10.0.2.0", 24), make_address("10.0.1.2"));
  s.add_route(prefix("10.0.3.7", 24), make_address("10.0.1.2"), ia);  // host bits dropped
  s.add_route(prefix("192.0.2.0", 24), std::nullopt, ia);
  s.add_route(prefix("0.0.0.0", 0), make_address("10.0.1.2"));
  s.add_route(prefix("fd00:2::", 64), make_address("fd00:1::2"));
  s.add_route(prefix("::", 0), make_address("fd00:1::2"), ia);
  // Already there: fine.
  s.add_route(prefix("10.0.2.0", 24), make_address("10.0.1.2"));
  s.add_route(prefix("::", 0), make_address("fd00:1::2"), ia);

  std::vector<RouteInfo> v4 = s.list_routes(AF_INET);
  EXPECT_TRUE(find_route(v4, "10.0.1.0/24 dev to-b")) << texts(v4);
  EXPECT_TRUE(find_route(v4, "10.0.3.0/24 via 10.0.1.2 dev to-b")) << texts(v4);
  EXPECT_TRUE(find_route(v4, "192.0.2.0/24 dev to-b")) << texts(v4);
  std::optional<RouteInfo> r = find_route(v4, "10.0.2.0/24 via 10.0.1.2 dev to-b");
  ASSERT_TRUE(r) << texts(v4);
  EXPECT_EQ(r->family, AF_INET);
  EXPECT_EQ(r->table, RT_TABLE_MAIN);
  ASSERT_TRUE(r->dst);
  EXPECT_EQ(r->dst->address, make_address("10.0.2.0"));
  EXPECT_EQ(r->dst->prefix_len, 24);
  EXPECT_EQ(r->gateway, make_address("10.0.1.2"));
  EXPECT_EQ(r->oif, ia);
  r = find_route(v4, "default via 10.0.1.2 dev to-b");
  ASSERT_TRUE(r) << texts(v4);
  EXPECT_FALSE(r->dst);

  std::vector<RouteInfo> v6 = s.list_routes(AF_INET6);
  EXPECT_TRUE(find_route(v6, "fd00:2::/64 via fd00:1::2 dev to-b")) << texts(v6);
  EXPECT_TRUE(find_route(v6, "default via fd00:1::2 dev to-b")) << texts(v6);
  for (const RouteInfo& route : v6) EXPECT_EQ(route.family, AF_INET6);

  s.delete_route(prefix("10.0.2.0", 24), make_address("10.0.1.2"));
  EXPECT_FALSE(find_route(s.list_routes(AF_INET), "10.0.2.0/24 via 10.0.1.2 dev to-b"));
  EXPECT_THROW(s.delete_route(prefix("10.0.2.0", 24), make_address("10.0.1.2")), Error);

  s.delete_default_routes(AF_INET);
  v4 = s.list_routes(AF_INET);
  EXPECT_FALSE(std::any_of(v4.begin(), v4.end(), [](const RouteInfo& x) { return !x.dst; }))
      << texts(v4);
  EXPECT_TRUE(find_route(v4, "192.0.2.0/24 dev to-b")) << texts(v4);
  EXPECT_TRUE(find_route(s.list_routes(AF_INET6), "default via fd00:1::2 dev to-b"));
  s.delete_default_routes(AF_INET6);
  v6 = s.list_routes(AF_INET6);
  EXPECT_FALSE(std::any_of(v6.begin(), v6.end(), [](const RouteInfo& x) { return !x.dst; }))
      << texts(v6);
  s.delete_default_routes(AF_INET6);  // nothing left: no error
}

TEST_F(RouteSocketTest, RouteErrorsCarryKernelReason) {
  connect_a_b();
  try {
    a_.sock().add_route(prefix("10.7.0.0", 16), make_address("203.0.113.1"));
    FAIL() << "unreachable gateway accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kKernel);
    EXPECT_EQ(e.culprit(), "a");
    EXPECT_EQ(e.sys_errno(), ENETUNREACH) << e.what();
    EXPECT_NE(std::string(e.what()).find("add route 10.7.0.0/16 via 203.0.113.1 in 'a'"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(a_.sock().add_route(prefix("10.8.0.0", 16), make_address("fd00::1")), Error);
}

TEST_F(RouteSocketTest, TrafficFlowsAndIsCounted) {
  int ia = connect_a_b();
  LinkInfo before = *a_.link("to-b");
  UniqueFd rx = b_.thread().invoke([] {
    UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(5555);
    addr.sin_addr.s_addr = htonl(0x0a000102);  // 10.0.1.2
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << errno;
    timeval tv{5, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
  });
  a_.thread().call([] {
    UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(5555);
    addr.sin_addr.s_addr = htonl(0x0a000102);
    const char msg[] = "hello";
    EXPECT_EQ(
        ::sendto(fd.get(), msg, sizeof msg, 0, reinterpret_cast<sockaddr*>(&addr), sizeof addr),
        static_cast<ssize_t>(sizeof msg))
        << errno;
  });
  char buf[16] = {};
  EXPECT_EQ(::recv(rx.get(), buf, sizeof buf, 0), 6) << errno;
  EXPECT_STREQ(buf, "hello");
  LinkInfo after = *a_.link("to-b");
  EXPECT_EQ(after.ifindex, ia);
  EXPECT_GT(after.tx_packets, before.tx_packets);
  EXPECT_GT(after.tx_bytes, before.tx_bytes);
  EXPECT_GT(b_.link("to-a")->rx_packets, 0u);
}

TEST_F(RouteSocketTest, DescribeShowsLinksAddressesAndRoutes) {
  int br = b_.sock().add_bridge("br-lan", std::nullopt, true);
  a_.sock().add_veth(VethEnd{"to-b", -1, kMacA, true, 0, {}},
                     VethEnd{"to-a", b_.fd(), kMacB, true, br, {}});
  int ia = a_.sock().link_index("to-b");
  a_.sock().add_address(ia, prefix("10.0.1.1", 24));
  a_.sock().add_address(ia, prefix("fd00:1::1", 64));
  a_.sock().add_route(prefix("0.0.0.0", 0), make_address("10.0.1.2"));

  std::string text = a_.sock().describe();
  for (const char* needle :
       {"'a'", "lo", "to-b", "veth", "02:00:00:00:0a:01", "10.0.1.1/24", "fd00:1::1/64", "nodad",
        "default via 10.0.1.2 dev to-b", "10.0.1.0/24 dev to-b", "IPv6"}) {
    EXPECT_NE(text.find(needle), std::string::npos) << needle << " missing in:\n" << text;
  }
  std::string tb = b_.sock().describe();
  EXPECT_NE(tb.find("master br-lan"), std::string::npos) << tb;
  EXPECT_NE(tb.find("(bridge)"), std::string::npos) << tb;
}

TEST_F(RouteSocketTest, SocketStaysInItsNamespaceAcrossThreadsAndMoves) {
  b_.sock().add_bridge("only-in-b", std::nullopt, false);
  // Used from this (test) thread, which is in neither namespace.
  RouteSocket moved = std::move(b_.sock());
  EXPECT_GT(moved.link_index("only-in-b"), 0);
  EXPECT_EQ(moved.node(), "b");
  EXPECT_THROW(a_.sock().link_index("only-in-b"), Error);
  RouteSocket other = a_.thread().invoke([] { return RouteSocket::open_in_current_netns("a2"); });
  other = std::move(moved);
  EXPECT_GT(other.link_index("only-in-b"), 0);
}

}  // namespace
}  // namespace patchbay::internal
