// The per-packet behaviour of one direction of an emulated link, as pure logic on a caller-given
// clock: the userspace link emulator feeds it each packet's arrival and size and gets back
// whether (and how often, and when) the packet leaves. Keeping it free of sockets and threads
// makes every statistical property testable with virtual time.
//
//   LinkModel model(LinkModelParams{.latency = 20ms, .loss_pct = 1.0}, derive_seed(seed, 7, 0));
//   for (const LinkModel::Departure& d : model.admit(now, packet.size())) {
//     schedule(packet, d.at, d.corrupt_bit);  // 0, 1 or 2 departures
//   }
//
// Semantics (netem's, with the fixes the issue asks for):
//  * loss, duplicate and corrupt are independent per-packet draws;
//  * the rate is a serializer: a packet leaves the rate stage when the link is free, the queue
//    in front of it is bounded by `max_queue_delay` (tail drop beyond it);
//  * latency + jitter (uniform in [-jitter, +jitter]) is added after the rate stage, and packets
//    stay in order (a packet never overtakes an earlier one) unless reordering is asked for;
//  * reorder_pct: that share of packets skips the delay and leaves at once, overtaking delayed
//    ones (so it only has an effect with latency > 0, as with netem).
// The RNG is seeded: the same seed and the same packet sequence give the same decisions. Each
// packet consumes the same number of draws whatever the parameters, so a drop pattern stays
// aligned with the packet sequence.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace patchbay::internal {

struct LinkModelParams {
  std::chrono::nanoseconds latency{0};
  std::chrono::nanoseconds jitter{0};
  double loss_pct = 0;
  double duplicate_pct = 0;
  double corrupt_pct = 0;
  double reorder_pct = 0;
  std::uint64_t rate_bps = 0;  // bits per second; 0: unlimited
  // Longest a packet may wait for the rate stage before it is dropped (tbf's "latency").
  std::chrono::nanoseconds max_queue_delay{std::chrono::milliseconds(400)};
  friend bool operator==(const LinkModelParams&, const LinkModelParams&) = default;
};

// A seed for one direction of one link, mixed from the lab's seed so links do not share a drop
// pattern but a lab seed reproduces all of them.
std::uint64_t derive_seed(std::uint64_t lab_seed, std::uint64_t link_id, std::uint64_t direction);

class LinkModel {
 public:
  using Time = std::chrono::nanoseconds;  // on the caller's monotonic clock

  struct Departure {
    Time at;
    std::optional<std::size_t> corrupt_bit;  // flip this bit of the packet (index < 8 * size)
  };

  struct Stats {
    std::uint64_t admitted = 0;
    std::uint64_t lost = 0;         // random loss
    std::uint64_t queue_drops = 0;  // rate stage full
    std::uint64_t duplicated = 0;
    std::uint64_t corrupted = 0;
    std::uint64_t reordered = 0;
  };

  LinkModel(const LinkModelParams& params, std::uint64_t seed);

  // Takes effect for the next admitted packet; packets already scheduled keep their times.
  void set_params(const LinkModelParams& params) { params_ = params; }
  const LinkModelParams& params() const { return params_; }

  // Decides the fate of a packet of `bytes` arriving at `now` (calls must have non-decreasing
  // `now`). Returns no departure for a dropped packet, two for a duplicated one.
  std::vector<Departure> admit(Time now, std::size_t bytes);

  const Stats& stats() const { return stats_; }

 private:
  double uniform();  // [0, 1)

  LinkModelParams params_;
  std::uint64_t state_;
  Time link_free_at_{0};   // when the rate stage finishes the last queued packet
  Time last_in_order_{0};  // departure of the last packet that kept its place
  Stats stats_;
};

}  // namespace patchbay::internal
