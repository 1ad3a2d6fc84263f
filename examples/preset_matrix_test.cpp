// One test body over every router preset, with readable names:
//   Presets/PresetMatrixTest.DeviceReachesTheInternet/Home, .../PublicV4, ...
#include <gtest/gtest.h>

#include <patchbay/gtest.hpp>
#include <patchbay/patchbay.hpp>

namespace {

using patchbay::RouterPreset;

class PresetMatrixTest : public patchbay::testing::LabTest,
                         public ::testing::WithParamInterface<RouterPreset> {};

TEST_P(PresetMatrixTest, DeviceReachesTheInternet) {
  auto dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  auto edge = lab().add_router("edge").preset(GetParam()).build();
  auto server = lab().add_device("server").iface("eth0", dc).build();
  auto client = lab().add_device("client").iface("eth0", edge).build();

  auto r = client.run_command({"ping", "-c", "1", "-W", "2", server.ip()->to_string()});
  EXPECT_EQ(r.exit_code, 0) << r.stdout_text;
}

TEST_P(PresetMatrixTest, PresetDecidesIpFamilies) {
  auto edge = lab().add_router("edge").preset(GetParam()).build();
  auto client = lab().add_device("client").iface("eth0", edge).build();
  bool dual = patchbay::has_v6(patchbay::preset_values(GetParam()).ip_support);
  EXPECT_EQ(client.ip6().has_value(), dual);
  EXPECT_TRUE(client.ip().has_value());
}

INSTANTIATE_TEST_SUITE_P(Presets, PresetMatrixTest,
                         ::testing::ValuesIn(patchbay::kAllRouterPresets),
                         patchbay::testing::PresetName);

}  // namespace
