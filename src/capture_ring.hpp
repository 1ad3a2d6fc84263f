// Where captured packets of one link go: a CaptureRing keeps the most recent ones in memory
// within a byte budget (always-on capture, written out only when a test fails), a CaptureStream
// appends every packet to a pcapng file up to a size cap (capture on request).
//
//   CaptureRing ring(16 << 20);                       // the last 16 MiB of captured bytes
//   ring.push({.timestamp_ns = t, .original_length = len, .pkttype = PACKET_HOST}, frame);
//   CaptureRing copy = ring.snapshot();               // cheap to take on the capture thread...
//   write_pcapng(copy, "/tmp/a.eth0.pcap", {.name = "eth0"}, {}, "a/eth0");  // ...written
//   elsewhere
//
//   CaptureStream stream("/tmp/a.eth0.pcap", {.name = "eth0"}, 64 << 20, "a/eth0");
//   stream.push(meta, frame);   // false once the file would pass 64 MiB: the file keeps the start
//   stream.close(stats);        // a closing statistics block, then the file is complete
//
// The ring's budget counts captured bytes only (what the pcapng packet data will hold), so
// "16 MiB" means 16 MiB of frames; the per-packet bookkeeping (24 bytes each) comes on top.
// Whole packets are dropped, oldest first; a packet larger than the whole budget is kept
// truncated to the budget (its original length stays recorded). The storage is one block of
// `budget` bytes allocated on the first push and touched only as far as it is used. Not
// thread-safe: the capture thread owns both kinds.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>

#include "pcapng_writer.hpp"

namespace patchbay::internal {

struct CapturedPacket {
  std::int64_t timestamp_ns = 0;      // since the Unix epoch
  std::uint32_t original_length = 0;  // on the wire (a GSO superpacket's whole length); 0: caplen
  std::uint8_t pkttype = 0;           // sll_pkttype: PACKET_HOST, PACKET_OUTGOING, ...
};

class CaptureRing {
 public:
  // `budget_bytes` must be at least 1.
  explicit CaptureRing(std::size_t budget_bytes);
  CaptureRing(CaptureRing&&) noexcept = default;
  CaptureRing& operator=(CaptureRing&&) noexcept = default;

  // Appends the packet's captured bytes (`data`, continued by `tail` if not empty), evicting
  // the oldest packets until the held bytes fit the budget again.
  void push(const CapturedPacket& packet, std::span<const unsigned char> data,
            std::span<const unsigned char> tail = {});

  std::size_t budget() const { return budget_; }
  std::size_t packets() const { return entries_.size(); }
  std::size_t bytes() const { return bytes_; }  // captured bytes held, <= budget()
  // Evicted to make room (and their captured bytes), since construction or clear().
  std::uint64_t dropped_packets() const { return dropped_packets_; }
  std::uint64_t dropped_bytes() const { return dropped_bytes_; }
  // Packets pushed that were cut to the budget because they were larger than all of it.
  std::uint64_t truncated_packets() const { return truncated_packets_; }

  // Calls fn(const CapturedPacket&, std::span<const unsigned char> data,
  //          std::span<const unsigned char> tail) for each held packet, oldest first; a packet
  // stored across the end of the storage comes in two pieces.
  template <class F>
  void for_each(F&& fn) const {
    for (const Entry& e : entries_) {
      const std::size_t first = std::min<std::size_t>(e.length, budget_ - e.offset);
      fn(e.packet, std::span<const unsigned char>(storage_.get() + e.offset, first),
         std::span<const unsigned char>(storage_.get(), e.length - first));
    }
  }

  // A copy of the held packets (in storage of just their size) with the same counters; what is
  // pushed afterwards does not show in it.
  CaptureRing snapshot() const;
  void clear();

 private:
  struct Entry {
    CapturedPacket packet;
    std::size_t offset;    // of its first byte in storage_
    std::uint32_t length;  // captured bytes
  };
  void drop_oldest();

  std::size_t budget_;
  std::unique_ptr<unsigned char[]> storage_;  // budget_ bytes, used as a circular buffer
  std::size_t head_ = 0;                      // where the next packet's bytes go
  std::deque<Entry> entries_;
  std::size_t bytes_ = 0;
  std::uint64_t dropped_packets_ = 0;
  std::uint64_t dropped_bytes_ = 0;
  std::uint64_t truncated_packets_ = 0;
};

// Writes the ring's packets as one pcapng file with one interface, followed by a statistics
// block: `stats` with user_delivered set to the packets written, and (unless the caller gave
// one) a comment saying how many older packets the budget dropped. Throws Error naming `culprit`.
void write_pcapng(const CaptureRing& ring, const std::string& path, const PcapngInterface& iface,
                  PcapngInterfaceStats stats, const std::string& culprit);

class CaptureStream {
 public:
  // Room kept below the cap for the statistics block close() writes.
  static constexpr std::uint64_t kCloseReserve = 256;

  // Creates `path` with a section header and `iface`'s description. `max_bytes` caps the whole
  // file; it must leave room for those blocks and kCloseReserve.
  CaptureStream(std::string path, const PcapngInterface& iface, std::uint64_t max_bytes,
                std::string culprit);

  // Writes the packet (truncated to the interface's snaplen, if one is set) unless the file
  // would pass the cap; from the first packet that does not fit on, every packet is counted as
  // dropped, so the file always holds an unbroken stretch from the start of the capture.
  bool push(const CapturedPacket& packet, std::span<const unsigned char> data,
            std::span<const unsigned char> tail = {});
  // Makes the file complete up to the last packet pushed; returns its size.
  std::uint64_t flush();
  // Writes a statistics block (`stats`, user_delivered = packets written, a comment on the cap
  // if it dropped packets) and closes the file.
  void close(PcapngInterfaceStats stats);

  const std::string& path() const { return writer_.path(); }
  bool capped() const { return capped_; }
  std::uint64_t packets() const { return packets_; }  // written
  std::uint64_t bytes() const { return bytes_; }      // captured bytes written
  std::uint64_t file_bytes() const { return writer_.size(); }
  std::uint64_t dropped_packets() const { return dropped_packets_; }
  std::uint64_t max_bytes() const { return max_bytes_; }

 private:
  PcapngWriter writer_;
  std::uint32_t snaplen_;
  std::uint64_t max_bytes_;
  bool capped_ = false;
  std::uint64_t packets_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t dropped_packets_ = 0;
};

}  // namespace patchbay::internal
