#include "patchbay/link_condition.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <ostream>
#include <utility>

#include "patchbay/error.hpp"

namespace patchbay {
namespace {

using nlohmann::json;

// Shortest text that reads back as the same double, so printed values match what was set.
std::string format_number(double value) {
  std::array<char, 32> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), value);
  if (ec != std::errc()) return "?";
  return std::string(buf.data(), end);
}

void check_percent(const char* field, double value) {
  if (!std::isfinite(value) || value < 0 || value > 100) {
    throw Error(ErrorKind::kInvalidArgument, field,
                std::string("link limits: ") + field + " must be a percentage within 0..100, got " +
                    format_number(value));
  }
}

// Field names in output order; LinkLimits declares them in the same order.
constexpr std::array<const char*, 7> kLimitKeys = {"rate_kbit",  "loss_pct",    "latency_ms",
                                                   "jitter_ms",  "reorder_pct", "duplicate_pct",
                                                   "corrupt_pct"};

std::string expected_keys() {
  std::string out;
  for (const char* key : kLimitKeys) {
    if (!out.empty()) out += ", ";
    out += key;
  }
  return out;
}

[[noreturn]] void json_error(const std::string& culprit, const std::string& message) {
  throw Error(ErrorKind::kInvalidArgument, culprit, "link condition JSON: " + message);
}

std::string json_text(const json& value) { return value.dump(); }

std::uint32_t read_u32(const json& value, const std::string& path, const char* unit) {
  if (value.is_number_unsigned()) {
    const auto n = value.get<std::uint64_t>();
    if (n <= std::numeric_limits<std::uint32_t>::max()) return static_cast<std::uint32_t>(n);
    json_error(path, path + " must fit 32 bits (" + unit + "), got " + json_text(value));
  }
  json_error(path,
             path + " must be a non-negative integer (" + unit + "), got " + json_text(value));
}

double read_percent(const json& value, const std::string& path) {
  if (!value.is_number()) {
    json_error(path, path + " must be a number (percent), got " + json_text(value));
  }
  const double pct = value.get<double>();
  if (!std::isfinite(pct) || pct < 0 || pct > 100) {
    json_error(path, path + " must be a percentage within 0..100, got " + json_text(value));
  }
  return pct;
}

// Some upstream versions took the bare names as aliases; we do not (one spelling per field), but
// point at the right key instead of only listing them.
std::string hint_for(const std::string& key) {
  if (key == "rate") return ", did you mean 'rate_kbit'?";
  if (key == "loss") return ", did you mean 'loss_pct'?";
  if (key == "latency" || key == "delay") return ", did you mean 'latency_ms'?";
  if (key == "jitter") return ", did you mean 'jitter_ms'?";
  return "";
}

LinkLimits read_limits(const json& object, const std::string& prefix) {
  LinkLimits limits;
  for (const auto& [key, value] : object.items()) {
    const std::string path = prefix + key;
    if (key == "rate_kbit") {
      limits.rate_kbit = read_u32(value, path, "kbit/s");
    } else if (key == "loss_pct") {
      limits.loss_pct = read_percent(value, path);
    } else if (key == "latency_ms") {
      limits.latency_ms = read_u32(value, path, "ms");
    } else if (key == "jitter_ms") {
      limits.jitter_ms = read_u32(value, path, "ms");
    } else if (key == "reorder_pct") {
      limits.reorder_pct = read_percent(value, path);
    } else if (key == "duplicate_pct") {
      limits.duplicate_pct = read_percent(value, path);
    } else if (key == "corrupt_pct") {
      limits.corrupt_pct = read_percent(value, path);
    } else {
      json_error(path, "unknown key '" + path + "' in link limits" + hint_for(key) + " (expected " +
                           expected_keys() + ")");
    }
  }
  return limits;
}

}  // namespace

bool LinkLimits::is_empty() const { return *this == LinkLimits{}; }

void LinkLimits::validate() const {
  check_percent("loss_pct", loss_pct);
  check_percent("reorder_pct", reorder_pct);
  check_percent("duplicate_pct", duplicate_pct);
  check_percent("corrupt_pct", corrupt_pct);
  // netem reorders by sending the chosen packets without the delay; with no delay every packet
  // already leaves at once, so the setting would be silently without effect.
  if (reorder_pct > 0 && latency_ms == 0 && jitter_ms == 0) {
    throw Error(ErrorKind::kInvalidArgument, "reorder_pct",
                "link limits: reorder_pct " + format_number(reorder_pct) +
                    " needs a delay (latency_ms or jitter_ms > 0) to reorder against");
  }
}

LinkLimits preset_limits(LinkPreset preset) {
  switch (preset) {
    case LinkPreset::Lan:
      return {};
    case LinkPreset::Wifi:
      return {.loss_pct = 0.1, .latency_ms = 5, .jitter_ms = 2};
    case LinkPreset::WifiBad:
      return {.rate_kbit = 20'000, .loss_pct = 2.0, .latency_ms = 40, .jitter_ms = 15};
    case LinkPreset::Mobile4G:
      return {.loss_pct = 0.5, .latency_ms = 25, .jitter_ms = 8};
    case LinkPreset::Mobile3G:
      return {.rate_kbit = 2'000, .loss_pct = 2.0, .latency_ms = 100, .jitter_ms = 30};
    case LinkPreset::Satellite:
      return {.loss_pct = 1.0, .latency_ms = 40, .jitter_ms = 7};
    case LinkPreset::SatelliteGeo:
      return {.rate_kbit = 25'000, .loss_pct = 0.5, .latency_ms = 300, .jitter_ms = 20};
  }
  // Only reachable through a value cast from outside the enum's range.
  throw Error(ErrorKind::kInvalidArgument, "", "unknown link preset");
}

LinkCondition LinkCondition::manual(const LinkLimits& limits) {
  limits.validate();
  LinkCondition c;
  c.preset_.reset();
  c.limits_ = limits;
  return c;
}

LinkConditions LinkConditions::egress_only(const LinkCondition& c) {
  LinkConditions out;
  out.egress = c;
  return out;
}

LinkConditions LinkConditions::ingress_only(const LinkCondition& c) {
  LinkConditions out;
  out.ingress = c;
  return out;
}

LinkConditions LinkConditions::asymmetric(const LinkCondition& egress,
                                          const LinkCondition& ingress) {
  LinkConditions out;
  out.egress = egress;
  out.ingress = ingress;
  return out;
}

LinkConditions LinkConditions::for_direction(LinkDirection direction, const LinkCondition& c) {
  switch (direction) {
    case LinkDirection::Egress:
      return egress_only(c);
    case LinkDirection::Ingress:
      return ingress_only(c);
    case LinkDirection::Both:
      return both(c);
  }
  throw Error(ErrorKind::kInvalidArgument, "", "unknown link direction");
}

std::string_view to_string(LinkPreset preset) {
  switch (preset) {
    case LinkPreset::Lan:
      return "lan";
    case LinkPreset::Wifi:
      return "wifi";
    case LinkPreset::WifiBad:
      return "wifi-bad";
    case LinkPreset::Mobile4G:
      return "mobile-4g";
    case LinkPreset::Mobile3G:
      return "mobile-3g";
    case LinkPreset::Satellite:
      return "satellite";
    case LinkPreset::SatelliteGeo:
      return "satellite-geo";
  }
  return "unknown";
}

LinkPreset parse_link_preset(std::string_view name) {
  static constexpr std::pair<std::string_view, LinkPreset> kSpellings[] = {
      {"lan", LinkPreset::Lan},
      {"wifi", LinkPreset::Wifi},
      {"wifi-bad", LinkPreset::WifiBad},
      {"wifi_bad", LinkPreset::WifiBad},
      {"mobile-4g", LinkPreset::Mobile4G},
      {"mobile", LinkPreset::Mobile4G},
      {"mobile4_g", LinkPreset::Mobile4G},
      {"mobile_4g", LinkPreset::Mobile4G},
      {"mobile-3g", LinkPreset::Mobile3G},
      {"mobile3_g", LinkPreset::Mobile3G},
      {"mobile_3g", LinkPreset::Mobile3G},
      {"satellite", LinkPreset::Satellite},
      {"satellite-geo", LinkPreset::SatelliteGeo},
      {"satellite_geo", LinkPreset::SatelliteGeo},
  };
  for (const auto& [spelling, preset] : kSpellings) {
    if (spelling == name) return preset;
  }
  std::string expected;
  for (LinkPreset p : kAllLinkPresets) {
    if (!expected.empty()) expected += ", ";
    expected += to_string(p);
  }
  throw Error(
      ErrorKind::kInvalidArgument, std::string(name),
      "unknown link condition preset '" + std::string(name) + "' (expected " + expected + ")");
}

std::string_view to_string(LinkDirection direction) {
  switch (direction) {
    case LinkDirection::Egress:
      return "egress";
    case LinkDirection::Ingress:
      return "ingress";
    case LinkDirection::Both:
      return "both";
  }
  return "unknown";
}

LinkDirection parse_link_direction(std::string_view name) {
  for (LinkDirection d : {LinkDirection::Egress, LinkDirection::Ingress, LinkDirection::Both}) {
    if (to_string(d) == name) return d;
  }
  throw Error(
      ErrorKind::kInvalidArgument, std::string(name),
      "unknown link direction '" + std::string(name) + "' (expected egress, ingress, both)");
}

std::string_view to_string(LinkBackend backend) {
  switch (backend) {
    case LinkBackend::Auto:
      return "auto";
    case LinkBackend::Kernel:
      return "kernel";
    case LinkBackend::Userspace:
      return "userspace";
  }
  return "unknown";
}

LinkBackend parse_link_backend(std::string_view name) {
  for (LinkBackend b : {LinkBackend::Auto, LinkBackend::Kernel, LinkBackend::Userspace}) {
    if (to_string(b) == name) return b;
  }
  throw Error(
      ErrorKind::kInvalidArgument, std::string(name),
      "unknown link backend '" + std::string(name) + "' (expected auto, kernel, userspace)");
}

std::string to_string(const LinkLimits& l) {
  std::string out;
  auto field = [&out](const char* name, const std::string& value) {
    out += out.empty() ? "{" : ", ";
    out += name;
    out += '=';
    out += value;
  };
  if (l.rate_kbit != 0) field("rate_kbit", std::to_string(l.rate_kbit));
  if (l.loss_pct != 0) field("loss_pct", format_number(l.loss_pct));
  if (l.latency_ms != 0) field("latency_ms", std::to_string(l.latency_ms));
  if (l.jitter_ms != 0) field("jitter_ms", std::to_string(l.jitter_ms));
  if (l.reorder_pct != 0) field("reorder_pct", format_number(l.reorder_pct));
  if (l.duplicate_pct != 0) field("duplicate_pct", format_number(l.duplicate_pct));
  if (l.corrupt_pct != 0) field("corrupt_pct", format_number(l.corrupt_pct));
  return out.empty() ? "{}" : out + "}";
}

std::string to_string(const LinkCondition& condition) {
  if (auto preset = condition.preset()) return std::string(to_string(*preset));
  return "manual" + to_string(condition.limits());
}

std::string to_string(const LinkConditions& conditions) {
  auto side = [](const std::optional<LinkCondition>& c) {
    return c ? to_string(*c) : std::string("none");
  };
  if (conditions.egress && conditions.egress == conditions.ingress) {
    return "both=" + side(conditions.egress);
  }
  return "egress=" + side(conditions.egress) + " ingress=" + side(conditions.ingress);
}

std::ostream& operator<<(std::ostream& os, LinkPreset preset) { return os << to_string(preset); }
std::ostream& operator<<(std::ostream& os, LinkDirection direction) {
  return os << to_string(direction);
}
std::ostream& operator<<(std::ostream& os, LinkBackend backend) { return os << to_string(backend); }
std::ostream& operator<<(std::ostream& os, const LinkLimits& limits) {
  return os << to_string(limits);
}
std::ostream& operator<<(std::ostream& os, const LinkCondition& condition) {
  return os << to_string(condition);
}
std::ostream& operator<<(std::ostream& os, const LinkConditions& conditions) {
  return os << to_string(conditions);
}

std::string to_json(const LinkCondition& condition) {
  if (auto preset = condition.preset()) return json(std::string(to_string(*preset))).dump();
  const LinkLimits& l = condition.limits();
  // ordered_json keeps the declaration order, so the output reads like the struct.
  nlohmann::ordered_json out;
  out["rate_kbit"] = l.rate_kbit;
  out["loss_pct"] = l.loss_pct;
  out["latency_ms"] = l.latency_ms;
  out["jitter_ms"] = l.jitter_ms;
  out["reorder_pct"] = l.reorder_pct;
  out["duplicate_pct"] = l.duplicate_pct;
  out["corrupt_pct"] = l.corrupt_pct;
  return out.dump();
}

LinkCondition link_condition_from_json(std::string_view text) {
  json value;
  try {
    value = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    json_error(std::string(text), "malformed JSON '" + std::string(text) + "': " + e.what());
  }
  if (value.is_string()) {
    const auto& name = value.get_ref<const std::string&>();
    try {
      return LinkCondition::preset(parse_link_preset(name));
    } catch (const Error& e) {
      json_error(name, e.what());
    }
  }
  if (!value.is_object()) {
    json_error(json_text(value),
               "expected a preset name or a limits object, got " + json_text(value));
  }
  LinkLimits limits;
  if (value.contains("manual")) {
    if (value.size() != 1) {
      json_error("manual", "'manual' must be the only key of its object, got " + json_text(value));
    }
    const json& inner = value.at("manual");
    if (!inner.is_object()) {
      json_error("manual", "manual must be a limits object, got " + json_text(inner));
    }
    limits = read_limits(inner, "manual.");
  } else {
    limits = read_limits(value, "");
  }
  return LinkCondition::manual(limits);
}

}  // namespace patchbay
