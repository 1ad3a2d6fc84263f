// How the NAT engine allocates, keeps, refreshes, expires and forgets external mappings, seen
// from outside with real datagrams. Both sides are driven step by step from the test thread.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <string>

#include "patchbay/gtest.hpp"
#include "patchbay/nat_matrix.hpp"
#include "patchbay/nat_probe.hpp"
#include "udp_socket.hpp"

namespace {

using namespace std::chrono_literals;
using patchbay::Device;
using patchbay::Nat;
using patchbay::NatConfig;
using patchbay::NatFiltering;
using patchbay::NatMapping;
using patchbay::PortAssignment;
using patchbay::Router;
using patchbay::RouterPreset;
using pbtest::Endpoint;
using pbtest::mapping_seen_by;
using pbtest::UdpSocket;
using std::chrono::seconds;

constexpr std::uint16_t kServerPort = 7000;

// "dc": a public router with two servers s1 and s2 (two distinct public addresses).
class NatMappingTest : public patchbay::testing::LabTest {
 protected:
  void SetUp() override {
    LabTest::SetUp();
    dc_ = lab().add_router("dc").preset(RouterPreset::Public).build();
    s1_ = lab().add_device("s1").iface("eth0", *dc_).build();
    s2_ = lab().add_device("s2").iface("eth0", *dc_).build();
  }
  Device client(const Router& nat, const std::string& name = "client") {
    return lab().add_device(name).iface("eth0", nat).build();
  }
  Endpoint at(const Device& server, std::uint16_t port = kServerPort) {
    return Endpoint(*server.ip(), port);
  }
  Endpoint wan(const Router& nat, std::uint16_t port) { return Endpoint(*nat.uplink_ip(), port); }
  // True if a datagram sent from a fresh socket on `sender` to `to` reaches `inbox`.
  bool unsolicited_reaches(const Device& sender, const Endpoint& to, const UdpSocket& inbox,
                           std::chrono::milliseconds wait = 300ms) {
    UdpSocket fresh = UdpSocket::open_in(sender);
    fresh.send_to(to, "unsolicited");
    auto got = inbox.receive(wait);
    return got && got->payload == "unsolicited";
  }
  std::optional<Router> dc_;
  std::optional<Device> s1_, s2_;
};

NatConfig eim_eif_random(seconds udp_timeout) {
  return NatConfig{}
      .with_filtering(NatFiltering::EndpointIndependent)
      .with_ports(PortAssignment::Random)
      .with_udp_timeouts(udp_timeout, udp_timeout);
}

TEST_F(NatMappingTest, HomeKeepsTheInternalPortForEveryDestination) {
  Router home = lab().add_router("home").nat(Nat::Home).build();
  UdpSocket c = UdpSocket::open_in(client(home), 40000);
  UdpSocket srv1 = UdpSocket::open_in(*s1_, kServerPort);
  UdpSocket srv1b = UdpSocket::open_in(*s1_, kServerPort + 1);
  UdpSocket srv2 = UdpSocket::open_in(*s2_, kServerPort);
  EXPECT_EQ(mapping_seen_by(c, srv1, at(*s1_)), wan(home, 40000));
  EXPECT_EQ(mapping_seen_by(c, srv1b, at(*s1_, kServerPort + 1)), wan(home, 40000));
  EXPECT_EQ(mapping_seen_by(c, srv2, at(*s2_)), wan(home, 40000));
}

// Upstream keyed its inbound map by the pre-NAT port, so the second host overwrote the first
// one's entry and inbound traffic for the first went to the second.
TEST_F(NatMappingTest, TwoHostsWithTheSamePortGetDistinctStableMappings) {
  Router fc = lab().add_router("fc").nat(Nat::FullCone).build();
  UdpSocket c1 = UdpSocket::open_in(client(fc, "c1"), 40000);
  UdpSocket c2 = UdpSocket::open_in(client(fc, "c2"), 40000);
  UdpSocket srv1 = UdpSocket::open_in(*s1_, kServerPort);
  UdpSocket srv2 = UdpSocket::open_in(*s2_, kServerPort);

  EXPECT_EQ(mapping_seen_by(c1, srv1, at(*s1_)), wan(fc, 40000));
  auto c2_mapping = mapping_seen_by(c2, srv1, at(*s1_));
  ASSERT_TRUE(c2_mapping);
  EXPECT_NE(c2_mapping->port(), 40000);
  EXPECT_EQ(mapping_seen_by(c1, srv2, at(*s2_)), wan(fc, 40000));
  EXPECT_EQ(mapping_seen_by(c2, srv2, at(*s2_)), c2_mapping);

  // Endpoint-independent filtering: a stranger reaches each host through its own mapping.
  EXPECT_TRUE(unsolicited_reaches(*s2_, wan(fc, 40000), c1));
  EXPECT_FALSE(c2.receive(0ms)) << "c2 must not get c1's traffic";
  EXPECT_TRUE(unsolicited_reaches(*s2_, *c2_mapping, c2));
  EXPECT_FALSE(c1.receive(0ms)) << "c1 must not get c2's traffic";
}

// The kernel alone would give the second host port 40000 as well, because its 5-tuple (another
// destination) is free: two hosts behind one external port ("port overloading", forbidden by
// RFC 4787), and inbound traffic for one of them would reach the other.
TEST_F(NatMappingTest, AnExternalPortBelongsToOneHostOnly) {
  Router fc = lab().add_router("fc").nat(Nat::FullCone).build();
  UdpSocket c1 = UdpSocket::open_in(client(fc, "c1"), 40000);
  UdpSocket c2 = UdpSocket::open_in(client(fc, "c2"), 40000);
  UdpSocket srv1 = UdpSocket::open_in(*s1_, kServerPort);
  UdpSocket srv2 = UdpSocket::open_in(*s2_, kServerPort);
  EXPECT_EQ(mapping_seen_by(c1, srv1, at(*s1_)), wan(fc, 40000));
  auto c2_mapping = mapping_seen_by(c2, srv2, at(*s2_));
  ASSERT_TRUE(c2_mapping);
  EXPECT_NE(c2_mapping->port(), 40000);
}

TEST_F(NatMappingTest, SequentialPortsAreHandedOutInOrder) {
  Router seq = lab()
                   .add_router("seq")
                   .nat(NatConfig{}
                            .with_mapping(NatMapping::AddressAndPortDependent)
                            .with_ports(PortAssignment::Sequential))
                   .build();
  UdpSocket c = UdpSocket::open_in(client(seq), 40000);
  UdpSocket srv1 = UdpSocket::open_in(*s1_, kServerPort);
  UdpSocket srv1b = UdpSocket::open_in(*s1_, kServerPort + 1);
  UdpSocket srv2 = UdpSocket::open_in(*s2_, kServerPort);
  auto first = mapping_seen_by(c, srv1, at(*s1_));
  auto second = mapping_seen_by(c, srv1b, at(*s1_, kServerPort + 1));
  auto third = mapping_seen_by(c, srv2, at(*s2_));
  ASSERT_TRUE(first && second && third);
  // Every new mapping takes the counter's next port (a port predictor's dream).
  EXPECT_EQ(second->port(), first->port() + 1);
  EXPECT_EQ(third->port(), first->port() + 2);
  EXPECT_GE(first->port(), 1024);
}

TEST_F(NatMappingTest, RandomPortsStillMapEndpointIndependently) {
  Router nat = lab().add_router("nat").nat(eim_eif_random(seconds(30))).build();
  UdpSocket c = UdpSocket::open_in(client(nat), 40000);
  UdpSocket srv1 = UdpSocket::open_in(*s1_, kServerPort);
  UdpSocket srv2 = UdpSocket::open_in(*s2_, kServerPort);
  auto first = mapping_seen_by(c, srv1, at(*s1_));
  ASSERT_TRUE(first);
  // One chance in 64512 that the random port equals the internal one.
  EXPECT_NE(first->port(), 40000);
  EXPECT_EQ(mapping_seen_by(c, srv2, at(*s2_)), first) << "the mapping is reused";
}

TEST_F(NatMappingTest, AddressDependentMappingIsPerDestinationAddress) {
  Router nat =
      lab().add_router("nat").nat(NatConfig{}.with_mapping(NatMapping::AddressDependent)).build();
  UdpSocket c = UdpSocket::open_in(client(nat), 40000);
  UdpSocket srv1 = UdpSocket::open_in(*s1_, kServerPort);
  UdpSocket srv1b = UdpSocket::open_in(*s1_, kServerPort + 1);
  UdpSocket srv2 = UdpSocket::open_in(*s2_, kServerPort);
  auto to_s1 = mapping_seen_by(c, srv1, at(*s1_));
  ASSERT_TRUE(to_s1);
  EXPECT_EQ(to_s1->port(), 40000) << "the first mapping keeps the port (Preserve)";
  EXPECT_EQ(mapping_seen_by(c, srv1b, at(*s1_, kServerPort + 1)), to_s1);
  auto to_s2 = mapping_seen_by(c, srv2, at(*s2_));
  ASSERT_TRUE(to_s2);
  EXPECT_NE(to_s2->port(), to_s1->port()) << "another address, another mapping";
}

// The mapping lives `udp_stream` after the last outbound packet. Inbound datagrams (from fresh
// sockets, so each one looks up the mapping anew) show when it is gone; they do not refresh it.
TEST_F(NatMappingTest, MappingExpiresAfterTheConfiguredTimeout) {
  const seconds timeout(2);
  Router nat = lab().add_router("nat").nat(eim_eif_random(timeout)).build();
  UdpSocket c = UdpSocket::open_in(client(nat), 40000);
  UdpSocket srv1 = UdpSocket::open_in(*s1_, kServerPort);
  auto mapping = mapping_seen_by(c, srv1, at(*s1_));
  ASSERT_TRUE(mapping);
  const auto last_outbound = std::chrono::steady_clock::now();

  // Conntrack and set timers tick in jiffies and expired entries are reaped lazily: allow a
  // second beyond the timeout for the mapping to vanish.
  const auto give_up = last_outbound + timeout + seconds(1);
  std::chrono::steady_clock::duration lived{};
  for (;;) {
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "mapping still alive";
    if (!unsolicited_reaches(*s2_, *mapping, c, 100ms)) {
      lived = std::chrono::steady_clock::now() - last_outbound;
      break;
    }
  }
  EXPECT_GE(lived, timeout - 150ms) << "mapping vanished before its timeout";

  auto next = mapping_seen_by(c, srv1, at(*s1_));
  ASSERT_TRUE(next);
  EXPECT_NE(next->port(), mapping->port()) << "a new mapping, with a new random port";
}

TEST_F(NatMappingTest, OutboundTrafficRefreshesTheMapping) {
  const seconds timeout(2);
  Router nat = lab().add_router("nat").nat(eim_eif_random(timeout)).build();
  UdpSocket c = UdpSocket::open_in(client(nat), 40000);
  UdpSocket srv1 = UdpSocket::open_in(*s1_, kServerPort);
  auto mapping = mapping_seen_by(c, srv1, at(*s1_));
  ASSERT_TRUE(mapping);
  // Keep sending for well over two timeouts; every datagram is a keepalive.
  const auto until = std::chrono::steady_clock::now() + 2 * timeout + 500ms;
  while (std::chrono::steady_clock::now() < until) {
    ASSERT_EQ(mapping_seen_by(c, srv1, at(*s1_), "keepalive"), mapping);
    std::this_thread::sleep_for(timeout / 4);  // the keepalive period under test
  }
  EXPECT_TRUE(unsolicited_reaches(*s2_, *mapping, c)) << "the mapping outlived its timeout";
}

// NAT rebinding: after a flush the same socket, to the same destination, gets a new mapping.
TEST_F(NatMappingTest, FlushingNatStateRebindsFlows) {
  Router corp = lab().add_router("corp").nat(Nat::Corporate).build();
  UdpSocket c = UdpSocket::open_in(client(corp), 40000);
  UdpSocket srv1 = UdpSocket::open_in(*s1_, kServerPort);
  auto before = mapping_seen_by(c, srv1, at(*s1_));
  ASSERT_TRUE(before);
  EXPECT_EQ(mapping_seen_by(c, srv1, at(*s1_)), before) << "one flow, one mapping";
  corp.flush_nat_state();
  auto after = mapping_seen_by(c, srv1, at(*s1_));
  ASSERT_TRUE(after);
  EXPECT_NE(after->port(), before->port());
}

// Upstream's flush only ran `conntrack -F` and left the full-cone map: old mappings lived on.
TEST_F(NatMappingTest, FlushingNatStateForgetsEndpointIndependentMappings) {
  Router nat = lab().add_router("nat").nat(eim_eif_random(seconds(300))).build();
  UdpSocket c = UdpSocket::open_in(client(nat), 40000);
  UdpSocket srv1 = UdpSocket::open_in(*s1_, kServerPort);
  auto before = mapping_seen_by(c, srv1, at(*s1_));
  ASSERT_TRUE(before);
  ASSERT_TRUE(unsolicited_reaches(*s2_, *before, c));
  nat.flush_nat_state();
  EXPECT_FALSE(unsolicited_reaches(*s2_, *before, c)) << "the old mapping must be gone";
  auto after = mapping_seen_by(c, srv1, at(*s1_));
  ASSERT_TRUE(after);
  EXPECT_NE(after->port(), before->port());
}

// Conntrack timeouts are per namespace: each NAT router carries its own.
std::string read_proc(const Router& r, const std::string& key) {
  return r.run([key] {
    std::ifstream in("/proc/sys/net/netfilter/" + key);
    std::string value;
    in >> value;
    return value;
  });
}

TEST_F(NatMappingTest, RouterNamespaceCarriesTheNatTimeouts) {
  Router home = lab().add_router("home").nat(Nat::Home).build();
  Router custom =
      lab()
          .add_router("custom")
          .nat(NatConfig{}.with_udp_timeouts(seconds(7), seconds(11)).with_tcp_timeout(seconds(13)))
          .build();
  EXPECT_EQ(read_proc(home, "nf_conntrack_udp_timeout"), "30");
  EXPECT_EQ(read_proc(home, "nf_conntrack_udp_timeout_stream"), "300");
  EXPECT_EQ(read_proc(home, "nf_conntrack_tcp_timeout_established"), "7200");
  EXPECT_EQ(read_proc(custom, "nf_conntrack_udp_timeout"), "7");
  EXPECT_EQ(read_proc(custom, "nf_conntrack_udp_timeout_stream"), "11");
  EXPECT_EQ(read_proc(custom, "nf_conntrack_tcp_timeout_established"), "13");
  custom.set_nat(Nat::Corporate);
  EXPECT_EQ(read_proc(custom, "nf_conntrack_udp_timeout_stream"), "120");
  custom.set_nat(Nat::None);
  EXPECT_EQ(read_proc(custom, "nf_conntrack_udp_timeout_stream"), "120") << "kernel default";
  EXPECT_EQ(read_proc(custom, "nf_conntrack_tcp_timeout_established"), "432000");
}

TEST_F(NatMappingTest, BadTimeoutsNameTheRouterAndField) {
  try {
    (void)lab()
        .add_router("bad")
        .nat(NatConfig{}.with_udp_timeouts(seconds(0), seconds(5)))
        .build();
    FAIL() << "expected an error";
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.kind(), patchbay::ErrorKind::kInvalidArgument);
    EXPECT_THAT(e.what(), ::testing::HasSubstr("router 'bad'"));
    EXPECT_THAT(e.what(), ::testing::HasSubstr("udp = 0 s"));
  }
  EXPECT_THROW((void)lab().add_router("custom").nat(Nat::Custom).build(), patchbay::Error);
  EXPECT_THROW((void)NatConfig::preset(Nat::None), patchbay::Error);
}

// When an inbound flow's reply tuple clashes with a flow the inside opened, conntrack gives the
// inbound flow a made-up source port. Such a flow is not a mapping of ours: were it recorded, the
// made-up port would relay any stranger's datagrams to the outside host.
TEST_F(NatMappingTest, InboundFlowsAreNeverRecordedAsMappings) {
  Router nat = lab()
                   .add_router("nat")
                   .nat(NatConfig{}
                            .with_mapping(NatMapping::AddressDependent)
                            .with_filtering(NatFiltering::EndpointIndependent))
                   .build();
  UdpSocket x = UdpSocket::open_in(client(nat), 40000);
  UdpSocket srv1 = UdpSocket::open_in(*s1_, kServerPort);
  UdpSocket srv2 = UdpSocket::open_in(*s2_, kServerPort);
  auto to_s1 = mapping_seen_by(x, srv1, at(*s1_));
  auto to_s2 = mapping_seen_by(x, srv2, at(*s2_));
  ASSERT_TRUE(to_s1 && to_s2);
  ASSERT_NE(to_s1->port(), to_s2->port());

  // s2 answers to x's *other* mapping: the inbound flow's reply tuple is x's flow to s2.
  srv2.send_to(*to_s1, "cross");
  auto at_x = x.receive(2s);
  ASSERT_TRUE(at_x);
  ASSERT_EQ(at_x->from.address(), boost::asio::ip::address(*s2_->ip()));
  ASSERT_NE(at_x->from.port(), kServerPort) << "conntrack made up a source port";

  // A stranger sending to the router's address at that port must not reach s2.
  UdpSocket stranger = UdpSocket::open_in(*s1_);
  stranger.send_to(wan(nat, at_x->from.port()), "relay?");
  EXPECT_FALSE(srv2.receive(300ms));
}

// ---- runtime changes ----

TEST_F(NatMappingTest, SwitchingNatModesFlipsMappingBehaviourBothWays) {
  Router nat = lab().add_router("nat").nat(Nat::Home).build();
  Device dev = client(nat);
  UdpSocket srv1 = UdpSocket::open_in(*s1_, kServerPort);
  UdpSocket srv2 = UdpSocket::open_in(*s2_, kServerPort);
  auto same_port_twice = [&](std::uint16_t local) {
    UdpSocket c = UdpSocket::open_in(dev, local);
    auto a = mapping_seen_by(c, srv1, at(*s1_));
    auto b = mapping_seen_by(c, srv2, at(*s2_));
    EXPECT_TRUE(a && b);
    return a && b && a->port() == b->port();
  };
  EXPECT_TRUE(same_port_twice(40001));
  nat.set_nat(Nat::Corporate);
  EXPECT_FALSE(same_port_twice(40002));
  nat.set_nat(Nat::Home);
  EXPECT_TRUE(same_port_twice(40003));
}

// Upstream kept the old full-cone map across a mode change: mappings of the old mode still let
// strangers in.
TEST_F(NatMappingTest, LeavingAnOpenNatClosesItsMappings) {
  Router nat = lab().add_router("nat").nat(Nat::FullCone).build();
  UdpSocket c = UdpSocket::open_in(client(nat), 40000);
  UdpSocket srv1 = UdpSocket::open_in(*s1_, kServerPort);
  auto mapping = mapping_seen_by(c, srv1, at(*s1_));
  ASSERT_TRUE(mapping);
  ASSERT_TRUE(unsolicited_reaches(*s2_, *mapping, c));
  nat.set_nat(Nat::Home);
  EXPECT_FALSE(unsolicited_reaches(*s2_, *mapping, c));
  nat.set_nat(Nat::FullCone);
  EXPECT_FALSE(unsolicited_reaches(*s2_, *mapping, c)) << "a new table starts without mappings";
}

// ---- TCP follows the same mapping rules ----

class TcpThroughEveryNat : public NatMappingTest,
                           public ::testing::WithParamInterface<patchbay::testing::NatKind> {};

TEST_P(TcpThroughEveryNat, ObservedAddressAndMappingMatchThePreset) {
  Router nat = GetParam().apply(lab().add_router("nat")).build();
  Device dev = client(nat);
  auto r1 = patchbay::TcpReflector::start(*s1_, kServerPort);
  auto r2 = patchbay::TcpReflector::start(*s2_, kServerPort);
  auto seen1 = patchbay::observe_tcp(dev, r1.endpoint(), 41000);
  auto seen2 = patchbay::observe_tcp(dev, r2.endpoint(), 41000);
  ASSERT_TRUE(seen1 && seen2);
  if (GetParam().nat == Nat::None) {
    EXPECT_EQ(seen1->address(), boost::asio::ip::address(*dev.ip()));
    EXPECT_EQ(seen1->port(), 41000);
    return;
  }
  EXPECT_EQ(seen1->address(), boost::asio::ip::address(*nat.uplink_ip()));
  EXPECT_EQ(seen2->address(), seen1->address());
  const NatConfig config = GetParam().nat_config().value();
  if (config.mapping == NatMapping::EndpointIndependent) {
    EXPECT_EQ(seen1->port(), 41000) << "preserved";
    EXPECT_EQ(seen2->port(), seen1->port()) << "one mapping for both destinations";
  } else {
    EXPECT_NE(seen2->port(), seen1->port()) << "a mapping per destination";
  }
}

PATCHBAY_INSTANTIATE_NATS(Nats, TcpThroughEveryNat);

// ---- carrier-grade NAT ----

TEST_F(NatMappingTest, HomeBehindCgnatIsADoubleNatWithStablePorts) {
  Router isp = lab().add_router("isp").preset(RouterPreset::IspCgnat).build();
  Router home1 = lab().add_router("home1").nat(Nat::Home).upstream(isp).build();
  Router home2 = lab().add_router("home2").nat(Nat::Home).upstream(isp).build();
  const patchbay::Ipv4Net carrier = patchbay::parse_ipv4_net("100.64.0.0/10");
  EXPECT_TRUE(carrier.contains(*home1.uplink_ip())) << *home1.uplink_ip();
  UdpSocket c1 = UdpSocket::open_in(client(home1, "c1"), 40000);
  UdpSocket c2 = UdpSocket::open_in(client(home2, "c2"), 40000);
  UdpSocket srv1 = UdpSocket::open_in(*s1_, kServerPort);
  UdpSocket srv2 = UdpSocket::open_in(*s2_, kServerPort);
  auto m1 = mapping_seen_by(c1, srv1, at(*s1_));
  auto m2 = mapping_seen_by(c2, srv1, at(*s1_));
  ASSERT_TRUE(m1 && m2);
  // The outermost NAT decides what the world sees: both homes share the ISP's address.
  EXPECT_EQ(m1->address(), boost::asio::ip::address(*isp.uplink_ip()));
  EXPECT_EQ(m2->address(), m1->address());
  EXPECT_NE(m2->port(), m1->port());
  // Both layers map endpoint-independently, so the pair does too.
  EXPECT_EQ(mapping_seen_by(c1, srv2, at(*s2_)), m1);
  EXPECT_EQ(mapping_seen_by(c2, srv2, at(*s2_)), m2);
}

}  // namespace
