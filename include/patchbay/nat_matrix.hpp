// NAT matrix suites: one TEST_P over every NAT kind, or over every ordered pair of them, with
// readable test names.
//
//   class HolePunch : public patchbay::testing::LabTest,
//                     public ::testing::WithParamInterface<patchbay::testing::NatPair> {};
//
//   TEST_P(HolePunch, Works) {
//     auto [a, b] = GetParam();  // two NatKinds
//     auto ra = a.apply(lab().add_router("a")).build();
//     auto rb = b.apply(lab().add_router("b")).build();
//     ...
//   }
//   // 36 cases: Matrix/HolePunch.Works/None_x_None ... Matrix/HolePunch.Works/Cgnat_x_Cgnat
//   PATCHBAY_INSTANTIATE_NAT_PAIRS(Matrix, HolePunch);
//
//   class PerNat : public patchbay::testing::LabTest,
//                  public ::testing::WithParamInterface<patchbay::testing::NatKind> {};
//   // 6 cases, named AllNats/PerNat.<test>/None ... /FullCone, /Cgnat
//   PATCHBAY_INSTANTIATE_NATS(AllNats, PerNat);
//
//   // Custom NATs join the six presets (7 kinds here, so 49 pairs):
//   const patchbay::testing::NatKind kAdmAdf = patchbay::testing::nat_kind(
//       "AdmAdf", patchbay::NatConfig{}
//                     .with_mapping(patchbay::NatMapping::AddressDependent)
//                     .with_filtering(patchbay::NatFiltering::AddressDependent));
//   PATCHBAY_INSTANTIATE_NAT_PAIRS(WithCustom, HolePunch, kAdmAdf);
//
// The presets are patchbay::kAllNats, named as the enumerators: None, Home, Corporate, CloudNat,
// FullCone, Cgnat. A kind only sets the router's NAT: its firewall, LAN pool and IP families are
// the builder's defaults (firewall None; LAN pool Public for None, Carrier for Cgnat, Private
// otherwise) unless the test sets them. Link patchbay::gtest or patchbay::gtest_main.
#pragma once

#include <gtest/gtest.h>

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "patchbay/lab.hpp"
#include "patchbay/nat.hpp"
#include "patchbay/presets.hpp"

namespace patchbay::testing {

// One NAT behaviour a matrix suite runs over: a preset, or a NatConfig of its own.
struct NatKind {
  std::string name;  // the test name part: ASCII letters, digits and '_'
  Nat nat = Nat::None;
  std::optional<NatConfig> config;  // the behaviour of a Nat::Custom kind

  // The behaviour the router gets: `config`, the preset's NatConfig, or nullopt for Nat::None
  // (no NAT: the LAN is public, reachable from anywhere).
  std::optional<NatConfig> nat_config() const;
  // Gives the router this kind's NAT and returns the builder, for chaining:
  //   kind.apply(lab().add_router("a")).build();
  RouterBuilder& apply(RouterBuilder& router) const;
  RouterBuilder& apply(RouterBuilder&& router) const { return apply(router); }

  friend bool operator==(const NatKind&, const NatKind&) = default;
};

// A preset kind, named as the enumerator ("Home", "CloudNat"). Throws Error(kInvalidArgument)
// for Nat::Custom, which needs a config.
NatKind nat_kind(Nat preset);
// A custom kind. Throws Error(kInvalidArgument) naming `name` if it is empty or has other
// characters than ASCII letters, digits and '_'.
NatKind nat_kind(std::string name, const NatConfig& config);

// The six presets of kAllNats, in that order, then `extra`. Throws Error(kInvalidArgument) if
// two kinds share a name (GoogleTest needs unique names) or a name is not a valid one.
std::vector<NatKind> nat_kinds(const std::vector<NatKind>& extra = {});

// Two kinds: `a` for the first peer's router, `b` for the second one's.
struct NatPair {
  NatKind a;
  NatKind b;
  friend bool operator==(const NatPair&, const NatPair&) = default;
};

// Every ordered pair of `kinds`: n * n pairs, a-major (None_x_None, None_x_Home, ...).
std::vector<NatPair> nat_pairs(const std::vector<NatKind>& kinds = nat_kinds());
// Every pair of one kind of `rows` and one of `columns` (e.g. one custom kind against all).
std::vector<NatPair> nat_pairs(const std::vector<NatKind>& rows,
                               const std::vector<NatKind>& columns);

// Parameter names for INSTANTIATE_TEST_SUITE_P: "FullCone", "Home_x_Corporate".
std::string NatKindName(const ::testing::TestParamInfo<NatKind>& info);
std::string NatPairName(const ::testing::TestParamInfo<NatPair>& info);

// "Home (mapping=endpoint_independent filtering=... )": what GoogleTest prints for a parameter.
std::string to_string(const NatKind& kind);
std::string to_string(const NatPair& pair);
std::ostream& operator<<(std::ostream& os, const NatKind& kind);
std::ostream& operator<<(std::ostream& os, const NatPair& pair);

}  // namespace patchbay::testing

// Instantiates `suite` (a TEST_P fixture with NatKind parameters) over the six presets and any
// extra NatKinds given after it. Names: <prefix>/<suite>.<test>/<kind>.
#define PATCHBAY_INSTANTIATE_NATS(prefix, suite, ...)                                          \
  INSTANTIATE_TEST_SUITE_P(prefix, suite,                                                      \
                           ::testing::ValuesIn(::patchbay::testing::nat_kinds({__VA_ARGS__})), \
                           ::patchbay::testing::NatKindName)

// Instantiates `suite` (a TEST_P fixture with NatPair parameters) over every ordered pair of
// the six presets and any extra NatKinds given after it. Names: <prefix>/<suite>.<test>/<a>_x_<b>.
#define PATCHBAY_INSTANTIATE_NAT_PAIRS(prefix, suite, ...)                      \
  INSTANTIATE_TEST_SUITE_P(prefix, suite,                                       \
                           ::testing::ValuesIn(::patchbay::testing::nat_pairs(  \
                               ::patchbay::testing::nat_kinds({__VA_ARGS__}))), \
                           ::patchbay::testing::NatPairName)
