// UDP hole punching over every ordered pair of NAT kinds (the six presets and a custom
// address-dependent one), asserting success exactly where RFC 4787 reasoning predicts it, and
// the NatKind/NatPair helpers behind the matrix.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "patchbay/gtest.hpp"
#include "patchbay/nat_matrix.hpp"
#include "patchbay/nat_probe.hpp"

namespace {

using patchbay::Device;
using patchbay::Nat;
using patchbay::NatConfig;
using patchbay::NatFiltering;
using patchbay::NatMapping;
using patchbay::Router;
using patchbay::RouterPreset;
using patchbay::testing::NatKind;
using patchbay::testing::NatPair;
namespace asio = boost::asio;
using asio::ip::udp;
using Clock = std::chrono::steady_clock;

constexpr std::uint16_t kRendezvousPort = 3478;

// Address-dependent mapping and filtering: a new external port per destination IP, and inbound
// from any port of an IP the inside endpoint has sent to.
const NatKind kAdmAdf =
    patchbay::testing::nat_kind("AdmAdf", NatConfig{}
                                              .with_mapping(NatMapping::AddressDependent)
                                              .with_filtering(NatFiltering::AddressDependent));

// ---- the expectation ----
//
// Both peers learn their reflexive endpoint (their mapping towards the rendezvous) and punch to
// each other's. X receives Y's punches iff
//  (1) X and Y are both EIM: Y's punches come from Y's reflexive endpoint, the one X sends to,
//      so once X has sent they are conntrack replies of X's own flow, whatever X filters; or
//  (2) X filters EIF or ADF: X's mapping (in_map) leads the punch to X, and X's filter accepts
//      any port of an IP X has sent to (ADF; once X's own first punch went out).
// In (2) with Y EIM and X not, the punch is a new flow between the same two endpoints as X's
// own flow to Y, which left from another external port. Conntrack cannot hold two entries for
// one 5-tuple, and does not drop the second: the NAT's null binding at postrouting gives the
// inbound entry a made-up source port, so X sees Y at Y's address with a port Y never used.
// Answers to it go back through that entry and leave from X's reflexive endpoint.
// A peer without NAT (None) counts as EIM and EIF: its socket is its mapping, nothing filters.
// The punch succeeds when either direction gets through, because the receiver then answers to
// the source it heard (hole_punch_udp does, as ICE does), and that answer is conntrack reply
// traffic on both NATs.
struct Row {
  std::string_view kind;
  std::string_view cells;  // y = succeeds, n = fails; columns as in kColumns
};
// clang-format off
constexpr std::array<std::string_view, 7> kColumns = {
    "None", "FullCone", "Cgnat", "Home", "Corporate", "CloudNat", "AdmAdf"};
constexpr std::array<Row, 7> kExpected = {{
    // a \ b        None  FullCone  Cgnat  Home  Corporate  CloudNat  AdmAdf
    // No NAT, no filter: receives every peer's punches, by (1) or (2).
    {"None",      " y      y        y      y      y          y        y"},
    // EIM/EIF: receives every peer's punches, by (1) or (2).
    {"FullCone",  " y      y        y      y      y          y        y"},
    {"Cgnat",     " y      y        y      y      y          y        y"},
    // EIM/APDF: receives EIM peers' punches by (1) only. A non-EIM peer's punches come from a
    // port Home never sent to; against AdmAdf the other direction works by (2).
    {"Home",      " y      y        y      y      n          n        y"},
    // APDM/APDF: receives no punch at all (not EIM, filter APDF); works only where the peer
    // receives its punches: EIF peers, and ADF (AdmAdf) by (2).
    {"Corporate", " y      y        y      n      n          n        y"},
    {"CloudNat",  " y      y        y      n      n          n        y"},
    // ADM/ADF: receives every peer's punches by (2), EIM ones (Home, None, FullCone, Cgnat) on
    // a made-up source port.
    {"AdmAdf",    " y      y        y      y      y          y        y"},
}};
// clang-format on

bool expected_success(const NatKind& a, const NatKind& b) {
  std::size_t column = 0;
  while (column < kColumns.size() && kColumns[column] != b.name) ++column;
  for (const Row& row : kExpected) {
    if (row.kind != a.name || column == kColumns.size()) continue;
    std::size_t seen = 0;
    for (char c : row.cells) {
      if (c != 'y' && c != 'n') continue;
      if (seen++ == column) return c == 'y';
    }
  }
  ADD_FAILURE() << "no expectation for " << a.name << " x " << b.name;
  return false;
}

bool eim(const NatKind& k) {
  auto c = k.nat_config();
  return !c || c->mapping == NatMapping::EndpointIndependent;
}
bool open_filter(const NatKind& k) {  // EIF or ADF: any port of an IP sent to gets in
  auto c = k.nat_config();
  return !c || c->filtering != NatFiltering::AddressAndPortDependent;
}
// The rule above, per direction: x receives y's punches.
bool receives(const NatKind& x, const NatKind& y) { return (eim(x) && eim(y)) || open_filter(x); }

TEST(HolePunchExpectation, TableIsSymmetricAndFollowsThePerDirectionRule) {
  const std::vector<NatKind> kinds = patchbay::testing::nat_kinds({kAdmAdf});
  ASSERT_EQ(kinds.size(), kColumns.size());
  for (const NatKind& a : kinds) {
    for (const NatKind& b : kinds) {
      EXPECT_EQ(expected_success(a, b), expected_success(b, a)) << a.name << " x " << b.name;
      EXPECT_EQ(expected_success(a, b), receives(a, b) || receives(b, a))
          << a.name << " x " << b.name;
    }
  }
}

// ---- the matrix ----

class HolePunchMatrix : public patchbay::testing::LabTest,
                        public ::testing::WithParamInterface<NatPair> {
 protected:
  // The router's NAT state, for a failure message: conntrack entries and drop counters,
  // and the engine's maps.
  static std::string nat_state(const Router& r) {
    std::ostringstream out;
    out << "--- " << r.name() << " ---\n";
    const std::vector<std::vector<std::string>> commands = {
        {"cat", "/proc/net/nf_conntrack"},
        {"cat", "/proc/net/stat/nf_conntrack"},
        {"nft", "list", "table", "ip", "pb_nat"}};
    for (const auto& argv : commands) {
      auto result = r.run_command(patchbay::Command(argv));
      out << "$";
      for (const auto& word : argv) out << " " << word;
      out << "\n" << result.stdout_text << result.stderr_text;
    }
    return out.str();
  }
};

std::string describe(const patchbay::HolePunchResult& r) {
  auto ep = [](const std::optional<udp::endpoint>& e) {
    if (!e) return std::string("-");
    std::ostringstream s;
    s << *e;
    return s.str();
  };
  std::ostringstream out;
  out << "success=" << r.success << " tries=" << r.tries << " attempts=" << r.attempts
      << "\n  a: reflexive " << ep(r.a_reflexive) << ", sees b at " << ep(r.a_sees_b)
      << (r.a_heard_punch ? " (punch)" : " (answer)") << ", sends to " << ep(r.a_sends_to)
      << "\n  b: reflexive " << ep(r.b_reflexive) << ", sees a at " << ep(r.b_sees_a)
      << (r.b_heard_punch ? " (punch)" : " (answer)") << ", sends to " << ep(r.b_sends_to);
  return out.str();
}

TEST_P(HolePunchMatrix, SucceedsExactlyWhereRfc4787Predicts) {
  const auto& [a, b] = GetParam();
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  Device meet = lab().add_device("meet").iface("eth0", dc).build();
  Router nat_a = a.apply(lab().add_router("nat_a")).firewall(patchbay::Firewall::None).build();
  Router nat_b = b.apply(lab().add_router("nat_b")).firewall(patchbay::Firewall::None).build();
  Device dev_a = lab().add_device("a").iface("eth0", nat_a).build();
  Device dev_b = lab().add_device("b").iface("eth0", nat_b).build();
  auto rendezvous = patchbay::UdpReflector::start(meet, kRendezvousPort);

  // One try: the NATs keep no state from refused datagrams, so a second try with new sockets
  // would meet the same NATs again. A failure costs `rounds * interval`.
  patchbay::HolePunchOptions options;
  options.tries = 1;
  options.rounds = 10;
  options.interval = std::chrono::milliseconds(20);
  const auto start = Clock::now();
  const patchbay::HolePunchResult r = patchbay::hole_punch_udp(dev_a, dev_b, rendezvous, options);
  const auto took = Clock::now() - start;

  const bool expected = expected_success(a, b);
  EXPECT_EQ(r.success, expected) << describe(r) << "\n" << nat_state(nat_a) << nat_state(nat_b);
  EXPECT_EQ(r.tries, 1);

  // Where each side is on the internet: its router's uplink, or itself without NAT.
  const asio::ip::address public_a(a.nat_config() ? *nat_a.uplink_ip() : *dev_a.ip());
  const asio::ip::address public_b(b.nat_config() ? *nat_b.uplink_ip() : *dev_b.ip());
  ASSERT_TRUE(r.a_reflexive && r.b_reflexive) << describe(r);
  EXPECT_EQ(r.a_reflexive->address(), public_a);
  EXPECT_EQ(r.b_reflexive->address(), public_b);

  if (!expected) {
    // Neither direction got through, not even once, and both sides used all their rounds.
    EXPECT_EQ(r.a_sees_b, std::nullopt) << describe(r);
    EXPECT_EQ(r.b_sees_a, std::nullopt) << describe(r);
    EXPECT_EQ(r.a_sends_to, r.b_reflexive);
    EXPECT_EQ(r.b_sends_to, r.a_reflexive);
    EXPECT_EQ(r.attempts, options.rounds);
    EXPECT_GE(took, options.rounds * options.interval) << "gave up before its rounds were sent";
    return;
  }
  if (!r.success) return;
  // The path: each side ends up talking to where it heard the other, on the other's address.
  EXPECT_EQ(r.a_sends_to, r.a_sees_b);
  EXPECT_EQ(r.b_sends_to, r.b_sees_a);
  EXPECT_EQ(r.a_sees_b->address(), public_b);
  EXPECT_EQ(r.b_sees_a->address(), public_a);
  // Where only one direction's punches get through, that side hears a punch and the other one
  // only its answer.
  if (receives(a, b) != receives(b, a)) {
    EXPECT_EQ(r.a_heard_punch, receives(a, b)) << describe(r);
    EXPECT_EQ(r.b_heard_punch, receives(b, a)) << describe(r);
  }
  // An answer leaves from the reflexive endpoint the punch was sent to: it is a reply. A punch
  // that got through by (2) alone comes from a fresh port of a non-EIM sender, or from the port
  // conntrack made up for an EIM one. (Punches by (1) come from the reflexive endpoint, or from
  // a made-up port when the two first punches cross in flight, so nothing is asserted there.)
  const bool by_1 = eim(a) && eim(b);
  if (!r.a_heard_punch) {
    EXPECT_EQ(r.a_sees_b, r.b_reflexive) << describe(r);
  }
  if (r.a_heard_punch && !by_1) {
    EXPECT_NE(r.a_sees_b, r.b_reflexive) << describe(r);
  }
  if (!r.b_heard_punch) {
    EXPECT_EQ(r.b_sees_a, r.a_reflexive) << describe(r);
  }
  if (r.b_heard_punch && !by_1) {
    EXPECT_NE(r.b_sees_a, r.a_reflexive) << describe(r);
  }
}

// 49 cases: the six presets and AdmAdf, every ordered pair.
PATCHBAY_INSTANTIATE_NAT_PAIRS(Matrix, HolePunchMatrix, kAdmAdf);

// ---- the helpers ----

TEST(NatMatrixHelpers, PresetKindsAreNamedAfterTheirEnumerators) {
  std::vector<std::string> names;
  for (const NatKind& k : patchbay::testing::nat_kinds()) names.push_back(k.name);
  EXPECT_THAT(names,
              ::testing::ElementsAre("None", "Home", "Corporate", "CloudNat", "FullCone", "Cgnat"));
  EXPECT_EQ(patchbay::testing::nat_kind(Nat::Home).nat_config(), NatConfig::preset(Nat::Home));
  EXPECT_EQ(patchbay::testing::nat_kind(Nat::None).nat_config(), std::nullopt);
  EXPECT_EQ(kAdmAdf.nat, Nat::Custom);
  EXPECT_EQ(kAdmAdf.nat_config()->mapping, NatMapping::AddressDependent);
}

TEST(NatMatrixHelpers, PairsAreOrderedAndNamedAxB) {
  const auto pairs = patchbay::testing::nat_pairs(patchbay::testing::nat_kinds({kAdmAdf}));
  ASSERT_EQ(pairs.size(), 49u);
  auto name = [&](std::size_t i) {
    return patchbay::testing::NatPairName(::testing::TestParamInfo<NatPair>(pairs[i], i));
  };
  EXPECT_EQ(name(0), "None_x_None");
  EXPECT_EQ(name(1), "None_x_Home");
  EXPECT_EQ(name(7), "Home_x_None");
  EXPECT_EQ(name(48), "AdmAdf_x_AdmAdf");
  // One row against all columns.
  const auto row = patchbay::testing::nat_pairs({kAdmAdf}, patchbay::testing::nat_kinds());
  ASSERT_EQ(row.size(), 6u);
  EXPECT_EQ(row[3].a, kAdmAdf);
  EXPECT_EQ(row[3].b.nat, Nat::CloudNat);
}

TEST(NatMatrixHelpers, InvalidOrDuplicateNamesAreRejected) {
  try {
    patchbay::testing::nat_kind("adm-adf", NatConfig{});
    FAIL() << "'-' is not allowed in a GoogleTest name";
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.kind(), patchbay::ErrorKind::kInvalidArgument);
    EXPECT_EQ(e.culprit(), "adm-adf");
  }
  EXPECT_THROW(patchbay::testing::nat_kind("", NatConfig{}), patchbay::Error);
  EXPECT_THROW(patchbay::testing::nat_kind(Nat::Custom), patchbay::Error);
  try {
    patchbay::testing::nat_kinds({patchbay::testing::nat_kind("Home", NatConfig{})});
    FAIL() << "a second 'Home' would give two tests the same name";
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.culprit(), "Home");
    EXPECT_THAT(e.what(), ::testing::HasSubstr("used twice"));
  }
}

// A kind sets the router's NAT and nothing else.
class NatKindApply : public patchbay::testing::LabTest,
                     public ::testing::WithParamInterface<NatKind> {};

TEST_P(NatKindApply, RouterGetsTheKindsNat) {
  const NatKind& kind = GetParam();
  Router r = kind.apply(lab().add_router("r")).build();
  EXPECT_EQ(r.nat(), kind.nat);
  if (auto config = kind.nat_config()) {
    EXPECT_EQ(r.nat_config(), *config);
  }
  EXPECT_EQ(r.firewall(), patchbay::Firewall::None);
}

PATCHBAY_INSTANTIATE_NATS(AllNats, NatKindApply, kAdmAdf);

}  // namespace
