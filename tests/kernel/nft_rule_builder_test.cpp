// RuleBuilder rendering, checked on libnftnl's text form of the rule (the same "[ expr ]" lines
// `nft --debug=netlink` prints). No kernel involved: these pin the exact expressions, registers
// and byte layouts, which the kernel would accept in many wrong variants too (a byte-swapped
// port or a misplaced register loads fine and only shows as wrong traffic).
#include <netinet/in.h>  // before the linux/ headers, which would define in_addr again

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <libnftnl/rule.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "nft_rule.hpp"

namespace patchbay::internal {
namespace {

using ::testing::ElementsAre;
using K = NftField::Kind;
using Reg = RuleBuilder::Reg;

// The expression lines of a rule built by `fn` in a table of `family`, without the leading
// "family table chain" line and the indentation.
std::vector<std::string> render(std::uint16_t family, const RuleFn& fn) {
  std::unique_ptr<nftnl_rule, void (*)(const nftnl_rule*)> rule(nftnl_rule_alloc(),
                                                                nftnl_rule_free);
  nftnl_rule_set_u32(rule.get(), NFTNL_RULE_FAMILY, family);
  nftnl_rule_set_str(rule.get(), NFTNL_RULE_TABLE, "t");
  nftnl_rule_set_str(rule.get(), NFTNL_RULE_CHAIN, "c");
  RuleBuilder builder(rule.get(), family);
  fn(builder);
  std::vector<char> buf(16 * 1024);
  const int n = nftnl_rule_snprintf(buf.data(), buf.size(), rule.get(), NFTNL_OUTPUT_DEFAULT, 0);
  EXPECT_GT(n, 0);
  EXPECT_LT(static_cast<std::size_t>(n), buf.size());
  std::vector<std::string> lines;
  std::istringstream in(std::string(buf.data(), static_cast<std::size_t>(n)));
  std::string line;
  std::getline(in, line);  // "ip t c"
  while (std::getline(in, line)) {
    const auto begin = line.find_first_not_of(' ');
    if (begin != std::string::npos) lines.push_back(line.substr(begin));
  }
  return lines;
}

// Register numbers as libnftnl prints them for a rule not yet through the kernel: 32-bit
// register ids (the kernel's dump shows NFT_REG32_00 as "reg 1" and NFT_REG32_04 as "reg 2").
std::string reg(unsigned r) { return "reg " + std::to_string(r); }
const std::string kKey0 = reg(NFT_REG32_00);
const std::string kData0 = reg(NFT_REG32_04);

TEST(NftRuleBuilderTest, InterfaceNamesAreComparedAsZeroPaddedIfnamsizBuffers) {
  auto lines = render(NFPROTO_IPV4, [](RuleBuilder& r) { r.iifname("wan").oifname("br-lan"); });
  // All 16 bytes are compared, so "wan" cannot match "wan0" (a prefix compare would).
  EXPECT_THAT(lines, ElementsAre("[ meta load iifname => reg 1 ]",
                                 "[ cmp eq reg 1 0x006e6177 0x00000000 0x00000000 0x00000000 ]",
                                 "[ meta load oifname => reg 1 ]",
                                 "[ cmp eq reg 1 0x6c2d7262 0x00006e61 0x00000000 0x00000000 ]"));
}

TEST(NftRuleBuilderTest, InterfaceNameOfFifteenBytesKeepsItsTerminatingZero) {
  auto lines = render(NFPROTO_IPV4, [](RuleBuilder& r) { r.iifname("abcdefghijklmno"); });
  ASSERT_EQ(lines.size(), 2u);
  // "abcd" "efgh" "ijkl" "mno\0" as little-endian words.
  EXPECT_EQ(lines[1], "[ cmp eq reg 1 0x64636261 0x68676665 0x6c6b6a69 0x006f6e6d ]");
}

TEST(NftRuleBuilderTest, CtStateAndStatusAreAnyBitTests) {
  auto lines = render(NFPROTO_IPV4, [](RuleBuilder& r) {
    r.ct_state(kCtEstablished | kCtRelated).ct_status(IPS_DST_NAT).ct_direction_original().drop();
  });
  EXPECT_THAT(lines, ElementsAre("[ ct load state => reg 1 ]",
                                 "[ bitwise reg 1 = ( reg 1 & 0x00000006 ) ^ 0x00000000 ]",
                                 "[ cmp neq reg 1 0x00000000 ]",  //
                                 "[ ct load status => reg 1 ]",
                                 "[ bitwise reg 1 = ( reg 1 & 0x00000020 ) ^ 0x00000000 ]",
                                 "[ cmp neq reg 1 0x00000000 ]",  //
                                 "[ ct load direction => reg 1 ]",
                                 "[ cmp eq reg 1 0x00000000 ]",  //
                                 "[ immediate reg 0 drop ]"));
}

TEST(NftRuleBuilderTest, CtStateBitsAreTheKernelsStateBits) {
  EXPECT_EQ(kCtInvalid, 1u);
  EXPECT_EQ(kCtEstablished, static_cast<std::uint32_t>(NF_CT_STATE_BIT(IP_CT_ESTABLISHED)));
  EXPECT_EQ(kCtRelated, static_cast<std::uint32_t>(NF_CT_STATE_BIT(IP_CT_RELATED)));
  EXPECT_EQ(kCtNew, static_cast<std::uint32_t>(NF_CT_STATE_BIT(IP_CT_NEW)));
}

TEST(NftRuleBuilderTest, PortRangeIsTwoNetworkOrderComparisonsAndASinglePortOne) {
  auto lines = render(NFPROTO_INET, [](RuleBuilder& r) {
    r.nfproto(NFPROTO_IPV4).l4proto(IPPROTO_TCP).dport_range(1000, 2000).dport_range(443, 443);
  });
  // 1000 = 0x03e8 and 2000 = 0x07d0 in network byte order; 443 = 0x01bb.
  EXPECT_THAT(lines, ElementsAre("[ meta load nfproto => reg 1 ]", "[ cmp eq reg 1 0x00000002 ]",
                                 "[ meta load l4proto => reg 1 ]", "[ cmp eq reg 1 0x00000006 ]",
                                 "[ payload load 2b @ transport header + 2 => reg 1 ]",
                                 "[ cmp gte reg 1 0x0000e803 ]", "[ cmp lte reg 1 0x0000d007 ]",
                                 "[ payload load 2b @ transport header + 2 => reg 1 ]",
                                 "[ cmp eq reg 1 0x0000bb01 ]"));
}

TEST(NftRuleBuilderTest, ByteAlignedPrefixLoadsOnlyThePrefixBytes) {
  auto lines = render(NFPROTO_IPV4, [](RuleBuilder& r) { r.daddr_in({10, 1, 2, 0}, 24); });
  EXPECT_THAT(lines, ElementsAre("[ payload load 3b @ network header + 16 => reg 1 ]",
                                 "[ cmp eq reg 1 0x0002010a ]"));
}

TEST(NftRuleBuilderTest, UnalignedPrefixMasksItsLastByteAndIgnoresHostBitsOfTheInput) {
  // 198.18.0.0/12 is the network 198.16.0.0/12: the host bits of the second byte are dropped
  // from the compared value, or the rule would never match.
  auto lines = render(NFPROTO_INET, [](RuleBuilder& r) { r.saddr_in({198, 18, 0, 0}, 12); });
  EXPECT_THAT(lines, ElementsAre("[ meta load nfproto => reg 1 ]", "[ cmp eq reg 1 0x00000002 ]",
                                 "[ payload load 2b @ network header + 12 => reg 1 ]",
                                 "[ bitwise reg 1 = ( reg 1 & 0x0000f0ff ) ^ 0x00000000 ]",
                                 "[ cmp eq reg 1 0x000010c6 ]"));
}

TEST(NftRuleBuilderTest, Ipv6PrefixInInetTableChecksFamilyAndMasksAcrossWords) {
  const std::vector<std::uint8_t> net = {0x20, 0x01, 0x0d, 0xb8, 0xff, 0, 0, 0,
                                         0,    0,    0,    0,    0,    0, 0, 0};
  auto lines = render(NFPROTO_INET, [&](RuleBuilder& r) { r.daddr_in(net, 33); });
  EXPECT_THAT(lines, ElementsAre("[ meta load nfproto => reg 1 ]", "[ cmp eq reg 1 0x0000000a ]",
                                 "[ payload load 5b @ network header + 24 => reg 1 ]",
                                 "[ bitwise reg 1 = ( reg 1 & 0xffffffff 0x00000080 ) ^ 0x00000000 "
                                 "0x00000000 ]",
                                 "[ cmp eq reg 1 0xb80d0120 0x00000080 ]"));
}

TEST(NftRuleBuilderTest, ZeroLengthPrefixOnlyChecksTheFamily) {
  EXPECT_THAT(render(NFPROTO_INET,
                     [](RuleBuilder& r) {
                       r.saddr_in({0, 0, 0, 0}, 0);
                     }),
              ElementsAre("[ meta load nfproto => reg 1 ]", "[ cmp eq reg 1 0x00000002 ]"));
  // In an ip table the family is given: a /0 matches everything and emits nothing.
  EXPECT_TRUE(render(NFPROTO_IPV4, [](RuleBuilder& r) { r.saddr_in({0, 0, 0, 0}, 0); }).empty());
}

TEST(NftRuleBuilderTest, ConcatenatedKeyAndDataFillConsecutive32BitRegisters) {
  auto lines = render(NFPROTO_IPV4, [](RuleBuilder& r) {
    r.load(Reg::kKey, {NftField::of(K::kL4Proto), NftField::of(K::kIpSaddr),
                       NftField::of(K::kThSport), NftField::of(K::kIpDaddr)})
        .load(Reg::kData, {NftField::of(K::kCtReplyDaddr), NftField::of(K::kCtReplyProtoDst)})
        .update_set("out_map", /*with_data=*/true, 300000);
  });
  // Each component takes whole 32-bit registers (the 1-byte protocol and 2-byte ports are
  // padded), exactly like nft's concatenations, so nft can decode the elements.
  EXPECT_THAT(lines,
              ElementsAre("[ meta load l4proto => " + reg(NFT_REG32_00) + " ]",
                          "[ payload load 4b @ network header + 12 => " + reg(NFT_REG32_01) + " ]",
                          "[ payload load 2b @ transport header + 0 => " + reg(NFT_REG32_02) + " ]",
                          "[ payload load 4b @ network header + 16 => " + reg(NFT_REG32_03) + " ]",
                          "[ ct load dst_ip => " + reg(NFT_REG32_04) + " , dir reply ]",
                          "[ ct load proto_dst => " + reg(NFT_REG32_05) + " , dir reply ]",
                          "[ dynset update reg_key " + std::to_string(NFT_REG32_00) +
                              " set out_map sreg_data " + std::to_string(NFT_REG32_04) +
                              " timeout 300000ms ]"));
}

TEST(NftRuleBuilderTest, ConntrackFieldsLoadTheRequestedDirection) {
  auto lines = render(NFPROTO_IPV4, [](RuleBuilder& r) {
    r.load(Reg::kKey, {NftField::of(K::kCtOrigSaddr), NftField::of(K::kCtOrigProtoSrc),
                       NftField::of(K::kCtOrigDaddr), NftField::of(K::kThDport)});
  });
  EXPECT_THAT(
      lines,
      ElementsAre("[ ct load src_ip => " + kKey0 + " , dir original ]",
                  "[ ct load proto_src => " + reg(NFT_REG32_01) + " , dir original ]",
                  "[ ct load dst_ip => " + reg(NFT_REG32_02) + " , dir original ]",
                  "[ payload load 2b @ transport header + 2 => " + reg(NFT_REG32_03) + " ]"));
}

TEST(NftRuleBuilderTest, Ipv6AddressesTakeFourRegistersAndNatReadsThePortAfterThem) {
  auto lines = render(NFPROTO_IPV6, [](RuleBuilder& r) {
    r.load(Reg::kKey,
           {NftField::of(K::kL4Proto), NftField::of(K::kIpSaddr), NftField::of(K::kThSport)})
        .map_lookup("m")
        .nat(/*source=*/true, Reg::kKey, /*with_port=*/true);
  });
  EXPECT_THAT(lines,
              ElementsAre("[ meta load l4proto => " + kKey0 + " ]",
                          "[ payload load 16b @ network header + 8 => " + reg(NFT_REG32_01) + " ]",
                          "[ payload load 2b @ transport header + 0 => " + reg(NFT_REG32_05) + " ]",
                          "[ lookup " + kKey0 + " set m d" + kKey0 + " ]",
                          "[ nat snat ip6 addr_min " + kKey0 + " proto_min " + reg(NFT_REG32_04) +
                              " flags 0x2 ]"));
}

TEST(NftRuleBuilderTest, SetMembershipLoadsTheKeyAndLooksItUpWithoutData) {
  auto lines = render(NFPROTO_IPV4, [](RuleBuilder& r) {
    r.in_set("in_map", {NftField::of(K::kL4Proto), NftField::of(K::kThSport)}).accept();
  });
  EXPECT_THAT(lines,
              ElementsAre("[ meta load l4proto => " + kKey0 + " ]",
                          "[ payload load 2b @ transport header + 0 => " + reg(NFT_REG32_01) + " ]",
                          "[ lookup " + kKey0 + " set in_map ]", "[ immediate reg 0 accept ]"));
}

TEST(NftRuleBuilderTest, SetUpdateWithoutDataHasNoDataRegister) {
  auto lines = render(NFPROTO_IPV4,
                      [](RuleBuilder& r) { r.update_set("peers", /*with_data=*/false, 1500); });
  EXPECT_THAT(lines, ElementsAre("[ dynset update reg_key " + std::to_string(NFT_REG32_00) +
                                 " set peers timeout 1500ms ]"));
}

TEST(NftRuleBuilderTest, SequentialPortConvertsTheCounterToNetworkOrderNextToTheAddress) {
  auto lines = render(NFPROTO_IPV4, [](RuleBuilder& r) {
    r.load(Reg::kKey, {NftField::constant({203, 0, 113, 2})})
        .sequential_port(64512, 1024)
        .nat(/*source=*/true, Reg::kKey, /*with_port=*/true);
  });
  // numgen leaves a host-order u32; the byteorder step turns its low 16 bits into the
  // network-order port NAT reads from the register after the address.
  EXPECT_THAT(lines, ElementsAre("[ immediate " + kKey0 + " 0x027100cb ]",
                                 "[ numgen " + reg(NFT_REG32_01) + " = inc mod 64512 offset 1024 ]",
                                 "[ byteorder " + reg(NFT_REG32_01) + " = hton(" +
                                     reg(NFT_REG32_01) + ", 2, 2) ]",
                                 "[ nat snat ip addr_min " + kKey0 + " proto_min " +
                                     reg(NFT_REG32_01) + " flags 0x2 ]"));
}

TEST(NftRuleBuilderTest, NatWithoutPortHasNoPortRegisterAndKeepsGivenFlags) {
  EXPECT_THAT(
      render(NFPROTO_IPV4,
             [](RuleBuilder& r) { r.nat(/*source=*/false, Reg::kData, /*with_port=*/false); }),
      ElementsAre("[ nat dnat ip addr_min " + kData0 + " ]"));
  EXPECT_THAT(render(NFPROTO_IPV4,
                     [](RuleBuilder& r) {
                       r.nat(/*source=*/true, Reg::kKey, /*with_port=*/false,
                             NF_NAT_RANGE_PROTO_RANDOM);
                     }),
              ElementsAre("[ nat snat ip addr_min " + kKey0 + " flags 0x4 ]"));
}

TEST(NftRuleBuilderTest, NatWithPortAddsProtoSpecifiedToTheGivenFlags) {
  auto lines = render(NFPROTO_IPV4, [](RuleBuilder& r) {
    r.nat(/*source=*/true, Reg::kData, /*with_port=*/true, NF_NAT_RANGE_PROTO_RANDOM);
  });
  EXPECT_THAT(lines, ElementsAre("[ nat snat ip addr_min " + kData0 + " proto_min " +
                                 reg(NFT_REG32_05) + " flags 0x6 ]"));
}

TEST(NftRuleBuilderTest, NatPrefixMapsTheKeyToDataRangeAsNetmap) {
  auto lines = render(NFPROTO_IPV6, [](RuleBuilder& r) { r.nat_prefix(/*source=*/true); });
  ASSERT_EQ(static_cast<unsigned>(NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_NETMAP), 0x41u);
  EXPECT_THAT(lines, ElementsAre("[ nat snat ip6 addr_min " + kKey0 + " addr_max " + kData0 +
                                 " flags 0x41 ]"));
  EXPECT_THAT(
      render(NFPROTO_IPV6, [](RuleBuilder& r) { r.nat_prefix(/*source=*/false); }),
      ElementsAre("[ nat dnat ip6 addr_min " + kKey0 + " addr_max " + kData0 + " flags 0x41 ]"));
}

TEST(NftRuleBuilderTest, MasqueradeCarriesFlagsOnlyWhenGiven) {
  auto lines = render(NFPROTO_IPV4, [](RuleBuilder& r) {
    r.masquerade();
    r.masquerade(NF_NAT_RANGE_PROTO_RANDOM);
  });
  EXPECT_THAT(lines, ElementsAre("[ masq ]", "[ masq flags 0x4 ]"));
}

TEST(NftRuleBuilderTest, ConcatTypeAndLengthFollowNftsEncoding) {
  using T = NftType;
  // nft's datatype ids: inet_proto 12, ipv4_addr 7, ipv6_addr 8, inet_service 13; each part of a
  // concatenation shifts the type left by 6 bits (TYPE_BITS).
  EXPECT_EQ(nft_concat_type({T::kIpv4Addr}), 7u);
  EXPECT_EQ(nft_concat_type({T::kInetProto, T::kIpv4Addr, T::kInetService}),
            (12u << 12) | (7u << 6) | 13u);
  EXPECT_EQ(nft_concat_type({T::kIpv6Addr, T::kInetService}), (8u << 6) | 13u);
  EXPECT_EQ(nft_concat_len({T::kInetProto, T::kIpv4Addr, T::kInetService}), 12u);
  EXPECT_EQ(nft_concat_len({T::kInetProto, T::kIpv4Addr, T::kInetService, T::kIpv4Addr}), 16u);
  EXPECT_EQ(nft_concat_len({T::kIpv6Addr, T::kInetService}), 20u);
  EXPECT_EQ(nft_concat_len({T::kInetProto, T::kInetService}), 8u);
}

}  // namespace
}  // namespace patchbay::internal
