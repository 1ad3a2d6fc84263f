// FramePump: the userspace link emulator's packet pump. One thread with one epoll loop moves
// Ethernet frames between the two endpoints of every emulated link of a lab, holding each frame
// until the LinkModel of its direction lets it leave (this kernel has no sch_netem).
//
//   // In the router's namespace: the device's veth end `dv` comes off the LAN bridge, a TAP
//   // device takes its place there, and the pump joins the two (the node sees nothing change).
//   FramePump pump;
//   FramePump::LinkId id = pump.add_link(open_packet_socket(dv_ifindex, "dv"),
//                                        open_tap("dv-emu", "dv"),
//                                        LinkModelParams{.latency = 10ms},   // device -> LAN
//                                        LinkModelParams{.latency = 10ms},   // LAN -> device
//                                        derive_seed(lab_seed, link_number, 0));  // link's seed
//   pump.set_params(id, LinkModelParams{.loss_pct = 20}, LinkModelParams{});
//   pump.remove_link(id);  // closes both fds (the TAP device disappears with its fd)
//
// Both endpoint kinds carry a 10-byte struct virtio_net_hdr in front of each frame, so GSO
// superpackets and partial checksums cross the pump unchanged (kernel-facts 3d: 14-16 Gbit/s,
// ~2 Gbit/s without them). The model sees a superpacket as one packet of its full size:
//  * loss drops the whole superpacket (all of its segments);
//  * corruption of a superpacket drops it as well (a corrupted segment would fail the
//    receiver's checksum; the kernel would recompute a checksum over the flipped bit otherwise);
//    a single frame whose checksum is still partial gets its checksum completed first, so the
//    receiver sees a bad checksum, as with netem.
// Per-segment loss needs TSO/GSO off on the sending device (or segmenting here — not done).
//
// The splice must keep the kernel out of the way: the veth end read with AF_PACKET needs no
// addresses and IPv6 off (or its own stack answers the node directly), the TAP device needs
// IPv6 off too (else its RS/DAD reach the LAN) and the MTU of the link it replaces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "frame_buffer_pool.hpp"
#include "gso_segment.hpp"
#include "link_model.hpp"
#include "loop_commands.hpp"
#include "unique_fd.hpp"

namespace patchbay::internal {

// Creates a non-persistent TAP device `name` in the calling thread's network namespace with
// IFF_NO_PI | IFF_VNET_HDR and checksum/TSO4/TSO6 offloads; the device goes away with the fd.
// `culprit` names the link in errors.
UniqueFd open_tap(const std::string& name, const std::string& culprit);

// Which frames of its interface an AF_PACKET endpoint hands to the pump.
enum class PacketCapture {
  kReceived,  // what arrives from the peer, not what the pump itself writes (a veth end)
  kSent,      // only what the namespace's stack sends out of it (a bridge device's output)
  kNothing,   // none: the endpoint is only written to
};

// An AF_PACKET socket bound to `ifindex` (in the calling thread's network namespace) with
// PACKET_VNET_HDR, taking the frames `capture` says.
UniqueFd open_packet_socket(int ifindex, const std::string& culprit,
                            PacketCapture capture = PacketCapture::kReceived);

class FramePump {
 public:
  using LinkId = std::uint64_t;

  struct DirectionStats {
    std::uint64_t frames_in = 0;
    std::uint64_t frames_out = 0;
    std::uint64_t gso_frames = 0;         // superpackets among frames_in
    std::uint64_t gso_split = 0;          // of those, split into wire packets for the model
    std::uint64_t model_drops = 0;        // lost or queue-dropped by the model
    std::uint64_t corrupt_gso_drops = 0;  // corrupted superpackets (dropped, see above)
    std::uint64_t backlog_drops = 0;      // the pump's own bound on held bytes
    std::uint64_t write_errors = 0;       // the far endpoint refused the frame (not "full")
    std::uint64_t socket_drops = 0;       // AF_PACKET receive buffer overflowed (not in frames_in)
  };
  struct LinkStats {
    DirectionStats a_to_b;
    DirectionStats b_to_a;
  };

  // Starts the loop thread.
  FramePump();
  // Stops the loop (frames still held are discarded), joins it and closes every link's fds.
  ~FramePump();
  FramePump(const FramePump&) = delete;
  FramePump& operator=(const FramePump&) = delete;

  // Takes both endpoints (frame fds carrying a virtio_net_hdr, e.g. from open_tap or
  // open_packet_socket). Frames read from `a` go through the `a_to_b` model and out of `b`.
  // `seed` is this link's (stable across runs, unlike the returned id); each direction gets one
  // derived from it.
  // The control calls are thread-safe and wait until the loop has applied them; they must not be
  // called from the loop thread.
  LinkId add_link(UniqueFd a, UniqueFd b, const LinkModelParams& a_to_b,
                  const LinkModelParams& b_to_a, std::uint64_t seed);
  // Applies to frames that arrive from now on; frames already held keep their departure times.
  void set_params(LinkId id, const LinkModelParams& a_to_b, const LinkModelParams& b_to_a);
  // Discards the frames the link still holds and closes its fds.
  void remove_link(LinkId id);
  LinkStats stats(LinkId id);

  // Cap on bytes held per direction (beyond the model's own queue bound): 20 Gbit/s for 50 ms,
  // so a delayed TCP flow queues here, where it only costs memory, instead of losing whole
  // superpackets every few RTTs (at 10 ms, a 50 MiB cap cost a fifth of the throughput).
  static constexpr std::size_t kMaxHeldBytes = 128u << 20;

 private:
  struct Link;
  struct Endpoint;

  void run();
  Link& find(LinkId id, const char* what);
  void on_readable(Endpoint& ep);
  // Puts one record (virtio_net_hdr + frame) through the direction's model. `owner`, when
  // given, is the buffer holding the record: a held frame may take it over instead of a copy.
  void admit(Link& link, int side, const unsigned char* record, std::size_t len, bool gso,
             std::int64_t now, FrameBuffer* owner);
  void flush_due(Link& link, int dir, std::int64_t now);
  // A full send buffer is back-pressure, not loss: frames wait until the socket drains.
  void block_writes(Endpoint& ep);
  void unblock_writes(Endpoint& ep);
  // When the earliest held frame is due (INT64_MAX: none held).
  std::int64_t next_due() const;

  UniqueFd epoll_;
  LoopCommands commands_{"frame pump"};  // how other threads reach the loop
  // Loop-thread state.
  bool stopping_ = false;
  LinkId next_id_ = 1;
  std::map<LinkId, std::unique_ptr<Link>> links_;
  FrameBufferPool pool_;
  FrameBuffer read_buf_;           // frames are read into it; a held superpacket takes it along
  std::uint64_t frames_read_ = 0;  // all links; the busy poll starts when it moved
  std::uint64_t frames_read_at_last_poll_ = 0;
  GsoSegmenter segmenter_;
  std::thread thread_;
};

}  // namespace patchbay::internal
