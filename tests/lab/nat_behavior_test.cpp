// The NAT engine against the RFC 5780 probe: every preset and every mapping x filtering
// combination is classified, through the real router, as what it was configured to be.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "patchbay/gtest.hpp"
#include "patchbay/nat_matrix.hpp"
#include "patchbay/nat_probe.hpp"

namespace {

using patchbay::Device;
using patchbay::Nat;
using patchbay::NatBehavior;
using patchbay::NatConfig;
using patchbay::NatFiltering;
using patchbay::NatMapping;
using patchbay::PortAssignment;
using patchbay::Router;
using patchbay::RouterPreset;

constexpr std::uint16_t kStunPort1 = 3478;
constexpr std::uint16_t kStunPort2 = 3479;

// A probe server with two public addresses ("dc"), and a NAT router under test on the IX.
class NatClassification : public patchbay::testing::LabTest {
 protected:
  void SetUp() override {
    LabTest::SetUp();
    dc_ = lab().add_router("dc").preset(RouterPreset::Public).build();
    stun1_ = lab().add_device("stun1").iface("eth0", *dc_).build();
    stun2_ = lab().add_device("stun2").iface("eth0", *dc_).build();
  }
  NatBehavior probe_through(const Router& nat) {
    Device client = lab().add_device("client").iface("eth0", nat).build();
    auto server = patchbay::NatProbeServer::start(*stun1_, *stun2_, kStunPort1, kStunPort2);
    return patchbay::probe_nat(client, server);
  }
  std::optional<Router> dc_;
  std::optional<Device> stun1_, stun2_;
};

// ---- presets ----

class PresetClassification : public NatClassification,
                             public ::testing::WithParamInterface<patchbay::testing::NatKind> {};

TEST_P(PresetClassification, ProbeSeesThePresetsBehaviour) {
  Router nat = GetParam().apply(lab().add_router("nat")).build();
  const NatBehavior seen = probe_through(nat);
  if (GetParam().nat == Nat::None) {
    // No NAT: the socket itself is the mapping, and nothing filters.
    EXPECT_EQ(seen,
              (NatBehavior{NatMapping::EndpointIndependent, NatFiltering::EndpointIndependent}));
  } else {
    const NatConfig config = NatConfig::preset(GetParam().nat);
    EXPECT_EQ(seen, (NatBehavior{config.mapping, config.filtering})) << config;
    EXPECT_EQ(nat.nat_config(), config);
  }
}

PATCHBAY_INSTANTIATE_NATS(Nats, PresetClassification);

// ---- the 9 custom combinations ----

using Combo = std::tuple<NatMapping, NatFiltering>;

class CustomClassification : public NatClassification,
                             public ::testing::WithParamInterface<Combo> {};

TEST_P(CustomClassification, ProbeSeesTheConfiguredBehaviour) {
  const auto [mapping, filtering] = GetParam();
  Router nat = lab()
                   .add_router("nat")
                   .nat(NatConfig{}.with_mapping(mapping).with_filtering(filtering))
                   .build();
  EXPECT_EQ(nat.nat(), Nat::Custom);
  EXPECT_EQ(probe_through(nat), (NatBehavior{mapping, filtering}));
}

std::string short_name(NatMapping m) {
  switch (m) {
    case NatMapping::EndpointIndependent:
      return "EIM";
    case NatMapping::AddressDependent:
      return "ADM";
    case NatMapping::AddressAndPortDependent:
      return "APDM";
  }
  return "?";
}
std::string short_name(NatFiltering f) {
  switch (f) {
    case NatFiltering::EndpointIndependent:
      return "EIF";
    case NatFiltering::AddressDependent:
      return "ADF";
    case NatFiltering::AddressAndPortDependent:
      return "APDF";
  }
  return "?";
}

INSTANTIATE_TEST_SUITE_P(
    All, CustomClassification,
    ::testing::Combine(::testing::Values(NatMapping::EndpointIndependent,
                                         NatMapping::AddressDependent,
                                         NatMapping::AddressAndPortDependent),
                       ::testing::Values(NatFiltering::EndpointIndependent,
                                         NatFiltering::AddressDependent,
                                         NatFiltering::AddressAndPortDependent)),
    [](const auto& info) {
      return short_name(std::get<0>(info.param)) + "_" + short_name(std::get<1>(info.param));
    });

}  // namespace
