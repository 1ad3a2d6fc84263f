#include "address_plan.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <set>
#include <string>
#include <vector>

#include "patchbay/error.hpp"

namespace patchbay::internal {
namespace {

Ipv4Address v4(const char* text) { return boost::asio::ip::make_address_v4(text); }
Ipv6Address v6(const char* text) { return boost::asio::ip::make_address_v6(text); }

// Runs `fn`, expects an Error of kind kInvalidArgument whose message contains `phrase`, and
// returns it for further checks.
template <typename Fn>
Error expect_invalid(Fn&& fn, const std::string& phrase) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
    return e;
  }
  ADD_FAILURE() << "expected Error containing '" << phrase << "'";
  return Error(ErrorKind::kInvalidArgument, "", "");
}

TEST(AddressPlan, IxPrefixesAndGatewaysMatchThePlan) {
  EXPECT_EQ(AddressPlan::ix_v4().to_string(), "198.18.0.0/24");
  EXPECT_EQ(AddressPlan::ix_v6().to_string(), "2001:db8::/64");
  EXPECT_EQ(AddressPlan::ix_gateway_v4(), v4("198.18.0.1"));
  EXPECT_EQ(AddressPlan::ix_gateway_v6(), v6("2001:db8::1"));
}

TEST(AddressPlan, IxV4RoutersStartAtDotTenAndStopAt254) {
  AddressPlan plan;
  EXPECT_EQ(plan.next_ix_v4(), v4("198.18.0.10"));
  EXPECT_EQ(plan.next_ix_v4(), v4("198.18.0.11"));
  Ipv4Address last;
  for (int i = 12; i <= 254; ++i) last = plan.next_ix_v4();
  EXPECT_EQ(last, v4("198.18.0.254"));
  expect_invalid([&] { plan.next_ix_v4(); }, "IX IPv4 address pool exhausted");
  // Exhaustion is sticky: a retry must not wrap around to an address already in use.
  expect_invalid([&] { plan.next_ix_v4(); }, "IX IPv4 address pool exhausted");
}

TEST(AddressPlan, IxV6RoutersCountInHexFromColonColon10) {
  AddressPlan plan;
  EXPECT_EQ(plan.next_ix_v6(), v6("2001:db8::10"));
  EXPECT_EQ(plan.next_ix_v6(), v6("2001:db8::11"));
  for (int i = 0x12; i <= 0x1f; ++i) plan.next_ix_v6();
  EXPECT_EQ(plan.next_ix_v6(), v6("2001:db8::20"));
}

TEST(AddressPlan, IxV6PoolEndsAtFffe) {
  AddressPlan plan;
  Ipv6Address last;
  for (int i = 0x10; i <= 0xfffe; ++i) last = plan.next_ix_v6();
  EXPECT_EQ(last, v6("2001:db8::fffe"));
  expect_invalid([&] { plan.next_ix_v6(); }, "IX IPv6 address pool exhausted");
}

TEST(AddressPlan, PublicV4LansFill198Dot18ThenMoveTo198Dot19) {
  AddressPlan plan;
  EXPECT_EQ(plan.next_lan_v4(LanPool::Public).to_string(), "198.18.1.0/24");
  for (int i = 2; i <= 14; ++i) plan.next_lan_v4(LanPool::Public);
  EXPECT_EQ(plan.next_lan_v4(LanPool::Public).to_string(), "198.18.15.0/24");
  EXPECT_EQ(plan.next_lan_v4(LanPool::Public).to_string(), "198.19.0.0/24");
  EXPECT_EQ(plan.next_lan_v4(LanPool::Public).to_string(), "198.19.1.0/24");
}

TEST(AddressPlan, PublicV4LansNeverEnterTheRegionRange) {
  AddressPlan plan;
  // 198.18.16.0 and everything above it in 198.18.0.0/16 belongs to regions.
  Ipv4Net benchmark_low{v4("198.18.0.0"), 16};
  std::set<std::string> seen;
  for (int i = 0; i < 15 + 256; ++i) {
    Ipv4Net net = plan.next_lan_v4(LanPool::Public);
    EXPECT_EQ(net.prefix_len, 24);
    if (benchmark_low.contains(net.address)) {
      EXPECT_LT(net.address.to_bytes()[2], 16) << net.to_string();
    }
    EXPECT_FALSE(AddressPlan::ix_v4().contains(net.address)) << net.to_string();
    EXPECT_TRUE(seen.insert(net.to_string()).second) << "duplicate " << net.to_string();
  }
  EXPECT_TRUE(seen.count("198.19.255.0/24"));
  expect_invalid([&] { plan.next_lan_v4(LanPool::Public); }, "public IPv4 subnet pool exhausted");
}

TEST(AddressPlan, PrivateV4LansStartAt10Dot0Dot1) {
  AddressPlan plan;
  EXPECT_EQ(plan.next_lan_v4(LanPool::Private).to_string(), "10.0.1.0/24");
  EXPECT_EQ(plan.next_lan_v4(LanPool::Private).to_string(), "10.0.2.0/24");
}

TEST(AddressPlan, PrivateV4LansCarryIntoTheSecondOctet) {
  AddressPlan plan;
  Ipv4Net net;
  for (int i = 1; i <= 255; ++i) net = plan.next_lan_v4(LanPool::Private);
  EXPECT_EQ(net.to_string(), "10.0.255.0/24");
  EXPECT_EQ(plan.next_lan_v4(LanPool::Private).to_string(), "10.1.0.0/24");
  EXPECT_EQ(plan.next_lan_v4(LanPool::Private).to_string(), "10.1.1.0/24");
}

TEST(AddressPlan, PrivateLansNeverWrapAround) {
  AddressPlan plan;
  std::set<std::uint32_t> seen;
  Ipv4Net ten{v4("10.0.0.0"), 8};
  Ipv4Net last;
  for (std::uint32_t i = 1; i < (1u << 16); ++i) {
    last = plan.next_lan_v4(LanPool::Private);
    ASSERT_TRUE(ten.contains(last.address)) << last.to_string();
    ASSERT_NE(last.address, v4("10.0.0.0"));
    ASSERT_TRUE(seen.insert(last.address.to_uint()).second) << "duplicate " << last.to_string();
  }
  EXPECT_EQ(last.to_string(), "10.255.255.0/24");
  expect_invalid([&] { plan.next_lan_v4(LanPool::Private); }, "private IPv4 subnet pool exhausted");
  expect_invalid([&] { plan.next_lan_v4(LanPool::Private); }, "private IPv4 subnet pool exhausted");
}

TEST(AddressPlan, CarrierV4LansStayInsideRfc6598SharedSpace) {
  AddressPlan plan;
  EXPECT_EQ(plan.next_lan_v4(LanPool::Carrier).to_string(), "100.64.1.0/24");
  EXPECT_EQ(plan.next_lan_v4(LanPool::Carrier).to_string(), "100.64.2.0/24");
  Ipv4Net shared{v4("100.64.0.0"), 10};
  Ipv4Net last;
  for (std::uint32_t i = 3; i < (1u << 14); ++i) {
    last = plan.next_lan_v4(LanPool::Carrier);
    ASSERT_TRUE(shared.contains(last.address)) << last.to_string();
  }
  EXPECT_EQ(last.to_string(), "100.127.255.0/24");
  expect_invalid([&] { plan.next_lan_v4(LanPool::Carrier); }, "carrier IPv4 subnet pool exhausted");
}

TEST(AddressPlan, V4PoolsAreIndependent) {
  AddressPlan plan;
  EXPECT_EQ(plan.next_lan_v4(LanPool::Private).to_string(), "10.0.1.0/24");
  EXPECT_EQ(plan.next_lan_v4(LanPool::Public).to_string(), "198.18.1.0/24");
  EXPECT_EQ(plan.next_lan_v4(LanPool::Carrier).to_string(), "100.64.1.0/24");
  EXPECT_EQ(plan.next_lan_v4(LanPool::Private).to_string(), "10.0.2.0/24");
}

TEST(AddressPlan, PublicV6LansUseTheDocumentationPrefix) {
  AddressPlan plan;
  EXPECT_EQ(plan.next_lan_v6(LanPool::Public).to_string(), "2001:db8:1:1::/64");
  EXPECT_EQ(plan.next_lan_v6(LanPool::Public).to_string(), "2001:db8:1:2::/64");
  for (int i = 3; i <= 0xf; ++i) plan.next_lan_v6(LanPool::Public);
  EXPECT_EQ(plan.next_lan_v6(LanPool::Public).to_string(), "2001:db8:1:10::/64");
}

TEST(AddressPlan, PrivateAndCarrierV6LansShareOneUlaCounter) {
  AddressPlan plan;
  EXPECT_EQ(plan.next_lan_v6(LanPool::Private).to_string(), "fd10:0:0:1::/64");
  EXPECT_EQ(plan.next_lan_v6(LanPool::Carrier).to_string(), "fd10:0:0:2::/64");
  EXPECT_EQ(plan.next_lan_v6(LanPool::Public).to_string(), "2001:db8:1:1::/64");
  EXPECT_EQ(plan.next_lan_v6(LanPool::Private).to_string(), "fd10:0:0:3::/64");
}

TEST(AddressPlan, V6LanPoolsEndAfterGroupFfff) {
  AddressPlan plan;
  Ipv6Net last_public, last_private;
  for (int i = 1; i <= 0xffff; ++i) {
    last_public = plan.next_lan_v6(LanPool::Public);
    last_private = plan.next_lan_v6(LanPool::Private);
  }
  EXPECT_EQ(last_public.to_string(), "2001:db8:1:ffff::/64");
  EXPECT_EQ(last_private.to_string(), "fd10:0:0:ffff::/64");
  expect_invalid([&] { plan.next_lan_v6(LanPool::Public); }, "public IPv6 subnet pool exhausted");
  expect_invalid([&] { plan.next_lan_v6(LanPool::Private); }, "private IPv6 subnet pool exhausted");
  expect_invalid([&] { plan.next_lan_v6(LanPool::Carrier); }, "private IPv6 subnet pool exhausted");
}

TEST(AddressPlan, CopiesAllocateIndependently) {
  // Builds allocate on a copy and commit only on success.
  AddressPlan committed;
  committed.next_lan_v4(LanPool::Private);
  AddressPlan draft = committed;
  EXPECT_EQ(draft.next_lan_v4(LanPool::Private).to_string(), "10.0.2.0/24");
  EXPECT_EQ(draft.next_ix_v4(), v4("198.18.0.10"));
  EXPECT_EQ(committed.next_lan_v4(LanPool::Private).to_string(), "10.0.2.0/24");
  EXPECT_EQ(committed.next_ix_v4(), v4("198.18.0.10"));
}

TEST(AddressPlan, Nptv6PrefixesComeFromTheirOwnPoolInOrder) {
  AddressPlan plan;
  EXPECT_EQ(AddressPlan::nptv6_pool().to_string(), "2001:db8:ff00::/48");
  EXPECT_EQ(plan.next_nptv6().to_string(), "2001:db8:ff00:1::/64");
  EXPECT_EQ(plan.next_nptv6().to_string(), "2001:db8:ff00:2::/64");
  // LAN allocations do not move the NPTv6 counter, nor the other way round.
  EXPECT_EQ(plan.next_lan_v6(LanPool::Private).to_string(), "fd10:0:0:1::/64");
  EXPECT_EQ(plan.next_nptv6().to_string(), "2001:db8:ff00:3::/64");
}

TEST(AddressPlan, Nptv6PoolIsDisjointFromEveryOtherV6Pool) {
  // Upstream derived the outside prefix from the uplink address, which collided with ULA LANs
  // (sub-router uplinks are fd10:0:0:N::x). Check the pool against the first and last prefix
  // of every v6 pool, and the IX.
  const Ipv6Net pool = AddressPlan::nptv6_pool();
  AddressPlan plan;
  std::vector<Ipv6Net> others = {AddressPlan::ix_v6()};
  Ipv6Net last_public, last_private;
  for (int i = 1; i <= 0xffff; ++i) {
    last_public = plan.next_lan_v6(LanPool::Public);
    last_private = plan.next_lan_v6(LanPool::Private);
    if (i == 1) {
      others.push_back(last_public);
      others.push_back(last_private);
    }
  }
  others.push_back(last_public);
  others.push_back(last_private);
  for (const Ipv6Net& other : others) {
    EXPECT_FALSE(pool.contains(other.address)) << other.to_string();
    EXPECT_FALSE(other.contains(pool.address)) << other.to_string();
  }
}

TEST(AddressPlan, ReleasedNptv6PrefixesAreReusedLowestFirst) {
  AddressPlan plan;
  const Ipv6Net a = plan.next_nptv6();
  const Ipv6Net b = plan.next_nptv6();
  const Ipv6Net c = plan.next_nptv6();
  plan.release_nptv6(c);
  plan.release_nptv6(a);
  EXPECT_EQ(plan.next_nptv6(), a);
  EXPECT_EQ(plan.next_nptv6(), c);
  EXPECT_EQ(plan.next_nptv6().to_string(), "2001:db8:ff00:4::/64");
  EXPECT_NE(a, b);
}

TEST(AddressPlan, ReleasingForeignOrUnallocatedNptv6PrefixesChangesNothing) {
  AddressPlan plan;
  plan.release_nptv6(Ipv6Net{v6("fd10:0:0:1::"), 64});       // not from the pool
  plan.release_nptv6(Ipv6Net{v6("2001:db8:ff00:7::"), 64});  // never handed out
  plan.release_nptv6(Ipv6Net{v6("2001:db8:ff00::"), 64});    // subnet 0 is never used
  plan.release_nptv6(Ipv6Net{v6("2001:db8:ff00:1::"), 48});  // not one of its /64s
  EXPECT_EQ(plan.next_nptv6().to_string(), "2001:db8:ff00:1::/64");
  EXPECT_EQ(plan.next_nptv6().to_string(), "2001:db8:ff00:2::/64");
}

TEST(AddressPlan, Nptv6PoolEndsAfterGroupFfffAndRefillsOnRelease) {
  AddressPlan plan;
  Ipv6Net last;
  for (int i = 1; i <= 0xffff; ++i) last = plan.next_nptv6();
  EXPECT_EQ(last.to_string(), "2001:db8:ff00:ffff::/64");
  expect_invalid([&] { plan.next_nptv6(); }, "NPTv6 prefix pool exhausted");
  plan.release_nptv6(Ipv6Net{v6("2001:db8:ff00:1234::"), 64});
  EXPECT_EQ(plan.next_nptv6().to_string(), "2001:db8:ff00:1234::/64");
  expect_invalid([&] { plan.next_nptv6(); }, "NPTv6 prefix pool exhausted");
}

TEST(AddressPlan, Nptv6AllocationsOnACopyLeaveTheOriginalAlone) {
  // A failed build or runtime change drops its copy: nothing leaks into the lab's plan.
  AddressPlan committed;
  committed.next_nptv6();
  AddressPlan draft = committed;
  EXPECT_EQ(draft.next_nptv6().to_string(), "2001:db8:ff00:2::/64");
  EXPECT_EQ(committed.next_nptv6().to_string(), "2001:db8:ff00:2::/64");
}

TEST(LanHosts, GatewayIsFirstHostAndHostsFollowFromOffsetTwo) {
  LanHosts hosts("lan", Ipv4Net{v4("10.0.1.0"), 24});
  EXPECT_EQ(hosts.gateway_v4(), v4("10.0.1.1"));
  EXPECT_EQ(hosts.next_v4(), v4("10.0.1.2"));
  EXPECT_EQ(hosts.next_v4(), v4("10.0.1.3"));
}

TEST(LanHosts, SlashTwentyFourEndsBeforeBroadcast) {
  LanHosts hosts("lan", Ipv4Net{v4("10.0.1.0"), 24});
  Ipv4Address last;
  for (int i = 2; i <= 254; ++i) last = hosts.next_v4();
  EXPECT_EQ(last, v4("10.0.1.254"));
  Error e = expect_invalid([&] { hosts.next_v4(); }, "switch 'lan' host pool exhausted");
  EXPECT_EQ(e.culprit(), "lan");
}

TEST(LanHosts, SlashTwentyEightYieldsThirteenHosts) {
  LanHosts hosts("small", Ipv4Net{v4("10.0.7.16"), 28});
  EXPECT_EQ(hosts.gateway_v4(), v4("10.0.7.17"));
  EXPECT_EQ(hosts.next_v4(), v4("10.0.7.18"));
  Ipv4Address last;
  for (int i = 3; i <= 14; ++i) last = hosts.next_v4();
  EXPECT_EQ(last, v4("10.0.7.30"));
  expect_invalid([&] { hosts.next_v4(); }, "switch 'small' host pool exhausted");
}

TEST(LanHosts, SlashThirtyHasGatewayAndOneHost) {
  LanHosts hosts("p2p", Ipv4Net{v4("10.9.9.4"), 30});
  EXPECT_EQ(hosts.gateway_v4(), v4("10.9.9.5"));
  EXPECT_EQ(hosts.next_v4(), v4("10.9.9.6"));
  expect_invalid([&] { hosts.next_v4(); }, "switch 'p2p' host pool exhausted");
}

TEST(LanHosts, SlashSixteenUsesDotZeroAndDot255InsideThePrefix) {
  // Only the network and broadcast addresses of the whole /16 are special; x.y.0.255 and
  // x.y.1.0 are ordinary hosts.
  LanHosts hosts("big", Ipv4Net{v4("10.1.0.0"), 16}, 255);
  EXPECT_EQ(hosts.gateway_v4(), v4("10.1.0.1"));
  EXPECT_EQ(hosts.next_v4(), v4("10.1.0.255"));
  EXPECT_EQ(hosts.next_v4(), v4("10.1.1.0"));
  EXPECT_EQ(hosts.next_v4(), v4("10.1.1.1"));
}

TEST(LanHosts, SlashSixteenEndsAtLastUsableAddress) {
  LanHosts hosts("big", Ipv4Net{v4("10.1.0.0"), 16}, 65533);
  EXPECT_EQ(hosts.next_v4(), v4("10.1.255.253"));
  EXPECT_EQ(hosts.next_v4(), v4("10.1.255.254"));
  expect_invalid([&] { hosts.next_v4(); }, "switch 'big' host pool exhausted");
}

TEST(LanHosts, SlashEightWorks) {
  LanHosts hosts("huge", Ipv4Net{v4("10.0.0.0"), 8});
  EXPECT_EQ(hosts.gateway_v4(), v4("10.0.0.1"));
  EXPECT_EQ(hosts.next_v4(), v4("10.0.0.2"));
  LanHosts tail("huge", Ipv4Net{v4("10.0.0.0"), 8}, (1u << 24) - 2);
  EXPECT_EQ(tail.next_v4(), v4("10.255.255.254"));
  expect_invalid([&] { tail.next_v4(); }, "switch 'huge' host pool exhausted");
}

TEST(LanHosts, FirstOffsetSkipsReservedLowAddresses) {
  // The IX hands routers addresses from .10.
  LanHosts hosts("ix", AddressPlan::ix_v4(), 10);
  EXPECT_EQ(hosts.gateway_v4(), v4("198.18.0.1"));
  EXPECT_EQ(hosts.next_v4(), v4("198.18.0.10"));
}

TEST(LanHosts, FirstOffsetZeroNeverHandsOutTheNetworkAddress) {
  LanHosts hosts("lan", Ipv4Net{v4("10.0.1.0"), 24}, 0);
  EXPECT_EQ(hosts.next_v4(), v4("10.0.1.1"));
}

TEST(LanHosts, FirstOffsetPastTheEndIsImmediatelyExhausted) {
  LanHosts hosts("lan", Ipv4Net{v4("10.0.1.0"), 24}, 255);
  expect_invalid([&] { hosts.next_v4(); }, "switch 'lan' host pool exhausted");
}

TEST(LanHosts, HostBitsInThePrefixAreIgnored) {
  LanHosts hosts("lan", Ipv4Net{v4("10.0.1.77"), 24});
  EXPECT_EQ(hosts.gateway_v4(), v4("10.0.1.1"));
  EXPECT_EQ(hosts.next_v4(), v4("10.0.1.2"));
}

TEST(LanHosts, PrefixesWithoutRoomForHostsAreRejected) {
  Error e31 = expect_invalid(
      [] {
        LanHosts("tiny", Ipv4Net{v4("10.0.0.0"), 31});
      },
      "switch 'tiny'");
  EXPECT_EQ(e31.culprit(), "tiny");
  expect_invalid([] { LanHosts("tiny", Ipv4Net{v4("10.0.0.0"), 32}); }, "switch 'tiny'");
  expect_invalid([] { LanHosts("tiny", Ipv6Net{v6("fd10::"), 127}); }, "switch 'tiny'");
}

TEST(LanHosts, V6GatewayIsColonColonOneAndHostsCountInHex) {
  LanHosts hosts("lan", Ipv6Net{v6("fd10:0:0:1::"), 64});
  EXPECT_EQ(hosts.gateway_v6(), v6("fd10:0:0:1::1"));
  EXPECT_EQ(hosts.next_v6(), v6("fd10:0:0:1::2"));
  for (int i = 3; i <= 0xf; ++i) hosts.next_v6();
  EXPECT_EQ(hosts.next_v6(), v6("fd10:0:0:1::10"));
}

TEST(LanHosts, V6HostsStopAtColonColonFffe) {
  LanHosts hosts("lan6", Ipv6Net{v6("2001:db8:1:1::"), 64}, 0xfffd);
  EXPECT_EQ(hosts.next_v6(), v6("2001:db8:1:1::fffd"));
  EXPECT_EQ(hosts.next_v6(), v6("2001:db8:1:1::fffe"));
  Error e = expect_invalid([&] { hosts.next_v6(); }, "switch 'lan6' v6 host pool exhausted");
  EXPECT_EQ(e.culprit(), "lan6");
}

TEST(LanHosts, SmallV6PrefixesExcludeTheirLastAddress) {
  LanHosts hosts("lan6", Ipv6Net{v6("fd10::100"), 120});
  EXPECT_EQ(hosts.gateway_v6(), v6("fd10::101"));
  LanHosts tail("lan6", Ipv6Net{v6("fd10::100"), 120}, 0xfe);
  EXPECT_EQ(tail.next_v6(), v6("fd10::1fe"));
  expect_invalid([&] { tail.next_v6(); }, "switch 'lan6' v6 host pool exhausted");
}

TEST(LanHosts, ShortV6PrefixesAddHostsAtTheBottom) {
  LanHosts hosts("lan6", Ipv6Net{v6("fd10:0:0:1:2:3:4:5"), 48});
  EXPECT_EQ(hosts.gateway_v6(), v6("fd10::1"));
  EXPECT_EQ(hosts.next_v6(), v6("fd10::2"));
}

TEST(LanHosts, OtherFamilyIsAlwaysExhausted) {
  LanHosts v4_only("sw4", Ipv4Net{v4("10.0.1.0"), 24});
  expect_invalid([&] { v4_only.next_v6(); }, "switch 'sw4' v6 host pool exhausted");
  EXPECT_TRUE(v4_only.gateway_v6().is_unspecified());
  LanHosts v6_only("sw6", Ipv6Net{v6("fd10:0:0:1::"), 64});
  expect_invalid([&] { v6_only.next_v4(); }, "switch 'sw6' host pool exhausted");
  EXPECT_TRUE(v6_only.gateway_v4().is_unspecified());
}

TEST(Mix64, MatchesSplitMix64ReferenceValues) {
  // First outputs of the reference SplitMix64 generator seeded with 0 (state advances by the
  // golden gamma, so output n is mix64(n * gamma)).
  EXPECT_EQ(mix64(0), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(mix64(0x9e3779b97f4a7c15ULL), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(mix64(0x3c6ef372fe94f82aULL), 0x06c45d188009454fULL);
}

TEST(Mix64, IsDeterministicAndSpreadsNeighbours) {
  EXPECT_EQ(mix64(42), mix64(42));
  EXPECT_NE(mix64(1), mix64(2));
  EXPECT_GE(std::popcount(mix64(1) ^ mix64(2)), 16);
}

TEST(DeterministicLinkLocal, IsFe80SlashSixtyFourWithUniversalLocalBitSet) {
  for (std::uint64_t id = 0; id < 64; ++id) {
    Ipv6Address a = deterministic_link_local(id, id * 7, id * 13);
    EXPECT_TRUE(a.is_link_local()) << a;
    auto bytes = a.to_bytes();
    EXPECT_EQ(bytes[0], 0xfe);
    EXPECT_EQ(bytes[1], 0x80);
    for (int i = 2; i < 8; ++i) EXPECT_EQ(bytes[i], 0) << a;
    EXPECT_EQ(bytes[8] & 0x02, 0x02) << a;
  }
}

TEST(DeterministicLinkLocal, IsStableAndDistinguishesEveryInput) {
  EXPECT_EQ(deterministic_link_local(1, 2, 3), deterministic_link_local(1, 2, 3));
  EXPECT_NE(deterministic_link_local(1, 2, 3), deterministic_link_local(1, 2, 4));
  EXPECT_NE(deterministic_link_local(1, 2, 3), deterministic_link_local(2, 1, 3));
  EXPECT_NE(deterministic_link_local(1), deterministic_link_local(2));
  EXPECT_EQ(deterministic_link_local(5), deterministic_link_local(5, 0, 0));
  std::set<std::string> seen;
  for (std::uint64_t a = 0; a < 32; ++a) {
    for (std::uint64_t b = 0; b < 32; ++b) {
      EXPECT_TRUE(seen.insert(deterministic_link_local(a, b).to_string()).second);
    }
  }
}

TEST(DeterministicMac, IsLocallyAdministeredUnicastWithRoleInSecondByte) {
  for (std::uint64_t id = 0; id < 64; ++id) {
    auto mac = deterministic_mac(id, 0xab);
    EXPECT_EQ(mac[0], 0x02);
    EXPECT_EQ(mac[1], 0xab);
  }
}

TEST(DeterministicMac, IsStableAndDependsOnIdAndRole) {
  EXPECT_EQ(deterministic_mac(7, 1), deterministic_mac(7, 1));
  EXPECT_NE(deterministic_mac(7, 1), deterministic_mac(8, 1));
  EXPECT_NE(deterministic_mac(7, 1), deterministic_mac(7, 2));
  std::set<std::string> seen;
  for (std::uint64_t id = 0; id < 1000; ++id) {
    EXPECT_TRUE(seen.insert(format_mac(deterministic_mac(id, 0))).second);
  }
}

TEST(FormatMac, IsLowercaseColonSeparatedWithLeadingZeros) {
  EXPECT_EQ(format_mac({0x02, 0xab, 0x0c, 0xde, 0x00, 0xff}), "02:ab:0c:de:00:ff");
  std::string text = format_mac(deterministic_mac(123, 4));
  EXPECT_EQ(text.size(), 17u);
  EXPECT_EQ(text.substr(0, 6), "02:04:");
}

}  // namespace
}  // namespace patchbay::internal
