// Hairpinning: a LAN host reaching another LAN host through the router's public address. The
// hairpinned flow must look like outside traffic to both hosts and obey the NAT's filtering.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "patchbay/gtest.hpp"
#include "udp_socket.hpp"

namespace {

using namespace std::chrono_literals;
using patchbay::Device;
using patchbay::Nat;
using patchbay::NatConfig;
using patchbay::NatFiltering;
using patchbay::NatMapping;
using patchbay::Router;
using patchbay::RouterPreset;
using pbtest::Endpoint;
using pbtest::mapping_seen_by;
using pbtest::UdpSocket;

constexpr std::uint16_t kServerPort = 7000;

// A NAT with hosts a and b on its LAN, and a public server s that tells each host its mapping.
class HairpinTest : public patchbay::testing::LabTest {
 protected:
  void build(const std::function<Router(patchbay::RouterBuilder)>& make_nat) {
    Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
    server_ = lab().add_device("s").iface("eth0", dc).build();
    nat_ = make_nat(lab().add_router("nat"));
    a_ = lab().add_device("a").iface("eth0", *nat_).build();
    b_ = lab().add_device("b").iface("eth0", *nat_).build();
    srv_.emplace(UdpSocket::open_in(*server_, kServerPort));
  }
  Endpoint mapping_of(const UdpSocket& host) {
    auto m = mapping_seen_by(host, *srv_, Endpoint(*server_->ip(), kServerPort));
    EXPECT_TRUE(m);
    return m.value_or(Endpoint());
  }
  std::optional<Router> nat_;
  std::optional<Device> server_, a_, b_;
  std::optional<UdpSocket> srv_;
};

TEST_F(HairpinTest, FullConeHairpinsBothWays) {
  build([](patchbay::RouterBuilder rb) { return rb.nat(Nat::FullCone).build(); });
  UdpSocket a = UdpSocket::open_in(*a_, 40000);
  UdpSocket b = UdpSocket::open_in(*b_, 41000);
  const Endpoint a_public = mapping_of(a);
  const Endpoint b_public = mapping_of(b);

  b.send_to(a_public, "hello a");
  auto at_a = a.receive(2s);
  ASSERT_TRUE(at_a) << "b's datagram to a's public mapping must reach a";
  // a sees b as the outside world would: the router's address with b's own mapping.
  EXPECT_EQ(at_a->from, b_public);
  a.send_to(at_a->from, "hello b");
  auto at_b = b.receive(2s);
  ASSERT_TRUE(at_b);
  EXPECT_EQ(at_b->from, a_public);
  EXPECT_EQ(at_b->payload, "hello b");
}

TEST_F(HairpinTest, WithoutHairpinningThePublicAddressLeadsNowhere) {
  build([](patchbay::RouterBuilder rb) { return rb.nat(Nat::Home).build(); });
  UdpSocket a = UdpSocket::open_in(*a_, 40000);
  UdpSocket b = UdpSocket::open_in(*b_, 41000);
  const Endpoint a_public = mapping_of(a);
  // a has even sent to b's public mapping, so no filter stands in the way: the router simply
  // does not translate LAN traffic addressed to its public address.
  a.send_to(mapping_of(b), "primer");
  b.send_to(a_public, "hello a");
  EXPECT_FALSE(a.receive(500ms));
}

// Hairpinning is NAT loopback: the LAN is trusted, so the filtering of outside traffic does
// not apply and b reaches a's mapping at once, even though a never sent to b (APDF).
TEST_F(HairpinTest, HairpinReachesMappingsWhateverTheFiltering) {
  build([](patchbay::RouterBuilder rb) {
    return rb.nat(NatConfig{}.with_hairpin()).build();  // EIM + APDF + hairpin
  });
  UdpSocket a = UdpSocket::open_in(*a_, 40000);
  UdpSocket b = UdpSocket::open_in(*b_, 41000);
  const Endpoint a_public = mapping_of(a);
  const Endpoint b_public = mapping_of(b);
  b.send_to(a_public, "hello a");
  auto at_a = a.receive(2s);
  ASSERT_TRUE(at_a);
  EXPECT_EQ(at_a->from, b_public);
  a.send_to(at_a->from, "back");
  auto at_b = b.receive(2s);
  ASSERT_TRUE(at_b);
  EXPECT_EQ(at_b->from, a_public);
  // Outside traffic still meets APDF: a stranger's datagram to a's mapping is dropped.
  UdpSocket stranger = UdpSocket::open_in(*server_, 9999);
  stranger.send_to(a_public, "stranger");
  EXPECT_FALSE(a.receive(300ms));
}

// Upstream redirected hairpinned packets of symmetric NATs to the router itself. Ours
// translates them like any flow to the mapping.
TEST_F(HairpinTest, SymmetricNatHairpinsToo) {
  build([](patchbay::RouterBuilder rb) {
    return rb
        .nat(NatConfig{}
                 .with_mapping(NatMapping::AddressAndPortDependent)
                 .with_filtering(NatFiltering::EndpointIndependent)
                 .with_ports(patchbay::PortAssignment::Random)
                 .with_hairpin())
        .build();
  });
  UdpSocket a = UdpSocket::open_in(*a_, 40000);
  UdpSocket b = UdpSocket::open_in(*b_, 41000);
  const Endpoint a_public = mapping_of(a);
  b.send_to(a_public, "hello a");
  auto at_a = a.receive(2s);
  ASSERT_TRUE(at_a);
  EXPECT_EQ(at_a->from.address(), boost::asio::ip::address(*nat_->uplink_ip()));
  a.send_to(at_a->from, "back");
  auto at_b = b.receive(2s);
  ASSERT_TRUE(at_b);
  EXPECT_EQ(at_b->from, a_public);
}

// Upstream masqueraded every flow its full-cone map translated, so an outside peer's datagram
// arrived from the router's LAN address and answers to it went nowhere useful.
TEST_F(HairpinTest, UnsolicitedInboundKeepsTheRealSourceAddress) {
  build([](patchbay::RouterBuilder rb) { return rb.nat(Nat::FullCone).build(); });
  UdpSocket a = UdpSocket::open_in(*a_, 40000);
  const Endpoint a_public = mapping_of(a);
  UdpSocket stranger = UdpSocket::open_in(*server_, 9999);
  stranger.send_to(a_public, "hi");
  auto at_a = a.receive(2s);
  ASSERT_TRUE(at_a);
  EXPECT_EQ(at_a->from, Endpoint(*server_->ip(), 9999));
  a.send_to(at_a->from, "hi back");
  auto reply = stranger.receive(2s);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->from, a_public);
}

}  // namespace
