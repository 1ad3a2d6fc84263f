// Keeping your own main(): two lines give it what patchbay::gtest_main does.
#include <gtest/gtest.h>

#include <patchbay/gtest.hpp>

namespace {

class OwnMainTest : public patchbay::testing::LabTest {};

TEST_F(OwnMainTest, LabsWorkWithACustomMain) {
  auto dc = lab().add_router("dc").preset(patchbay::RouterPreset::Public).build();
  auto a = lab().add_device("a").iface("eth0", dc).build();
  auto b = lab().add_device("b").iface("eth0", dc).build();
  EXPECT_EQ(a.run_command({"ping", "-c", "1", "-W", "2", b.ip()->to_string()}).exit_code, 0);
}

}  // namespace

int main(int argc, char** argv) {
  patchbay::testing::init(argc, argv);  // before InitGoogleTest and before any thread
  ::testing::InitGoogleTest(&argc, argv);
  patchbay::testing::install_listener();  // after InitGoogleTest
  return RUN_ALL_TESTS();
}
