// NAT probes against real kernel NAT: reflectors, the RFC 5780 classification per router
// preset, and UDP hole punching. The expectations are what the kernel really does with the
// rulesets patchbay installs (conntrack plus nftables maps, src/nat_rules.cpp); comments say why.
// The hole-punching matrix over all NAT kinds is tests/lab/hole_punch_matrix_test.cpp.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <ostream>
#include <string>
#include <thread>

#include "patchbay/gtest.hpp"
#include "patchbay/nat_probe.hpp"

namespace {

using patchbay::Device;
using patchbay::NatBehavior;
using patchbay::NatFiltering;
using patchbay::NatMapping;
using patchbay::Router;
using patchbay::RouterPreset;
namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using std::chrono::milliseconds;

constexpr std::uint16_t kStunPort1 = 3478;
constexpr std::uint16_t kStunPort2 = 3479;
constexpr std::uint16_t kReflectorPort = 4000;

class NatProbeTest : public patchbay::testing::LabTest {
 protected:
  // The probe server's side: "dc" (Public) with two devices, i.e. two public addresses.
  void build_dc() {
    dc_ = lab().add_router("dc").preset(RouterPreset::Public).build();
    stun1_ = lab().add_device("stun1").iface("eth0", *dc_).build();
    stun2_ = lab().add_device("stun2").iface("eth0", *dc_).build();
  }
  Device client_behind(const Router& r, const std::string& name = "client") {
    return lab().add_device(name).iface("eth0", r).build();
  }
  // Finished threads leave the count as soon as their body returned, which is a moment after
  // the future we waited on became ready; wait for the count with a deadline.
  bool thread_count_returns_to(std::size_t expected) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (lab().thread_count() != expected) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::yield();
    }
    return true;
  }
  std::optional<Router> dc_;
  std::optional<Device> stun1_, stun2_;
};

// ---- reflectors ----

TEST_F(NatProbeTest, UdpReflectorReportsAddressAndPortAfterNat) {
  build_dc();
  Router pub = lab().add_router("pub").preset(RouterPreset::Public).build();
  Router home = lab().add_router("home").preset(RouterPreset::Home).build();
  Device direct = client_behind(pub, "direct");
  Device laptop = client_behind(home, "laptop");
  auto reflector = patchbay::UdpReflector::start(*stun1_, kReflectorPort);
  EXPECT_EQ(reflector.endpoint(), udp::endpoint(*stun1_->ip(), kReflectorPort));

  EXPECT_EQ(patchbay::observe_udp(direct, reflector.endpoint(), 45000),
            udp::endpoint(*direct.ip(), 45000));
  // Masquerade keeps a free source port: the NAT's address with the client's own port.
  EXPECT_EQ(patchbay::observe_udp(laptop, reflector.endpoint(), 45000),
            udp::endpoint(*home.uplink_ip(), 45000));
  // IPv6 is routed, never translated: the reflector sees the client's own address.
  ASSERT_TRUE(reflector.endpoint6());
  auto seen6 = patchbay::observe_udp(direct, *reflector.endpoint6());
  ASSERT_TRUE(seen6);
  EXPECT_EQ(seen6->address(), asio::ip::address(*direct.ip6()));
}

TEST_F(NatProbeTest, TcpReflectorReportsAddressAndPortAfterNat) {
  build_dc();
  Router pub = lab().add_router("pub").preset(RouterPreset::Public).build();
  Router home = lab().add_router("home").preset(RouterPreset::Home).build();
  Device direct = client_behind(pub, "direct");
  Device laptop = client_behind(home, "laptop");
  auto reflector = patchbay::TcpReflector::start(*stun1_, kReflectorPort);

  EXPECT_EQ(patchbay::observe_tcp(direct, reflector.endpoint(), 45001),
            tcp::endpoint(*direct.ip(), 45001));
  auto seen = patchbay::observe_tcp(laptop, reflector.endpoint());
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->address(), asio::ip::address(*home.uplink_ip()));
  // Several connections in a row: the reflector keeps accepting.
  EXPECT_TRUE(patchbay::observe_tcp(laptop, reflector.endpoint()));
}

TEST_F(NatProbeTest, NoReflectorMeansNoAnswerWithinTheTimeout) {
  build_dc();
  Device client = client_behind(*dc_);
  EXPECT_EQ(patchbay::observe_udp(client, {*stun1_->ip(), kReflectorPort}, 0, milliseconds(50), 2),
            std::nullopt);
  EXPECT_EQ(patchbay::observe_tcp(client, {*stun1_->ip(), kReflectorPort}, 0, milliseconds(50), 1),
            std::nullopt);
}

TEST_F(NatProbeTest, StoppedReflectorsLeaveNoThreadAndFreeTheirPorts) {
  build_dc();
  Device client = client_behind(*dc_);
  const std::size_t baseline = lab().thread_count();
  {
    auto udp_reflector = patchbay::UdpReflector::start(*stun1_, kReflectorPort);
    auto tcp_reflector = patchbay::TcpReflector::start(*stun1_, kReflectorPort);
    EXPECT_EQ(lab().thread_count(), baseline + 2) << "one thread per reflector";
    ASSERT_TRUE(patchbay::observe_tcp(client, tcp_reflector.endpoint()));
    udp_reflector.stop();
    udp_reflector.stop();  // idempotent
    // Moved-from objects own nothing; the destructor of the target stops it.
    auto moved = std::move(tcp_reflector);
  }
  // client's blocking worker started for the observe call above.
  EXPECT_TRUE(thread_count_returns_to(baseline + 1)) << lab().thread_count();

  // Both ports can be bound again at once (TIME_WAIT connections do not block the TCP port).
  auto udp_again = patchbay::UdpReflector::start(*stun1_, kReflectorPort);
  auto tcp_again = patchbay::TcpReflector::start(*stun1_, kReflectorPort);
  EXPECT_TRUE(patchbay::observe_udp(client, udp_again.endpoint()));
  EXPECT_TRUE(patchbay::observe_tcp(client, tcp_again.endpoint()));
}

TEST_F(NatProbeTest, BindFailureNamesNodeAndPort) {
  build_dc();
  auto first = patchbay::UdpReflector::start(*stun1_, kReflectorPort);
  try {
    auto second = patchbay::UdpReflector::start(*stun1_, kReflectorPort);
    FAIL() << "binding the same port twice must fail";
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.kind(), patchbay::ErrorKind::kAlreadyExists);
    EXPECT_EQ(e.culprit(), "stun1");
    EXPECT_THAT(e.what(), ::testing::HasSubstr("UDP port 4000 in 'stun1'"));
  }
  // The failed start did not disturb the first reflector.
  EXPECT_TRUE(patchbay::observe_udp(*stun2_, first.endpoint()));
}

// ---- RFC 5780 classification ----

TEST_F(NatProbeTest, PublicClientIsEndpointIndependentBothWays) {
  build_dc();
  Router pub = lab().add_router("pub").preset(RouterPreset::Public).build();
  Device client = client_behind(pub);
  auto server = patchbay::NatProbeServer::start(*stun1_, *stun2_, kStunPort1, kStunPort2);

  auto seen = patchbay::observe_udp(client, server.endpoint(0, 0));
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->address(), asio::ip::address(*client.ip()));
  // No NAT and no firewall: one "mapping" (the socket itself) and anyone may send to it.
  EXPECT_EQ(patchbay::probe_nat(client, server),
            (NatBehavior{NatMapping::EndpointIndependent, NatFiltering::EndpointIndependent}));
}

TEST_F(NatProbeTest, HomeIsEndpointIndependentMappingWithPortDependentFiltering) {
  build_dc();
  Router home = lab().add_router("home").preset(RouterPreset::Home).build();
  Device client = client_behind(home);
  auto server = patchbay::NatProbeServer::start(*stun1_, *stun2_, kStunPort1, kStunPort2);

  auto seen = patchbay::observe_udp(client, server.endpoint(0, 0));
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->address(), asio::ip::address(*home.uplink_ip()));
  // Masquerade keeps the source port while it is free, whatever the destination (EIM). Only
  // established flows come in, and conntrack flows are per remote ip:port (APDF).
  EXPECT_EQ(patchbay::probe_nat(client, server),
            (NatBehavior{NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent}));
}

TEST_F(NatProbeTest, RandomPortNatsAreSymmetric) {
  build_dc();
  // The Corporate preset's firewall lets UDP out only to port 53, so the probe could not reach
  // the server (see CorporateFirewallBlocksTheProbe); keep its NAT, relax the firewall.
  Router corp = lab()
                    .add_router("corp")
                    .preset(RouterPreset::Corporate)
                    .firewall(patchbay::Firewall::BlockInbound)
                    .build();
  Router cloud = lab().add_router("cloud").preset(RouterPreset::Cloud).build();
  auto server = patchbay::NatProbeServer::start(*stun1_, *stun2_, kStunPort1, kStunPort2);

  // NF_NAT_RANGE_PROTO_RANDOM draws a new port for every conntrack entry, and each destination
  // ip:port is a new entry: three probes, three ports (address-and-port-dependent mapping; two
  // equal ports by chance would happen about once in 64k runs). Filtering is established-only,
  // so per remote ip:port as behind Home.
  const NatBehavior symmetric{NatMapping::AddressAndPortDependent,
                              NatFiltering::AddressAndPortDependent};
  EXPECT_EQ(patchbay::probe_nat(client_behind(corp, "desk"), server), symmetric);
  EXPECT_EQ(patchbay::probe_nat(client_behind(cloud, "vm"), server), symmetric);
}

TEST_F(NatProbeTest, CorporateFirewallBlocksTheProbe) {
  build_dc();
  Router corp = lab().add_router("corp").preset(RouterPreset::Corporate).build();
  Device desk = client_behind(corp, "desk");
  auto server = patchbay::NatProbeServer::start(*stun1_, *stun2_, kStunPort1, kStunPort2);
  try {
    patchbay::probe_nat(desk, server, milliseconds(100));
    FAIL() << "UDP to port 3478 must be dropped by the Corporate firewall";
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.kind(), patchbay::ErrorKind::kTimeout);
    EXPECT_EQ(e.culprit(), "desk");
  }
}

TEST_F(NatProbeTest, FullConeIsEndpointIndependentBothWays) {
  build_dc();
  // FullCone without the Home preset's firewall, so only the NAT itself decides.
  Router fc = lab()
                  .add_router("fc")
                  .preset(RouterPreset::Home)
                  .nat(patchbay::Nat::FullCone)
                  .firewall(patchbay::Firewall::None)
                  .build();
  Device client = client_behind(fc);
  auto server = patchbay::NatProbeServer::start(*stun1_, *stun2_, kStunPort1, kStunPort2);
  // One external port per internal endpoint (EIM), and the inbound mapping takes a datagram
  // from any address and port to it (EIF): the reply from A2:p2 arrives although the client
  // only ever sent to A1:p1.
  EXPECT_EQ(patchbay::probe_nat(client, server),
            (NatBehavior{NatMapping::EndpointIndependent, NatFiltering::EndpointIndependent}));
}

TEST_F(NatProbeTest, ProbeServerStopsItsThreads) {
  build_dc();
  const std::size_t baseline = lab().thread_count();
  {
    auto server = patchbay::NatProbeServer::start(*stun1_, *stun2_, kStunPort1, kStunPort2);
    EXPECT_EQ(lab().thread_count(), baseline + 2) << "one thread per server device";
    EXPECT_EQ(server.endpoint(1, 1), udp::endpoint(*stun2_->ip(), kStunPort2));
    EXPECT_THROW(server.endpoint(2, 0), patchbay::Error);
  }
  EXPECT_TRUE(thread_count_returns_to(baseline)) << lab().thread_count();
  EXPECT_THROW(patchbay::NatProbeServer::start(*stun1_, *stun1_, kStunPort1, kStunPort2),
               patchbay::Error);
}

// ---- hole punching ----

// How the two homes reach the IX.
enum class Wiring {
  OnTheIx,           // both NATs are neighbours on the IX bridge
  BehindIspRouters,  // each NAT below a Public ISP router: a routed hop between them
};

std::string to_string(Wiring w) { return w == Wiring::OnTheIx ? "OnTheIx" : "BehindIspRouters"; }
void PrintTo(Wiring w, std::ostream* os) { *os << to_string(w); }
std::string wiring_name(const ::testing::TestParamInfo<Wiring>& info) {
  return to_string(info.param);
}

class HomeHolePunch : public NatProbeTest, public ::testing::WithParamInterface<Wiring> {};

TEST_P(HomeHolePunch, SucceedsInTheFirstTry) {
  build_dc();
  auto home = [&](const std::string& name, const std::string& isp) {
    auto builder = lab().add_router(name).preset(RouterPreset::Home);
    if (GetParam() == Wiring::BehindIspRouters) {
      builder.upstream(lab().add_router(isp).preset(RouterPreset::Public).build());
    }
    return builder.build();
  };
  Router home1 = home("home1", "isp1");
  Router home2 = home("home2", "isp2");
  Device a = client_behind(home1, "a");
  Device b = client_behind(home2, "b");
  auto rendezvous = patchbay::UdpReflector::start(*stun1_, kReflectorPort);
  const std::size_t baseline = lab().thread_count();

  // EIM on both sides: each side's punches come from the mapping the rendezvous saw. The first
  // punch to reach the other NAT before that NAT sent anything is dropped by its APDF filter
  // before conntrack keeps it; the next one is a reply of the other side's own flow and gets
  // in. No race, no priming: the first try succeeds, in either wiring.
  patchbay::HolePunchOptions options;
  options.tries = 1;
  patchbay::HolePunchResult r = patchbay::hole_punch_udp(a, b, rendezvous, options);
  EXPECT_TRUE(r.success);
  EXPECT_EQ(r.tries, 1);
  ASSERT_TRUE(r.a_reflexive && r.b_reflexive);
  EXPECT_EQ(r.a_reflexive->address(), asio::ip::address(*home1.uplink_ip()));
  EXPECT_EQ(r.b_reflexive->address(), asio::ip::address(*home2.uplink_ip()));
  // Both talk to the reflexive endpoints: the path the rendezvous saw.
  EXPECT_EQ(r.a_sees_b, r.b_reflexive);
  EXPECT_EQ(r.b_sees_a, r.a_reflexive);
  EXPECT_EQ(r.a_sends_to, r.b_reflexive);
  EXPECT_EQ(r.b_sends_to, r.a_reflexive);
  // It ended at the first success, long before the rounds ran out.
  EXPECT_LT(r.attempts, options.rounds);
  // Only the two punch threads ran, and they are gone.
  EXPECT_TRUE(thread_count_returns_to(baseline)) << lab().thread_count();
}

INSTANTIATE_TEST_SUITE_P(Wirings, HomeHolePunch,
                         ::testing::Values(Wiring::OnTheIx, Wiring::BehindIspRouters), wiring_name);

TEST_F(NatProbeTest, HolePunchBetweenHomeAndSymmetricNatFails) {
  build_dc();
  Router home = lab().add_router("home").preset(RouterPreset::Home).build();
  Router corp = lab()
                    .add_router("corp")
                    .preset(RouterPreset::Corporate)
                    .firewall(patchbay::Firewall::BlockInbound)
                    .build();
  Device a = client_behind(home, "a");
  Device b = client_behind(corp, "b");
  auto rendezvous = patchbay::UdpReflector::start(*stun1_, kReflectorPort);

  // RFC 4787 §4.1/§5: corp maps b's flow to a to a fresh random port, not the one the
  // rendezvous saw. b's datagrams come from a port home has never sent to, so home's APDF
  // drops them; a's arrive at the port the rendezvous saw, where corp's APDF drops them (b sent
  // to a from another port). Neither side hears anything, in every try.
  patchbay::HolePunchOptions options;
  options.tries = 2;
  options.rounds = 5;
  options.interval = milliseconds(20);
  const auto start = std::chrono::steady_clock::now();
  patchbay::HolePunchResult r = patchbay::hole_punch_udp(a, b, rendezvous, options);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.a_sees_b, std::nullopt);
  EXPECT_EQ(r.b_sees_a, std::nullopt);
  ASSERT_TRUE(r.a_reflexive && r.b_reflexive);
  EXPECT_EQ(r.b_reflexive->address(), asio::ip::address(*corp.uplink_ip()));
  // Nobody heard anything, so each side kept punching at the other's reflexive endpoint.
  EXPECT_EQ(r.a_sends_to, r.b_reflexive);
  EXPECT_EQ(r.b_sends_to, r.a_reflexive);
  EXPECT_EQ(r.tries, 2);
  EXPECT_EQ(r.attempts, options.rounds);
  // Each try sent all its rounds before giving up.
  EXPECT_GE(took, options.tries * options.rounds * options.interval);
}

TEST_F(NatProbeTest, HolePunchAnswersWhereThePeerWasHeard) {
  build_dc();
  Router fc = lab().add_router("fc").nat(patchbay::Nat::FullCone).build();
  Router corp = lab().add_router("corp").nat(patchbay::Nat::Corporate).build();
  Device a = client_behind(fc, "a");
  Device b = client_behind(corp, "b");
  auto rendezvous = patchbay::UdpReflector::start(*stun1_, kReflectorPort);

  // Only one direction's punches get through: corp's (APDM) come from a fresh port, which
  // FullCone (EIF) lets in; FullCone's hit corp's APDF filter. a answers to the fresh port, and
  // that answer is a reply on both NATs: b hears it from a's reflexive endpoint.
  patchbay::HolePunchResult r = patchbay::hole_punch_udp(a, b, rendezvous);
  ASSERT_TRUE(r.success);
  ASSERT_TRUE(r.a_reflexive && r.b_reflexive);
  EXPECT_TRUE(r.a_heard_punch);
  EXPECT_FALSE(r.b_heard_punch) << "b heard only a's answer";
  EXPECT_EQ(r.a_sees_b->address(), asio::ip::address(*corp.uplink_ip()));
  EXPECT_NE(r.a_sees_b->port(), r.b_reflexive->port()) << "corp's mapping towards a is new";
  EXPECT_EQ(r.a_sends_to, r.a_sees_b);
  EXPECT_EQ(r.b_sees_a, r.a_reflexive);
  EXPECT_EQ(r.b_sends_to, r.a_reflexive);
}

TEST_F(NatProbeTest, HolePunchReportsAMissingRendezvous) {
  build_dc();
  Router home = lab().add_router("home").preset(RouterPreset::Home).build();
  Device a = client_behind(home, "a");
  Device b = client_behind(*dc_, "b");
  auto rendezvous = patchbay::UdpReflector::start(*stun1_, kReflectorPort);
  rendezvous.stop();
  // Without reflexive endpoints there is nothing to punch to: no datagram goes out.
  patchbay::HolePunchResult r = patchbay::hole_punch_udp(a, b, rendezvous);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.a_reflexive, std::nullopt);
  EXPECT_EQ(r.b_reflexive, std::nullopt);
  EXPECT_EQ(r.a_sends_to, std::nullopt);
  EXPECT_EQ(r.attempts, 0);
  EXPECT_EQ(r.tries, 1);
}

}  // namespace
