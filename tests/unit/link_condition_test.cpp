// Link conditions as values: preset numbers from the spec table, names and spellings, JSON round
// trips, validation errors and printing.
#include "patchbay/link_condition.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>

#include "patchbay/error.hpp"

namespace {

using patchbay::LinkCondition;
using patchbay::LinkConditions;
using patchbay::LinkDirection;
using patchbay::LinkLimits;
using patchbay::LinkPreset;
using ::testing::HasSubstr;

// Runs `fn`, expects Error(kInvalidArgument) and returns it for further checks.
template <typename Fn>
patchbay::Error invalid_argument(Fn&& fn) {
  try {
    fn();
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.kind(), patchbay::ErrorKind::kInvalidArgument) << e.what();
    return e;
  }
  ADD_FAILURE() << "no patchbay::Error thrown";
  return patchbay::Error(patchbay::ErrorKind::kKernel, "", "not thrown");
}

// link-conditions.md section 2, row by row: latency ms, jitter ms, loss %, rate kbit/s.
struct PresetRow {
  LinkPreset preset;
  const char* name;
  std::uint32_t latency_ms;
  std::uint32_t jitter_ms;
  double loss_pct;
  std::uint32_t rate_kbit;
};
constexpr PresetRow kSpecTable[] = {
    {LinkPreset::Lan, "lan", 0, 0, 0.0, 0},
    {LinkPreset::Wifi, "wifi", 5, 2, 0.1, 0},
    {LinkPreset::WifiBad, "wifi-bad", 40, 15, 2.0, 20'000},
    {LinkPreset::Mobile4G, "mobile-4g", 25, 8, 0.5, 0},
    {LinkPreset::Mobile3G, "mobile-3g", 100, 30, 2.0, 2'000},
    {LinkPreset::Satellite, "satellite", 40, 7, 1.0, 0},
    {LinkPreset::SatelliteGeo, "satellite-geo", 300, 20, 0.5, 25'000},
};

TEST(LinkConditionTest, PresetsHaveTheSpecTableNumbers) {
  ASSERT_EQ(std::size(kSpecTable), patchbay::kAllLinkPresets.size());
  for (const PresetRow& row : kSpecTable) {
    SCOPED_TRACE(row.name);
    const LinkLimits l = patchbay::preset_limits(row.preset);
    EXPECT_EQ(l.latency_ms, row.latency_ms);
    EXPECT_EQ(l.jitter_ms, row.jitter_ms);
    EXPECT_EQ(l.loss_pct, row.loss_pct);
    EXPECT_EQ(l.rate_kbit, row.rate_kbit);
    EXPECT_EQ(l.reorder_pct, 0.0);
    EXPECT_EQ(l.duplicate_pct, 0.0);
    EXPECT_EQ(l.corrupt_pct, 0.0);
    EXPECT_EQ(LinkCondition::preset(row.preset).limits(), l);
    EXPECT_EQ(LinkCondition::preset(row.preset).preset(), row.preset);
    EXPECT_NO_THROW(l.validate());
  }
}

TEST(LinkConditionTest, PresetNamesAreTheInputStringsAndParseBack) {
  for (const PresetRow& row : kSpecTable) {
    EXPECT_EQ(patchbay::to_string(row.preset), row.name);
    EXPECT_EQ(patchbay::parse_link_preset(row.name), row.preset) << row.name;
  }
}

TEST(LinkConditionTest, ParsesAliasAndUpstreamOutputAndUiSpellings) {
  EXPECT_EQ(patchbay::parse_link_preset("mobile"), LinkPreset::Mobile4G);
  // Upstream's events.jsonl / state.json output.
  EXPECT_EQ(patchbay::parse_link_preset("wifi_bad"), LinkPreset::WifiBad);
  EXPECT_EQ(patchbay::parse_link_preset("mobile4_g"), LinkPreset::Mobile4G);
  EXPECT_EQ(patchbay::parse_link_preset("mobile3_g"), LinkPreset::Mobile3G);
  EXPECT_EQ(patchbay::parse_link_preset("satellite_geo"), LinkPreset::SatelliteGeo);
  // Upstream's UI type.
  EXPECT_EQ(patchbay::parse_link_preset("mobile_4g"), LinkPreset::Mobile4G);
  EXPECT_EQ(patchbay::parse_link_preset("mobile_3g"), LinkPreset::Mobile3G);
}

TEST(LinkConditionTest, UnknownPresetNameIsRejectedWithTheNameAndTheChoices) {
  for (const char* bad : {"wifi-good", "", "WIFI", "mobile-5g"}) {
    const auto e = invalid_argument([&] { (void)patchbay::parse_link_preset(bad); });
    EXPECT_EQ(e.culprit(), bad);
    EXPECT_THAT(e.what(), HasSubstr("'" + std::string(bad) + "'"));
    EXPECT_THAT(e.what(), HasSubstr("satellite-geo"));
  }
}

TEST(LinkConditionTest, DefaultConditionIsLanAndAllZeroLimitsAreEmpty) {
  EXPECT_EQ(LinkCondition(), LinkCondition::preset(LinkPreset::Lan));
  EXPECT_TRUE(LinkCondition().limits().is_empty());
  EXPECT_TRUE(LinkLimits{}.is_empty());
  EXPECT_FALSE(LinkLimits{.corrupt_pct = 0.01}.is_empty());
  EXPECT_FALSE(LinkLimits{.rate_kbit = 1}.is_empty());
}

TEST(LinkConditionTest, ManualKeepsItsLimitsAndDiffersFromThePresetWithTheSameNumbers) {
  const LinkLimits limits{.rate_kbit = 500, .loss_pct = 3, .latency_ms = 80};
  const LinkCondition c = LinkCondition::manual(limits);
  EXPECT_TRUE(c.is_manual());
  EXPECT_EQ(c.preset(), std::nullopt);
  EXPECT_EQ(c.limits(), limits);

  const LinkCondition wifi_numbers =
      LinkCondition::manual(patchbay::preset_limits(LinkPreset::Wifi));
  EXPECT_NE(wifi_numbers, LinkCondition::preset(LinkPreset::Wifi));
  EXPECT_EQ(wifi_numbers.limits(), LinkCondition::preset(LinkPreset::Wifi).limits());
  EXPECT_NE(LinkCondition::manual(LinkLimits{}), LinkCondition::preset(LinkPreset::Lan));
}

TEST(LinkConditionTest, PercentagesOutsideZeroToHundredOrNotFiniteAreRejectedNamingTheField) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  struct Case {
    LinkLimits limits;
    const char* field;
    const char* value;
  };
  const Case cases[] = {
      {{.loss_pct = 100.5}, "loss_pct", "100.5"},
      {{.loss_pct = -1}, "loss_pct", "-1"},
      {{.loss_pct = nan}, "loss_pct", "nan"},
      {{.latency_ms = 10, .reorder_pct = 101}, "reorder_pct", "101"},
      {{.duplicate_pct = inf}, "duplicate_pct", "inf"},
      {{.corrupt_pct = -0.001}, "corrupt_pct", "-0.001"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    const auto e = invalid_argument([&] { (void)LinkCondition::manual(c.limits); });
    EXPECT_EQ(e.culprit(), c.field);
    EXPECT_THAT(e.what(), HasSubstr(c.field));
    EXPECT_THAT(e.what(), HasSubstr(c.value));
    EXPECT_THROW(c.limits.validate(), patchbay::Error);
  }
}

TEST(LinkConditionTest, BoundaryValuesAreAccepted) {
  EXPECT_NO_THROW(LinkCondition::manual({.loss_pct = 100, .duplicate_pct = 100, .corrupt_pct = 0}));
  EXPECT_NO_THROW(LinkCondition::manual({.rate_kbit = std::numeric_limits<std::uint32_t>::max(),
                                         .latency_ms = std::numeric_limits<std::uint32_t>::max()}));
  // netem accepts jitter above the latency (negative draws leave at once), and jitter alone.
  EXPECT_NO_THROW(LinkCondition::manual({.latency_ms = 5, .jitter_ms = 50}));
  EXPECT_NO_THROW(LinkCondition::manual({.jitter_ms = 10}));
}

TEST(LinkConditionTest, ReorderWithoutAnyDelayIsRejectedBecauseItWouldDoNothing) {
  const auto e = invalid_argument([] { (void)LinkCondition::manual({.reorder_pct = 25}); });
  EXPECT_EQ(e.culprit(), "reorder_pct");
  EXPECT_THAT(e.what(), HasSubstr("reorder_pct 25"));
  EXPECT_THAT(e.what(), HasSubstr("latency_ms"));
  EXPECT_NO_THROW(LinkCondition::manual({.latency_ms = 10, .reorder_pct = 25}));
  EXPECT_NO_THROW(LinkCondition::manual({.jitter_ms = 10, .reorder_pct = 25}));
}

TEST(LinkConditionTest, PresetsSerializeAsTheirInputStringsAndReadBack) {
  for (const PresetRow& row : kSpecTable) {
    const LinkCondition c = LinkCondition::preset(row.preset);
    const std::string text = patchbay::to_json(c);
    EXPECT_EQ(text, "\"" + std::string(row.name) + "\"");
    EXPECT_EQ(patchbay::link_condition_from_json(text), c) << text;
  }
}

TEST(LinkConditionTest, ManualSerializesAsABareObjectWithAllSevenFieldsAndReadsBack) {
  const LinkCondition c =
      LinkCondition::manual({.rate_kbit = 500, .loss_pct = 3, .latency_ms = 80});
  EXPECT_EQ(patchbay::to_json(c),
            R"({"rate_kbit":500,"loss_pct":3.0,"latency_ms":80,"jitter_ms":0,"reorder_pct":0.0,)"
            R"("duplicate_pct":0.0,"corrupt_pct":0.0})");
  EXPECT_EQ(patchbay::link_condition_from_json(patchbay::to_json(c)), c);
}

TEST(LinkConditionTest, ManualRoundTripKeepsEveryFieldExactly) {
  const LinkLimits cases[] = {
      {},
      {.rate_kbit = 1,
       .loss_pct = 0.1,
       .latency_ms = 1,
       .jitter_ms = 1,
       .reorder_pct = 0.3,
       .duplicate_pct = 0.7,
       .corrupt_pct = 1e-3},
      {.rate_kbit = std::numeric_limits<std::uint32_t>::max(),
       .loss_pct = 100,
       .latency_ms = std::numeric_limits<std::uint32_t>::max(),
       .jitter_ms = 12345,
       .reorder_pct = 33.333333333333336,
       .duplicate_pct = 100,
       .corrupt_pct = 99.99},
      patchbay::preset_limits(LinkPreset::SatelliteGeo),
  };
  for (const LinkLimits& limits : cases) {
    const LinkCondition c = LinkCondition::manual(limits);
    const std::string text = patchbay::to_json(c);
    const LinkCondition back = patchbay::link_condition_from_json(text);
    EXPECT_EQ(back, c) << text;
    EXPECT_TRUE(back.is_manual()) << text;
  }
}

TEST(LinkConditionTest, ReadsUpstreamOutputForms) {
  EXPECT_EQ(patchbay::link_condition_from_json(R"("wifi_bad")"),
            LinkCondition::preset(LinkPreset::WifiBad));
  EXPECT_EQ(patchbay::link_condition_from_json(R"("mobile4_g")"),
            LinkCondition::preset(LinkPreset::Mobile4G));
  // The upstream event example (formats.md): {"manual": {all seven}}.
  EXPECT_EQ(patchbay::link_condition_from_json(
                R"({"manual":{"rate_kbit":500,"loss_pct":3.0,"latency_ms":80,"jitter_ms":0,)"
                R"("reorder_pct":0.0,"duplicate_pct":0.0,"corrupt_pct":0.0}})"),
            LinkCondition::manual({.rate_kbit = 500, .loss_pct = 3, .latency_ms = 80}));
}

TEST(LinkConditionTest, MissingLimitFieldsAreZero) {
  EXPECT_EQ(patchbay::link_condition_from_json(R"({"latency_ms": 15, "loss_pct": 0.5})"),
            LinkCondition::manual({.loss_pct = 0.5, .latency_ms = 15}));
  EXPECT_EQ(patchbay::link_condition_from_json("{}"), LinkCondition::manual({}));
  EXPECT_EQ(patchbay::link_condition_from_json(R"({"manual": {}})"), LinkCondition::manual({}));
  // An integer percentage is a percentage.
  EXPECT_EQ(patchbay::link_condition_from_json(R"({"corrupt_pct": 2})").limits().corrupt_pct, 2.0);
}

TEST(LinkConditionTest, UnknownLimitKeyIsAnErrorNamingTheKey) {
  const auto e =
      invalid_argument([] { (void)patchbay::link_condition_from_json(R"({"latncy_ms": 5})"); });
  EXPECT_EQ(e.culprit(), "latncy_ms");
  EXPECT_THAT(e.what(), HasSubstr("unknown key 'latncy_ms'"));
  EXPECT_THAT(e.what(), HasSubstr("latency_ms"));  // the expected keys are listed

  const auto nested = invalid_argument(
      [] { (void)patchbay::link_condition_from_json(R"({"manual": {"latency": 5}})"); });
  EXPECT_EQ(nested.culprit(), "manual.latency");
  EXPECT_THAT(nested.what(), HasSubstr("unknown key 'manual.latency'"));
  EXPECT_THAT(nested.what(), HasSubstr("did you mean 'latency_ms'?"));
}

TEST(LinkConditionTest, ManualMustBeTheOnlyKeyAndAnObject) {
  const auto mixed = invalid_argument([] {
    (void)patchbay::link_condition_from_json(R"({"manual": {"latency_ms": 5}, "loss_pct": 1})");
  });
  EXPECT_EQ(mixed.culprit(), "manual");
  EXPECT_THAT(mixed.what(), HasSubstr("only key"));

  const auto not_object =
      invalid_argument([] { (void)patchbay::link_condition_from_json(R"({"manual": "wifi"})"); });
  EXPECT_EQ(not_object.culprit(), "manual");
  EXPECT_THAT(not_object.what(), HasSubstr("\"wifi\""));
}

TEST(LinkConditionTest, WrongTypesAndOutOfRangeJsonValuesAreErrorsNamingKeyAndValue) {
  struct Case {
    const char* json;
    const char* culprit;
    const char* mentions;
  };
  const Case cases[] = {
      {R"({"latency_ms": "5"})", "latency_ms", "\"5\""},
      {R"({"latency_ms": -5})", "latency_ms", "-5"},
      {R"({"jitter_ms": 2.5})", "jitter_ms", "2.5"},
      {R"({"rate_kbit": 4294967296})", "rate_kbit", "4294967296"},
      {R"({"loss_pct": 150})", "loss_pct", "150"},
      {R"({"loss_pct": true})", "loss_pct", "true"},
      {R"({"manual": {"duplicate_pct": -1}})", "manual.duplicate_pct", "-1"},
      {R"({"reorder_pct": 10})", "reorder_pct", "reorder_pct 10"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json);
    const auto e = invalid_argument([&] { (void)patchbay::link_condition_from_json(c.json); });
    EXPECT_EQ(e.culprit(), c.culprit);
    EXPECT_THAT(e.what(), HasSubstr(c.culprit));
    EXPECT_THAT(e.what(), HasSubstr(c.mentions));
  }
}

TEST(LinkConditionTest, NonConditionJsonIsRejected) {
  EXPECT_THAT(
      invalid_argument([] { (void)patchbay::link_condition_from_json(R"("wifi-good")"); }).what(),
      HasSubstr("unknown link condition preset 'wifi-good'"));
  EXPECT_THAT(invalid_argument([] { (void)patchbay::link_condition_from_json("42"); }).what(),
              HasSubstr("expected a preset name or a limits object, got 42"));
  EXPECT_THAT(invalid_argument([] { (void)patchbay::link_condition_from_json("null"); }).what(),
              HasSubstr("got null"));
  EXPECT_THAT(invalid_argument([] { (void)patchbay::link_condition_from_json("{\"loss"); }).what(),
              HasSubstr("malformed JSON"));
}

TEST(LinkConditionTest, SingleConditionAppliesToBothDirections) {
  const LinkCondition wifi = LinkPreset::Wifi;
  const LinkConditions from_condition = wifi;
  const LinkConditions from_preset = LinkPreset::Wifi;
  EXPECT_EQ(from_condition.egress, wifi);
  EXPECT_EQ(from_condition.ingress, wifi);
  EXPECT_EQ(from_preset, from_condition);
  EXPECT_EQ(LinkConditions::both(wifi), from_condition);
  EXPECT_FALSE(from_condition.empty());
  EXPECT_TRUE(LinkConditions{}.empty());
}

TEST(LinkConditionTest, EachDirectionIsSettableOnItsOwn) {
  const LinkCondition up = LinkCondition::manual({.rate_kbit = 1'000});
  const LinkCondition down = LinkCondition::manual({.rate_kbit = 16'000});

  const auto egress = LinkConditions::egress_only(up);
  EXPECT_EQ(egress.egress, up);
  EXPECT_EQ(egress.ingress, std::nullopt);

  const auto ingress = LinkConditions::ingress_only(down);
  EXPECT_EQ(ingress.egress, std::nullopt);
  EXPECT_EQ(ingress.ingress, down);

  const auto dsl = LinkConditions::asymmetric(up, down);
  EXPECT_EQ(dsl.egress, up);
  EXPECT_EQ(dsl.ingress, down);
  EXPECT_NE(dsl, LinkConditions::both(up));

  EXPECT_EQ(LinkConditions::for_direction(LinkDirection::Egress, up), egress);
  EXPECT_EQ(LinkConditions::for_direction(LinkDirection::Ingress, down), ingress);
  EXPECT_EQ(LinkConditions::for_direction(LinkDirection::Both, up), LinkConditions::both(up));
}

TEST(LinkConditionTest, DirectionNamesRoundTripAndUnknownOnesAreRejected) {
  for (LinkDirection d : {LinkDirection::Egress, LinkDirection::Ingress, LinkDirection::Both}) {
    EXPECT_EQ(patchbay::parse_link_direction(patchbay::to_string(d)), d);
  }
  EXPECT_EQ(patchbay::to_string(LinkDirection::Egress), "egress");
  EXPECT_EQ(patchbay::to_string(LinkDirection::Ingress), "ingress");
  EXPECT_EQ(patchbay::to_string(LinkDirection::Both), "both");
  const auto e = invalid_argument([] { (void)patchbay::parse_link_direction("upload"); });
  EXPECT_EQ(e.culprit(), "upload");
  EXPECT_THAT(e.what(), HasSubstr("'upload'"));
}

TEST(LinkConditionTest, PrintsReadableValuesForTestOutput) {
  auto printed = [](const auto& value) {
    std::ostringstream os;
    os << value;
    return os.str();
  };
  EXPECT_EQ(printed(LinkPreset::SatelliteGeo), "satellite-geo");
  EXPECT_EQ(printed(LinkDirection::Ingress), "ingress");
  EXPECT_EQ(printed(LinkLimits{}), "{}");
  EXPECT_EQ(printed(LinkLimits{.loss_pct = 0.5, .latency_ms = 15}),
            "{loss_pct=0.5, latency_ms=15}");
  EXPECT_EQ(printed(LinkCondition::preset(LinkPreset::WifiBad)), "wifi-bad");
  EXPECT_EQ(printed(LinkCondition::manual({.rate_kbit = 500, .corrupt_pct = 0.1})),
            "manual{rate_kbit=500, corrupt_pct=0.1}");
  EXPECT_EQ(printed(LinkConditions(LinkPreset::Wifi)), "both=wifi");
  EXPECT_EQ(printed(LinkConditions::egress_only(LinkPreset::Lan)), "egress=lan ingress=none");
  EXPECT_EQ(printed(LinkConditions{}), "egress=none ingress=none");
  // GoogleTest uses operator<< for failure messages.
  EXPECT_EQ(::testing::PrintToString(LinkCondition::preset(LinkPreset::Mobile3G)), "mobile-3g");
}

}  // namespace
