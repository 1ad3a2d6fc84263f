// Link conditions: latency, jitter, loss, rate, reordering, duplication and corruption of a link,
// as a named preset or as manual limits, for one or both directions.
//
//   using patchbay::LinkCondition;
//   using patchbay::LinkPreset;
//
//   LinkCondition wifi = LinkCondition::preset(LinkPreset::Wifi);  // 5 ms ± 2 ms, 0.1 % loss
//   LinkCondition lossy = LinkCondition::manual({.loss_pct = 0.5, .latency_ms = 15});
//
//   // A condition alone applies in both directions; asymmetric access links give each its own.
//   patchbay::LinkConditions both = wifi;
//   auto dsl = patchbay::LinkConditions::asymmetric(
//       LinkCondition::manual({.rate_kbit = 1'000, .latency_ms = 10}),     // upload
//       LinkCondition::manual({.rate_kbit = 16'000, .latency_ms = 10}));   // download
//
//   // Text forms: presets by name, manual limits as a bare JSON object.
//   patchbay::parse_link_preset("mobile-4g");                        // LinkPreset::Mobile4G
//   patchbay::to_json(lossy);  // {"rate_kbit":0,"loss_pct":0.5,"latency_ms":15,...}
//   patchbay::link_condition_from_json(R"("wifi-bad")");              // LinkPreset::WifiBad
//
// These are values only; nodes apply them (set at build time, changed or cleared at runtime).
#pragma once

#include <array>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

namespace patchbay {

// The manual form. Every field 0 means "no impairment" (the same effect as LinkPreset::Lan).
// Designated initializers name only what they change: LinkLimits{.loss_pct = 1, .latency_ms = 20}.
struct LinkLimits {
  // Bandwidth cap in kbit/s (1 kbit = 1000 bit); 0 = unlimited.
  std::uint32_t rate_kbit = 0;
  // Random packet loss, percent (0..100).
  double loss_pct = 0;
  // Added one-way delay on each impaired direction, ms. A condition on both directions of a link
  // adds it twice to a round trip.
  std::uint32_t latency_ms = 0;
  // Random variation of the delay, ms: each packet is delayed latency_ms ± jitter_ms (uniform).
  // With the Kernel backend (netem) packets then leave in the order of their own send times, so
  // jitter reorders; the userspace emulator keeps each direction in order (only reorder_pct
  // reorders). jitter_ms > latency_ms is accepted as netem accepts it: draws below zero are sent
  // at once, so some packets are undelayed and the mean delay exceeds latency_ms.
  std::uint32_t jitter_ms = 0;
  // Share of packets sent at once instead of after the delay, percent. Needs a delay
  // (latency_ms or jitter_ms), which validate() insists on: without one it would do nothing.
  double reorder_pct = 0;
  // Share of packets sent twice, percent.
  double duplicate_pct = 0;
  // Share of packets with one flipped bit, percent.
  double corrupt_pct = 0;

  // True when every field is 0.
  bool is_empty() const;
  // Throws Error(kInvalidArgument) naming the field and its value: a percentage that is not a
  // finite number within 0..100, or reorder_pct without a delay.
  void validate() const;

  friend bool operator==(const LinkLimits&, const LinkLimits&) = default;
};

// Named last-mile conditions. Their numbers (preset_limits) are upstream patchbay's code values;
// reorder, duplicate and corrupt are 0 in all of them.
enum class LinkPreset {
  Lan,           // no impairment
  Wifi,          // 5 ms ± 2 ms, 0.1 % loss
  WifiBad,       // 40 ms ± 15 ms, 2 % loss, 20 000 kbit/s
  Mobile4G,      // 25 ms ± 8 ms, 0.5 % loss
  Mobile3G,      // 100 ms ± 30 ms, 2 % loss, 2 000 kbit/s
  Satellite,     // LEO: 40 ms ± 7 ms, 1 % loss
  SatelliteGeo,  // GEO: 300 ms ± 20 ms, 0.5 % loss, 25 000 kbit/s
};

inline constexpr std::array<LinkPreset, 7> kAllLinkPresets = {
    LinkPreset::Lan,      LinkPreset::Wifi,      LinkPreset::WifiBad,     LinkPreset::Mobile4G,
    LinkPreset::Mobile3G, LinkPreset::Satellite, LinkPreset::SatelliteGeo};

LinkLimits preset_limits(LinkPreset preset);

// A preset or manual limits; always valid (manual() validates). Equality compares the form as
// well as the numbers: manual(preset_limits(Wifi)) != preset(Wifi), because the two serialize
// differently; compare limits() for the same effect.
class LinkCondition {
 public:
  // No impairment (LinkPreset::Lan).
  LinkCondition() = default;
  // Implicit, so a preset can stand wherever a condition is expected.
  LinkCondition(LinkPreset preset) : preset_(preset), limits_(preset_limits(preset)) {}

  static LinkCondition preset(LinkPreset preset) { return LinkCondition(preset); }
  // Throws Error(kInvalidArgument) if `limits` fails LinkLimits::validate().
  static LinkCondition manual(const LinkLimits& limits);

  // The numbers to apply, for presets and manual conditions alike.
  const LinkLimits& limits() const { return limits_; }
  // The preset, or nullopt for manual limits.
  std::optional<LinkPreset> preset() const { return preset_; }
  bool is_manual() const { return !preset_; }

  friend bool operator==(const LinkCondition&, const LinkCondition&) = default;

 private:
  std::optional<LinkPreset> preset_ = LinkPreset::Lan;
  LinkLimits limits_;
};

// One side of a link, seen from the node that owns the interface.
enum class LinkDirection {
  Egress,   // what the node sends on the interface: a device's upload; for a router's LAN side
            // (downlink condition) the traffic into the LAN
  Ingress,  // what the node receives on it: a device's download
  Both,
};

// The condition of each direction of one interface. A direction without a condition is
// unimpaired; setting a LinkConditions replaces both directions, so an empty one clears the
// link. A single LinkCondition (or LinkPreset) converts to both(), which is what "this link is
// Wi-Fi" means.
struct LinkConditions {
  std::optional<LinkCondition> egress;
  std::optional<LinkCondition> ingress;

  LinkConditions() = default;
  LinkConditions(LinkCondition both) : egress(both), ingress(both) {}
  LinkConditions(LinkPreset both) : LinkConditions(LinkCondition(both)) {}

  static LinkConditions both(const LinkCondition& c) { return LinkConditions(c); }
  static LinkConditions egress_only(const LinkCondition& c);
  static LinkConditions ingress_only(const LinkCondition& c);
  static LinkConditions asymmetric(const LinkCondition& egress, const LinkCondition& ingress);
  static LinkConditions for_direction(LinkDirection direction, const LinkCondition& c);

  // True when neither direction has a condition.
  bool empty() const { return !egress && !ingress; }

  friend bool operator==(const LinkConditions&, const LinkConditions&) = default;
};

// Canonical names, which parse back: "lan", "wifi", "wifi-bad", "mobile-4g", "mobile-3g",
// "satellite", "satellite-geo".
std::string_view to_string(LinkPreset preset);
// Accepts the canonical names, the alias "mobile" (Mobile4G), upstream's output spellings
// ("wifi_bad", "mobile4_g", "mobile3_g", "satellite_geo") and its UI's ("mobile_4g",
// "mobile_3g"). Throws Error(kInvalidArgument) naming the text otherwise.
LinkPreset parse_link_preset(std::string_view name);

// How a lab applies link conditions.
enum class LinkBackend {
  // Kernel when sch_netem is there (probed once per process), Userspace otherwise.
  Auto,
  // netem + tbf qdiscs, programmed over rtnetlink: egress on the node's end of the link,
  // ingress on the far end. Fails (Error(kKernel), errno ENOENT) where sch_netem is missing.
  Kernel,
  // The lab's userspace link emulator: one thread moves the link's frames through a per-packet
  // model (latency, jitter, loss, rate, reorder, duplicate, corrupt). Works on every kernel.
  Userspace,
};

// "egress", "ingress", "both"; parse_link_direction throws Error(kInvalidArgument) for others.
std::string_view to_string(LinkDirection direction);
LinkDirection parse_link_direction(std::string_view name);
// "auto", "kernel", "userspace"; parse_link_backend throws Error(kInvalidArgument) for others.
std::string_view to_string(LinkBackend backend);
LinkBackend parse_link_backend(std::string_view name);

// For humans and test output, not for parsing (use to_json): the non-zero fields,
// "{loss_pct=0.5, latency_ms=15}", or "{}".
std::string to_string(const LinkLimits& limits);
// "wifi-bad" for presets, "manual{loss_pct=0.5, latency_ms=15}" for manual limits.
std::string to_string(const LinkCondition& condition);
// "both=wifi" when the directions agree, else "egress=wifi ingress=none".
std::string to_string(const LinkConditions& conditions);

std::ostream& operator<<(std::ostream& os, LinkPreset preset);
std::ostream& operator<<(std::ostream& os, LinkDirection direction);
std::ostream& operator<<(std::ostream& os, LinkBackend backend);
std::ostream& operator<<(std::ostream& os, const LinkLimits& limits);
std::ostream& operator<<(std::ostream& os, const LinkCondition& condition);
std::ostream& operator<<(std::ostream& os, const LinkConditions& conditions);

// The canonical JSON text: a preset as its name string ("\"wifi-bad\""), manual limits as a bare
// object with all seven fields. link_condition_from_json reads it back to an equal value.
std::string to_json(const LinkCondition& condition);
// Reads the canonical form, any preset spelling parse_link_preset accepts, and upstream's
// {"manual": {...}}. Missing limit fields are 0. Throws Error(kInvalidArgument) naming the key or
// value at fault: malformed JSON, an unknown key, a value of the wrong type or out of range.
LinkCondition link_condition_from_json(std::string_view json);

}  // namespace patchbay
