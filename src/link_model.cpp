#include "link_model.hpp"

#include <algorithm>

namespace patchbay::internal {
namespace {

// splitmix64: a small, fast generator of good statistical quality, and the same on every
// platform and standard library (std::*_distribution are not), so a seed means the same pattern
// everywhere.
std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

std::uint64_t derive_seed(std::uint64_t lab_seed, std::uint64_t link_id, std::uint64_t direction) {
  std::uint64_t state = lab_seed;
  std::uint64_t seed = splitmix64(state) ^ link_id;
  state = seed;
  seed = splitmix64(state) ^ direction;
  state = seed;
  return splitmix64(state);
}

LinkModel::LinkModel(const LinkModelParams& params, std::uint64_t seed)
    : params_(params), state_(seed) {}

double LinkModel::uniform() { return static_cast<double>(splitmix64(state_) >> 11) * 0x1.0p-53; }

std::vector<LinkModel::Departure> LinkModel::admit(Time now, std::size_t bytes) {
  ++stats_.admitted;
  // Every packet takes all its draws, whatever the parameters, so the sequence of decisions
  // for a given seed does not shift when a parameter is zero or changes at runtime.
  const double u_loss = uniform();
  const double u_duplicate = uniform();
  const double u_corrupt = uniform();
  const double u_bit = uniform();
  const double u_reorder = uniform();
  const double u_jitter = uniform();

  if (u_loss * 100 < params_.loss_pct) {
    ++stats_.lost;
    return {};
  }

  Time leaves_rate_stage = now;
  if (params_.rate_bps > 0) {
    const Time start = std::max(now, link_free_at_);
    if (start - now > params_.max_queue_delay) {
      ++stats_.queue_drops;
      return {};
    }
    const auto transmit = Time(static_cast<std::int64_t>(static_cast<double>(bytes) * 8 * 1e9 /
                                                         static_cast<double>(params_.rate_bps)));
    link_free_at_ = start + transmit;
    leaves_rate_stage = link_free_at_;
  }

  Time at;
  // With jitter alone the delay line still holds packets (up to 2 x jitter), so there is
  // something to overtake, as with netem.
  if ((params_.latency > Time(0) || params_.jitter > Time(0)) &&
      u_reorder * 100 < params_.reorder_pct) {
    // Skips the delay line and overtakes whatever waits in it.
    ++stats_.reordered;
    at = leaves_rate_stage;
  } else {
    Time jitter(0);
    if (params_.jitter > Time(0)) {
      jitter = Time(static_cast<std::int64_t>((2 * u_jitter - 1) *
                                              static_cast<double>(params_.jitter.count())));
    }
    at = std::max(leaves_rate_stage + params_.latency + jitter, leaves_rate_stage);
    // Jitter must not reorder: a packet leaves no earlier than the one before it.
    at = std::max(at, last_in_order_);
    last_in_order_ = at;
  }

  std::optional<std::size_t> bit;
  if (bytes > 0 && u_corrupt * 100 < params_.corrupt_pct) {
    ++stats_.corrupted;
    bit = std::min(static_cast<std::size_t>(u_bit * static_cast<double>(bytes * 8)), bytes * 8 - 1);
  }
  std::vector<Departure> out{{at, bit}};
  if (u_duplicate * 100 < params_.duplicate_pct) {
    ++stats_.duplicated;
    out.push_back({at, std::nullopt});
  }
  return out;
}

}  // namespace patchbay::internal
