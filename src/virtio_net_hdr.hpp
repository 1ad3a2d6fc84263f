// The legacy struct virtio_net_hdr that TAP devices (IFF_VNET_HDR) and AF_PACKET sockets
// (PACKET_VNET_HDR) put in front of every frame, so GSO superpackets and partial checksums cross
// userspace unchanged. <linux/virtio_net.h> does not compile as C++ (a member named `class`).
//
//   VirtioNetHdr hdr;
//   std::memcpy(&hdr, record, kVnetHdrLen);            // record: as read from the socket
//   const unsigned char* frame = record + kVnetHdrLen;  // the Ethernet frame
//   bool gso = (hdr.gso_type & ~kVnetGsoEcn) != kVnetGsoNone;
//
// Fields are in native byte order (legacy virtio on a little-endian host; neither endpoint is
// switched to TUNSETVNETBE/LE). Copy in and out with memcpy: records are not aligned.
#pragma once

#include <cstddef>
#include <cstdint>

namespace patchbay::internal {

struct VirtioNetHdr {
  std::uint8_t flags;
  std::uint8_t gso_type;
  std::uint16_t hdr_len;      // bytes of headers (a hint for the linear part)
  std::uint16_t gso_size;     // payload bytes per segment (the MSS for TCP)
  std::uint16_t csum_start;   // with kVnetFlagNeedsCsum: offset of the L4 header in the frame
  std::uint16_t csum_offset;  // the checksum field's offset from csum_start
};
static_assert(sizeof(VirtioNetHdr) == 10);

inline constexpr std::size_t kVnetHdrLen = sizeof(VirtioNetHdr);

inline constexpr std::uint8_t kVnetFlagNeedsCsum = 1;  // CHECKSUM_PARTIAL
inline constexpr std::uint8_t kVnetFlagDataValid = 2;  // CHECKSUM_UNNECESSARY

inline constexpr std::uint8_t kVnetGsoNone = 0;
inline constexpr std::uint8_t kVnetGsoTcpv4 = 1;
inline constexpr std::uint8_t kVnetGsoUdp = 3;  // legacy UFO (IP fragmentation)
inline constexpr std::uint8_t kVnetGsoTcpv6 = 4;
inline constexpr std::uint8_t kVnetGsoUdpL4 = 5;   // UDP segmentation (UDP_SEGMENT)
inline constexpr std::uint8_t kVnetGsoEcn = 0x80;  // TCP with CWR set: only the first segment

}  // namespace patchbay::internal
