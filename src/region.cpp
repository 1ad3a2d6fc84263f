#include "patchbay/region.hpp"

namespace patchbay {

LinkCondition RegionLink::condition() const {
  return LinkCondition::manual({.rate_kbit = rate_mbit * 1000,
                                .loss_pct = loss_pct,
                                .latency_ms = latency_ms,
                                .jitter_ms = jitter_ms});
}

}  // namespace patchbay
