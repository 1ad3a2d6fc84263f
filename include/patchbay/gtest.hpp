// GoogleTest integration: a fixture that gives every test a fresh lab, helpers to declare a
// topology once and build it per test, and the listener that keeps artifacts of failed tests.
//
//   // Style 1: build inline in the test body.
//   class NatTest : public patchbay::testing::LabTest {};
//   TEST_F(NatTest, LaptopReachesServer) {
//     auto dc = lab().add_router("dc").preset(patchbay::RouterPreset::Public).build();
//     ...
//   }
//
//   // Style 2: declare the topology once; each test case gets its own freshly built copy.
//   PATCHBAY_TOPOLOGY(HomeAndDc) {
//     patchbay::Router dc = lab.add_router("dc").preset(patchbay::RouterPreset::Public).build();
//     patchbay::Device server = lab.add_device("server").iface("eth0", dc).build();
//   };
//   using HomeAndDcTest = patchbay::testing::TopologyTest<HomeAndDc>;
//   TEST_F(HomeAndDcTest, ServerHasPublicAddress) { EXPECT_TRUE(topo().server.ip()); }
//
// Link patchbay::gtest_main, or keep your own main() and add two lines:
//   patchbay::testing::init(argc, argv);      // before InitGoogleTest and before any thread
//   ::testing::InitGoogleTest(&argc, argv);
//   patchbay::testing::install_listener();    // after InitGoogleTest
//
// Environment: PATCHBAY_OUTDIR=<dir> gives each test <dir>/<suite>/<test>[/<param>] for command
// output; it is deleted when the test passes (unless PATCHBAY_KEEP=1) and filled with state.json
// and per-node kernel state when it fails.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "patchbay/patchbay.hpp"

namespace patchbay::testing {

// Enters the user namespace unless the binary only lists tests (so gtest_discover_tests works
// on any host). Never throws: a failure turns every LabTest into a skipped test with the reason.
void init(int argc, char** argv);
// Appends the artifact listener to GoogleTest's listeners.
void install_listener();

// Why labs cannot be created in this process, or nullopt if they can.
std::optional<std::string> lab_unavailable_reason();

// The current test's artifact directory (empty path when PATCHBAY_OUTDIR is unset).
std::filesystem::path current_test_outdir();

class LabTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // The test's lab, created on first use and labelled with the test's full name.
  Lab& lab();
  // Override to change the options of the lab (label and outdir are filled in for you).
  virtual LabOptions lab_options() { return {}; }

 private:
  std::optional<Lab> lab_;
};

// Base of topologies declared with PATCHBAY_TOPOLOGY: members are built in declaration order
// from `lab`.
struct Topology {
  Lab& lab;
};

#define PATCHBAY_TOPOLOGY(Name) struct Name : ::patchbay::testing::Topology

template <class T>
class TopologyTest : public LabTest {
 protected:
  void SetUp() override {
    LabTest::SetUp();
    if (IsSkipped()) return;
    topology_.reset(new T{{lab()}});
  }
  void TearDown() override {
    topology_.reset();  // its members may still use the lab
    LabTest::TearDown();
  }
  T& topo() { return *topology_; }

 private:
  std::unique_ptr<T> topology_;
};

// Readable parameter names for TEST_P suites over router presets: "Home", "PublicV4", ...
std::string PresetName(const ::testing::TestParamInfo<RouterPreset>& info);

}  // namespace patchbay::testing
