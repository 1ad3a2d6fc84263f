// One test body over every ordered pair of NAT presets, with readable names:
//   NatPairs/PeersBehindNats.HolePunchFailsOnlyBetweenStrictNats/Home_x_Corporate, ...
#include <gtest/gtest.h>

#include <patchbay/gtest.hpp>
#include <patchbay/nat_matrix.hpp>
#include <patchbay/nat_probe.hpp>

namespace {

using patchbay::testing::NatKind;
using patchbay::testing::NatPair;

class PeersBehindNats : public patchbay::testing::LabTest,
                        public ::testing::WithParamInterface<NatPair> {};

TEST_P(PeersBehindNats, HolePunchFailsOnlyBetweenStrictNats) {
  auto [a, b] = GetParam();
  auto dc = lab().add_router("dc").preset(patchbay::RouterPreset::Public).build();
  auto meet = lab().add_device("meet").iface("eth0", dc).build();
  auto nat_a = a.apply(lab().add_router("nat_a")).build();  // the kind's NAT, no firewall
  auto nat_b = b.apply(lab().add_router("nat_b")).build();
  auto alice = lab().add_device("alice").iface("eth0", nat_a).build();
  auto bob = lab().add_device("bob").iface("eth0", nat_b).build();
  auto rendezvous = patchbay::UdpReflector::start(meet, 3478);

  // Strict: only the exact ip:port sent to gets in (APDF). Two strict NATs meet only if both
  // keep one external port per socket (EIM): Home with Home, never with Corporate or CloudNat.
  auto strict = [](const NatKind& k) {
    auto c = k.nat_config();
    return c && c->filtering == patchbay::NatFiltering::AddressAndPortDependent;
  };
  auto eim = [](const NatKind& k) {
    auto c = k.nat_config();
    return !c || c->mapping == patchbay::NatMapping::EndpointIndependent;
  };
  const bool expected = !(strict(a) && strict(b) && !(eim(a) && eim(b)));
  EXPECT_EQ(patchbay::hole_punch_udp(alice, bob, rendezvous).success, expected);
}

PATCHBAY_INSTANTIATE_NAT_PAIRS(NatPairs, PeersBehindNats);

}  // namespace
