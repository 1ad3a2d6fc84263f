// NAT presets as data: each preset's RFC 4787 behaviour and timeouts, as the spec table says.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include "patchbay/error.hpp"
#include "patchbay/nat.hpp"

namespace {

using patchbay::Nat;
using patchbay::NatConfig;
using patchbay::NatFiltering;
using patchbay::NatMapping;
using patchbay::NatTimeouts;
using patchbay::PortAssignment;
using std::chrono::seconds;

TEST(NatConfigTest, PresetsExpandToTheirBehaviour) {
  const NatTimeouts home{seconds(30), seconds(300), seconds(7200)};
  EXPECT_EQ(NatConfig::preset(Nat::Home),
            (NatConfig{NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent,
                       PortAssignment::Preserve, false, home}));
  EXPECT_EQ(NatConfig::preset(Nat::Corporate),
            (NatConfig{NatMapping::AddressAndPortDependent,
                       NatFiltering::AddressAndPortDependent,
                       PortAssignment::Random,
                       false,
                       {seconds(30), seconds(120), seconds(3600)}}));
  EXPECT_EQ(NatConfig::preset(Nat::CloudNat),
            (NatConfig{NatMapping::AddressAndPortDependent,
                       NatFiltering::AddressAndPortDependent,
                       PortAssignment::Random,
                       false,
                       {seconds(30), seconds(350), seconds(3600)}}));
  EXPECT_EQ(NatConfig::preset(Nat::FullCone),
            (NatConfig{NatMapping::EndpointIndependent, NatFiltering::EndpointIndependent,
                       PortAssignment::Preserve, true, home}));
  // RFC 6888: carrier NATs map endpoint-independently; upstream documented EIF but ran plain
  // masquerade.
  EXPECT_EQ(NatConfig::preset(Nat::Cgnat),
            (NatConfig{NatMapping::EndpointIndependent, NatFiltering::EndpointIndependent,
                       PortAssignment::Preserve, false, home}));
}

TEST(NatConfigTest, DefaultIsHome) { EXPECT_EQ(NatConfig{}, NatConfig::preset(Nat::Home)); }

TEST(NatConfigTest, NoneAndCustomHaveNoBehaviourOfTheirOwn) {
  for (Nat nat : {Nat::None, Nat::Custom}) {
    try {
      (void)NatConfig::preset(nat);
      FAIL() << nat;
    } catch (const patchbay::Error& e) {
      EXPECT_EQ(e.kind(), patchbay::ErrorKind::kInvalidArgument);
      EXPECT_THAT(e.what(), ::testing::HasSubstr(std::string(patchbay::to_string(nat))));
    }
  }
}

TEST(NatConfigTest, BuilderStyleSettersChain) {
  NatConfig c = NatConfig{}
                    .with_mapping(NatMapping::AddressDependent)
                    .with_filtering(NatFiltering::AddressDependent)
                    .with_ports(PortAssignment::Sequential)
                    .with_hairpin()
                    .with_udp_timeouts(seconds(5), seconds(6))
                    .with_tcp_timeout(seconds(7));
  EXPECT_EQ(c.mapping, NatMapping::AddressDependent);
  EXPECT_EQ(c.filtering, NatFiltering::AddressDependent);
  EXPECT_EQ(c.ports, PortAssignment::Sequential);
  EXPECT_TRUE(c.hairpin);
  EXPECT_EQ(c.timeouts, (NatTimeouts{seconds(5), seconds(6), seconds(7)}));
}

TEST(NatConfigTest, PrintsAsOneReadableLine) {
  std::ostringstream out;
  out << NatConfig::preset(Nat::FullCone);
  EXPECT_EQ(out.str(),
            "mapping=endpoint_independent filtering=endpoint_independent ports=preserve "
            "hairpin=on timeouts=30/300/7200s");
  EXPECT_EQ(patchbay::to_string(patchbay::NatV6Mode::Nptv6), "nptv6");
  EXPECT_EQ(patchbay::to_string(PortAssignment::Sequential), "sequential");
  EXPECT_EQ(patchbay::to_string(Nat::Custom), "custom");
}

}  // namespace
