// The downlink splice's table (bridge pb_downlink): while the userspace link emulator impairs a
// router's downlink, every frame the router's own stack sends into its LAN bridge is dropped at
// the bridge's output hook, after the emulator's AF_PACKET socket on the bridge device has
// taken its copy (taps see a frame before the bridge forwards it). The emulator then sends the
// frame, impaired, into the bridge through a port of its own.
//
//   table bridge pb_downlink {
//     chain out { type filter hook output priority filter; drop }
//   }
//
// Frames the bridge forwards between its ports never pass the output hook, so device-to-device
// traffic on the LAN is not affected, as with netem on the bridge device.
#pragma once

#include "nft_rule.hpp"

namespace patchbay::internal {

inline constexpr const char* kDownlinkTable = "pb_downlink";  // bridge

// The table, or (wanted false) its deletion.
NftTableSpec plan_downlink_divert(bool wanted);

}  // namespace patchbay::internal
