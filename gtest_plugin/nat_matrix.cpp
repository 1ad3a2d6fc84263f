#include "patchbay/nat_matrix.hpp"

#include <ostream>
#include <set>

#include "patchbay/error.hpp"

namespace patchbay::testing {

namespace {

// The enumerator's own spelling: to_string(Nat) gives the serialized kebab-case name, which
// GoogleTest does not accept ("cloud-nat").
std::string preset_name(Nat nat) {
  switch (nat) {
    case Nat::None:
      return "None";
    case Nat::Home:
      return "Home";
    case Nat::Corporate:
      return "Corporate";
    case Nat::CloudNat:
      return "CloudNat";
    case Nat::FullCone:
      return "FullCone";
    case Nat::Cgnat:
      return "Cgnat";
    case Nat::Custom:
      break;
  }
  throw Error(ErrorKind::kInvalidArgument, "Custom",
              "nat_kind: Nat::Custom has no behaviour of its own; use nat_kind(name, config)");
}

void check_name(const std::string& name) {
  bool valid = !name.empty();
  for (char c : name) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    valid = valid && (alnum || c == '_');
  }
  if (!valid) {
    throw Error(ErrorKind::kInvalidArgument, name,
                "NatKind name '" + name +
                    "' is not a valid GoogleTest name part (ASCII letters, digits, '_')");
  }
}

}  // namespace

std::optional<NatConfig> NatKind::nat_config() const {
  if (config) return config;
  if (nat == Nat::None) return std::nullopt;
  return NatConfig::preset(nat);
}

RouterBuilder& NatKind::apply(RouterBuilder& router) const {
  return config ? router.nat(*config) : router.nat(nat);
}

NatKind nat_kind(Nat preset) { return NatKind{preset_name(preset), preset, std::nullopt}; }

NatKind nat_kind(std::string name, const NatConfig& config) {
  check_name(name);
  return NatKind{std::move(name), Nat::Custom, config};
}

std::vector<NatKind> nat_kinds(const std::vector<NatKind>& extra) {
  std::vector<NatKind> kinds;
  for (Nat nat : kAllNats) kinds.push_back(nat_kind(nat));
  kinds.insert(kinds.end(), extra.begin(), extra.end());
  std::set<std::string> seen;
  for (const NatKind& k : kinds) {
    check_name(k.name);
    if (!seen.insert(k.name).second) {
      throw Error(ErrorKind::kInvalidArgument, k.name,
                  "NatKind name '" + k.name + "' is used twice (test names must be unique)");
    }
  }
  return kinds;
}

std::vector<NatPair> nat_pairs(const std::vector<NatKind>& kinds) {
  return nat_pairs(kinds, kinds);
}

std::vector<NatPair> nat_pairs(const std::vector<NatKind>& rows,
                               const std::vector<NatKind>& columns) {
  std::vector<NatPair> pairs;
  pairs.reserve(rows.size() * columns.size());
  for (const NatKind& a : rows) {
    for (const NatKind& b : columns) pairs.push_back(NatPair{a, b});
  }
  return pairs;
}

std::string NatKindName(const ::testing::TestParamInfo<NatKind>& info) { return info.param.name; }

std::string NatPairName(const ::testing::TestParamInfo<NatPair>& info) {
  return info.param.a.name + "_x_" + info.param.b.name;
}

std::string to_string(const NatKind& kind) {
  std::optional<NatConfig> config = kind.nat_config();
  return kind.name + " (" + (config ? patchbay::to_string(*config) : "no NAT") + ")";
}

std::string to_string(const NatPair& pair) {
  return "a: " + to_string(pair.a) + ", b: " + to_string(pair.b);
}

std::ostream& operator<<(std::ostream& os, const NatKind& kind) { return os << to_string(kind); }
std::ostream& operator<<(std::ostream& os, const NatPair& pair) { return os << to_string(pair); }

}  // namespace patchbay::testing
