#include "patchbay/presets.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace patchbay {
namespace {

void expect_values(RouterPreset preset, Nat nat, Firewall firewall, IpSupport ip, LanPool pool) {
  PresetValues v = preset_values(preset);
  EXPECT_EQ(v.nat, nat) << to_string(preset);
  EXPECT_EQ(v.firewall, firewall) << to_string(preset);
  EXPECT_EQ(v.ip_support, ip) << to_string(preset);
  EXPECT_EQ(v.pool, pool) << to_string(preset);
}

TEST(Presets, HomeIsNattedFirewalledDualStackOnPrivateLan) {
  expect_values(RouterPreset::Home, Nat::Home, Firewall::BlockInbound, IpSupport::DualStack,
                LanPool::Private);
}

TEST(Presets, PublicRoutesDualStackPublicAddressesUnfiltered) {
  expect_values(RouterPreset::Public, Nat::None, Firewall::None, IpSupport::DualStack,
                LanPool::Public);
}

TEST(Presets, PublicV4IsPublicWithoutIpv6) {
  expect_values(RouterPreset::PublicV4, Nat::None, Firewall::None, IpSupport::V4Only,
                LanPool::Public);
}

TEST(Presets, IspCgnatUsesCarrierGradeNatOnSharedAddressSpace) {
  expect_values(RouterPreset::IspCgnat, Nat::Cgnat, Firewall::None, IpSupport::DualStack,
                LanPool::Carrier);
}

TEST(Presets, CorporateHasCorporateNatAndFirewall) {
  expect_values(RouterPreset::Corporate, Nat::Corporate, Firewall::Corporate, IpSupport::DualStack,
                LanPool::Private);
}

TEST(Presets, HotelIsV4OnlyBehindCaptivePortal) {
  expect_values(RouterPreset::Hotel, Nat::Corporate, Firewall::CaptivePortal, IpSupport::V4Only,
                LanPool::Private);
}

TEST(Presets, CloudUsesCloudNatWithoutFirewall) {
  expect_values(RouterPreset::Cloud, Nat::CloudNat, Firewall::None, IpSupport::DualStack,
                LanPool::Private);
}

TEST(Presets, AllPresetsListsEveryPresetOnceWithDistinctNames) {
  std::set<std::string> names;
  for (RouterPreset p : kAllRouterPresets) names.insert(std::string(to_string(p)));
  EXPECT_EQ(names, (std::set<std::string>{"Home", "Public", "PublicV4", "IspCgnat", "Corporate",
                                          "Hotel", "Cloud"}));
}

TEST(PresetNames, RouterPresetNamesMatchTheEnumerators) {
  EXPECT_EQ(to_string(RouterPreset::Home), "Home");
  EXPECT_EQ(to_string(RouterPreset::Public), "Public");
  EXPECT_EQ(to_string(RouterPreset::PublicV4), "PublicV4");
  EXPECT_EQ(to_string(RouterPreset::IspCgnat), "IspCgnat");
  EXPECT_EQ(to_string(RouterPreset::Corporate), "Corporate");
  EXPECT_EQ(to_string(RouterPreset::Hotel), "Hotel");
  EXPECT_EQ(to_string(RouterPreset::Cloud), "Cloud");
}

TEST(PresetNames, NatNamesAreKebabCase) {
  EXPECT_EQ(to_string(Nat::None), "none");
  EXPECT_EQ(to_string(Nat::Home), "home");
  EXPECT_EQ(to_string(Nat::Corporate), "corporate");
  EXPECT_EQ(to_string(Nat::CloudNat), "cloud-nat");
  EXPECT_EQ(to_string(Nat::FullCone), "full-cone");
  EXPECT_EQ(to_string(Nat::Cgnat), "cgnat");
}

TEST(PresetNames, FirewallNamesAreSnakeCase) {
  EXPECT_EQ(to_string(Firewall::None), "none");
  EXPECT_EQ(to_string(Firewall::BlockInbound), "block_inbound");
  EXPECT_EQ(to_string(Firewall::Corporate), "corporate");
  EXPECT_EQ(to_string(Firewall::CaptivePortal), "captive_portal");
}

TEST(PresetNames, IpSupportAndPoolNames) {
  EXPECT_EQ(to_string(IpSupport::V4Only), "v4-only");
  EXPECT_EQ(to_string(IpSupport::V6Only), "v6-only");
  EXPECT_EQ(to_string(IpSupport::DualStack), "dual-stack");
  EXPECT_EQ(to_string(LanPool::Public), "public");
  EXPECT_EQ(to_string(LanPool::Private), "private");
  EXPECT_EQ(to_string(LanPool::Carrier), "carrier");
}

TEST(IpSupport, FamilyPredicates) {
  EXPECT_TRUE(has_v4(IpSupport::V4Only));
  EXPECT_FALSE(has_v6(IpSupport::V4Only));
  EXPECT_FALSE(has_v4(IpSupport::V6Only));
  EXPECT_TRUE(has_v6(IpSupport::V6Only));
  EXPECT_TRUE(has_v4(IpSupport::DualStack));
  EXPECT_TRUE(has_v6(IpSupport::DualStack));
}

}  // namespace
}  // namespace patchbay
