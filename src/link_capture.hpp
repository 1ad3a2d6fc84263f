// LinkCapture: packet capture on a lab's links, written as pcapng. One thread per lab, started
// with the first capture and stopped with the object, reads every captured interface's
// AF_PACKET socket from one epoll loop; each link keeps either a ring of its most recent packets
// (always-on capture, written out when a test fails) or streams into a file (capture on request).
//
//   // On a thread inside the interface's network namespace (e.g. the node's worker):
//   UniqueFd s = node_thread.invoke([&] { return open_capture_socket(ifindex, "dev1/eth0"); });
//   LinkCapture capture;  // no thread yet
//   capture.add("dev1.eth0", std::move(s),
//               {.ring_bytes = 16 << 20, .interface_name = "eth0",
//                .interface_description = "device dev1, towards router r1"});
//   ...
//   capture.flush("dev1.eth0", outdir + "/device.dev1.eth0.pcap");  // capture keeps running
//   CaptureStats st = capture.stats("dev1.eth0");  // packets, kernel and budget drops
//   capture.remove("dev1.eth0");                    // closes the socket
//
//   // Capture on request: every packet into a file, up to a cap.
//   capture.add("r1.wan", std::move(s2), {.file = dir + "/router.r1.wan.pcap",
//                                         .max_file_bytes = 64 << 20});
//
// What is captured: every frame of the interface in both directions (ETH_P_ALL, PACKET_OUTGOING
// included), with the kernel's receive timestamp in nanoseconds (SO_TIMESTAMPNS), its real
// length (PACKET_AUXDATA; a GSO superpacket is one record of its whole length, as the kernel
// handed it over), and its direction (sll_pkttype, written as the pcapng epb_flags). A VLAN tag
// the kernel stripped is put back, as libpcap does.
//
// The socket is read with recvmmsg rather than a TPACKET_V3 ring: a V3 block reaches userspace
// only when it is full or its retire timer fires, so flush() could not promise to contain every
// packet the kernel had seen when it was called. Here flush() first drains each socket's queue.
//
// Control calls are thread-safe and wait until the loop has applied them; they must not be
// called from the loop itself. Errors are patchbay::Error naming the link's key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "loop_commands.hpp"
#include "unique_fd.hpp"

namespace patchbay::internal {

// Snap length that keeps a whole 64 KiB GSO superpacket with its Ethernet, VLAN and IP headers.
inline constexpr std::uint32_t kDefaultSnaplen = 65536 + 512;

// An AF_PACKET socket capturing every frame of `ifindex` in the calling thread's network
// namespace, in both directions, with receive timestamps and auxiliary data. Frames are queued
// from the moment it returns. `culprit` names the link in errors.
UniqueFd open_capture_socket(int ifindex, const std::string& culprit);

struct CaptureOptions {
  // Ring mode (when `file` is empty): keep the most recent `ring_bytes` of captured bytes.
  std::size_t ring_bytes = 16u << 20;
  // Streaming mode: write every packet to this pcapng file as it arrives, until it would pass
  // `max_file_bytes`; later packets are counted as budget_drops.
  std::string file{};
  std::uint64_t max_file_bytes = 256u << 20;
  // Bytes kept of each frame (the kernel cuts the rest before copying it); the original length
  // is recorded either way.
  std::uint32_t snaplen = kDefaultSnaplen;
  // The pcapng interface's if_name (default: the key) and if_description.
  std::string interface_name{};
  std::string interface_description{};
};

struct CaptureStats {
  std::uint64_t packets = 0;       // read from the socket
  std::uint64_t bytes = 0;         // their original lengths
  std::uint64_t kernel_drops = 0;  // lost before we read them (PACKET_STATISTICS tp_drops)
  std::uint64_t budget_drops = 0;  // ring: evicted as older than the budget; file: past the cap
  std::uint64_t held_packets = 0;  // ring: held now; file: written
  std::uint64_t held_bytes = 0;    // their captured bytes
  std::uint64_t file_bytes = 0;    // file: its size so far (0 in ring mode)
};

class LinkCapture {
 public:
  LinkCapture();
  // Stops the loop; streamed files get their statistics block and are closed; sockets close.
  ~LinkCapture();
  LinkCapture(const LinkCapture&) = delete;
  LinkCapture& operator=(const LinkCapture&) = delete;

  // Starts capturing from `socket` (from open_capture_socket) under `key`, which names the link
  // in errors and stats; starts the loop thread if this is the first capture.
  void add(const std::string& key, UniqueFd socket, const CaptureOptions& options);
  // Stops the capture and closes its socket (a streamed file is completed and closed) before
  // returning. Throws if completing the file failed; the capture is gone either way.
  void remove(const std::string& key);
  // Writes what the capture holds so far as pcapng to `path`, after reading everything the
  // kernel had queued for it; capture goes on meanwhile. Ring mode: the ring's packets (copied
  // on the loop, written on the calling thread). Streaming mode: the file is brought up to date,
  // and copied to `path` unless `path` is empty or the file itself.
  void flush(const std::string& key, const std::string& path);
  CaptureStats stats(const std::string& key);
  std::vector<std::string> keys();

  // Whether the loop thread runs (it does from the first add() until destruction).
  bool running() const;

 private:
  struct Link;

  void run();
  Link& find(const std::string& key, const char* what);
  void on_readable(Link& link);
  void drain(Link& link);
  void read_kernel_drops(Link& link);
  void ensure_slots(std::uint32_t snaplen);
  CaptureStats stats_of(Link& link);

  mutable std::mutex start_mu_;  // guards starting the thread
  UniqueFd epoll_;
  LoopCommands commands_{"link capture"};  // how other threads reach the loop
  // Loop-thread state.
  bool stopping_ = false;
  std::map<std::string, std::unique_ptr<Link>> links_;
  struct Slots;
  std::unique_ptr<Slots> slots_;  // recvmmsg buffers, shared by all links
  std::thread thread_;
};

}  // namespace patchbay::internal
