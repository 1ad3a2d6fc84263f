// FrameBufferPool: recycled buffers for the frames the link emulator holds, so its hot path
// allocates nothing once warm. Two size classes: small frames (ACKs, wire-size segments) are
// copied into small buffers, superpackets keep the large buffer they were read into.
//
//   FrameBufferPool pool;
//   FrameBuffer b = pool.take(len);   // capacity >= len
//   ... fill b.data(), set b.len, hold it ...
//   pool.give(std::move(b));          // back for the next frame
//
// Single-threaded (the emulator's loop thread owns it).
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace patchbay::internal {

struct FrameBuffer {
  std::unique_ptr<unsigned char[]> bytes;
  std::size_t capacity = 0;
  std::size_t len = 0;
  unsigned char* data() { return bytes.get(); }
  const unsigned char* data() const { return bytes.get(); }
};

class FrameBufferPool {
 public:
  // Holds a full-size Ethernet frame (jumbo included) plus its virtio_net_hdr.
  static constexpr std::size_t kSmall = 10u << 10;
  // Holds any GSO superpacket (at most 64 KiB of IP packet on veth) plus headers.
  static constexpr std::size_t kLarge = 128u << 10;
  // Kept for reuse at most; more is returned to the allocator (after a burst).
  static constexpr std::size_t kKeepSmall = 4096;
  static constexpr std::size_t kKeepLarge = 512;

  // A buffer of at least `len` bytes (len <= kLarge), its len set to `len`.
  FrameBuffer take(std::size_t len) {
    std::vector<FrameBuffer>& free = len <= kSmall ? small_ : large_;
    FrameBuffer b;
    if (!free.empty()) {
      b = std::move(free.back());
      free.pop_back();
    } else {
      const std::size_t cap = len <= kSmall ? kSmall : kLarge;
      b.bytes.reset(new unsigned char[cap]);
      b.capacity = cap;
    }
    b.len = len;
    return b;
  }

  void give(FrameBuffer b) {
    if (!b.bytes) return;
    std::vector<FrameBuffer>& free = b.capacity == kSmall ? small_ : large_;
    if (free.size() < (b.capacity == kSmall ? kKeepSmall : kKeepLarge))
      free.push_back(std::move(b));
  }

 private:
  std::vector<FrameBuffer> small_;
  std::vector<FrameBuffer> large_;
};

}  // namespace patchbay::internal
