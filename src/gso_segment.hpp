// Software GSO for the userspace link emulator: splits a GSO superpacket, as read from an
// AF_PACKET socket or TAP device with a virtio_net_hdr, into the wire packets the kernel's GSO
// would have sent, so loss, corruption, duplication and reordering can act per wire packet.
//
//   GsoSegmenter seg;  // one per pump thread; its buffers are reused from call to call
//   if (seg.split(record, record_len) == GsoStatus::kSegmented) {
//     for (std::size_t i = 0; i < seg.count(); ++i) {
//       std::span<unsigned char> s = seg.segment(i);  // VirtioNetHdr + Ethernet frame
//       ::write(out_fd, s.data(), s.size());
//     }
//   } else {
//     ::write(out_fd, record, record_len);  // anything else crosses unchanged
//   }
//
// Handled: TCPv4, TCPv6 (with or without the ECN bit) and UDP_L4 over IPv4 or IPv6, untagged
// Ethernet, IPv6 hop-by-hop/routing/destination-options headers. The segments follow the
// kernel's tcp_gso_segment/__udp_gso_segment: headers copied, IP lengths and the IPv4 id
// (original + index) and header checksum rewritten, TCP seq advanced, FIN/PSH only on the last
// segment and CWR only on the first, UDP length per segment. The L4 checksum stays partial
// (NEEDS_CSUM, the input's csum_start/csum_offset, the field holding the pseudo-header sum for
// the segment's length, derived from the input's as the kernel does), so no payload is summed
// and the receiver treats the segments like locally generated traffic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "virtio_net_hdr.hpp"

namespace patchbay::internal {

enum class GsoStatus : std::uint8_t {
  kSegmented,    // the segments are in the GsoSegmenter
  kNotGso,       // gso_type NONE: already a single wire packet
  kUnsupported,  // a GSO superpacket this does not split (legacy UFO, VLAN tag, no partial
                 // checksum, IP fragment, output beyond kMaxOutputBytes): pass it unchanged
  kMalformed,    // truncated or inconsistent headers: pass it unchanged (the kernel decides)
};

class GsoSegmenter {
 public:
  // Bound on the bytes one superpacket may expand to. A 64 KiB superpacket at the smallest MSS
  // TCP accepts stays far below it; only hostile gso_size/header combinations reach it.
  static constexpr std::size_t kMaxOutputBytes = 8u << 20;

  // `record` is one virtio_net_hdr + Ethernet frame. On kSegmented, count() and segment() give
  // the wire segments until the next call; on anything else count() is 0. Never reads outside
  // [record, record + len).
  GsoStatus split(const unsigned char* record, std::size_t len);

  std::size_t count() const { return count_; }
  // Segment `i` < count(): a virtio_net_hdr (NEEDS_CSUM, GSO_NONE) + Ethernet frame, ready for
  // a PACKET_VNET_HDR socket or IFF_VNET_HDR TAP. Mutable so the caller may corrupt it in place.
  std::span<unsigned char> segment(std::size_t i) {
    return {buf_.data() + offsets_[i], offsets_[i + 1] - offsets_[i]};
  }
  std::span<const unsigned char> segment(std::size_t i) const {
    return {buf_.data() + offsets_[i], offsets_[i + 1] - offsets_[i]};
  }

 private:
  // Both only grow, so steady-state calls do not allocate.
  std::vector<unsigned char> buf_;
  std::vector<std::size_t> offsets_;  // count_ + 1 boundaries into buf_
  std::size_t count_ = 0;
};

// Completes the partial checksum of the Ethernet frame [frame, frame + len) as the kernel's
// skb_checksum_help does: sums from csum_start to the end of the IP packet (Ethernet padding
// excluded) over the pseudo-header sum already in the field, stores the result at
// csum_start + csum_offset (0 becomes 0xffff) and clears NEEDS_CSUM. True without touching
// anything if NEEDS_CSUM is clear; false if the offsets lie outside the frame. For single frames
// (a superpacket's field is not its segments'): corrupting a frame after this makes the receiver
// see a bad checksum, as with netem.
bool complete_partial_checksum(unsigned char* frame, std::size_t len, VirtioNetHdr& hdr);

}  // namespace patchbay::internal
