// Compiled against an installed patchbay: the public headers and exported targets suffice.
#include <gtest/gtest.h>

#include <patchbay/gtest.hpp>

class ConsumerTest : public patchbay::testing::LabTest {};

TEST_F(ConsumerTest, BuildsALabFromAnInstalledPackage) {
  auto dc = lab().add_router("dc").preset(patchbay::RouterPreset::Public).build();
  auto home = lab().add_router("home").preset(patchbay::RouterPreset::Home).build();
  auto server = lab().add_device("server").iface("eth0", dc).build();
  auto laptop = lab().add_device("laptop").iface("eth0", home).build();
  EXPECT_EQ(laptop.run_command({"ping", "-c", "1", "-W", "2", server.ip()->to_string()}).exit_code,
            0);
}
