#include "capture_ring.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "patchbay/error.hpp"

namespace patchbay::internal {
namespace {

// The first `len` bytes of a packet given in two pieces, still in two pieces.
std::pair<std::span<const unsigned char>, std::span<const unsigned char>> cut(
    std::span<const unsigned char> data, std::span<const unsigned char> tail, std::size_t len) {
  if (len <= data.size()) return {data.first(len), {}};
  return {data, tail.first(std::min(tail.size(), len - data.size()))};
}

}  // namespace

CaptureRing::CaptureRing(std::size_t budget_bytes) : budget_(budget_bytes) {
  if (budget_ == 0) {
    throw Error(ErrorKind::kInvalidArgument, "ring_bytes", "capture ring: a budget of 0 bytes");
  }
}

void CaptureRing::drop_oldest() {
  const Entry& e = entries_.front();
  bytes_ -= e.length;
  ++dropped_packets_;
  dropped_bytes_ += e.length;
  entries_.pop_front();
}

void CaptureRing::push(const CapturedPacket& packet, std::span<const unsigned char> data,
                       std::span<const unsigned char> tail) {
  const std::size_t full = data.size() + tail.size();
  CapturedPacket meta = packet;
  if (meta.original_length == 0) meta.original_length = static_cast<std::uint32_t>(full);
  std::size_t len = full;
  if (len > budget_) {
    // "The last N bytes" of traffic would be the end of this one packet: keep what fits of it
    // (its start, which has the headers), with the real length still on record.
    len = budget_;
    ++truncated_packets_;
    std::tie(data, tail) = cut(data, tail, len);
  }
  while (bytes_ + len > budget_) drop_oldest();
  // Default-initialised, not zeroed: pages of a large budget are only touched as packets
  // arrive, so an idle link's ring costs no memory.
  if (!storage_) storage_.reset(new unsigned char[budget_]);
  // An empty ring starts over at 0, so packets stay in one piece as long as possible.
  if (entries_.empty()) head_ = 0;
  const std::size_t offset = head_;
  auto copy_in = [this](std::span<const unsigned char> piece) {
    const std::size_t first = std::min(piece.size(), budget_ - head_);
    std::memcpy(storage_.get() + head_, piece.data(), first);
    std::memcpy(storage_.get(), piece.data() + first, piece.size() - first);
    head_ = (head_ + piece.size()) % budget_;
  };
  if (!data.empty()) copy_in(data);
  if (!tail.empty()) copy_in(tail);
  entries_.push_back(Entry{meta, offset, static_cast<std::uint32_t>(len)});
  bytes_ += len;
}

CaptureRing CaptureRing::snapshot() const {
  CaptureRing copy(std::max<std::size_t>(bytes_, 1));
  for_each([&copy](const CapturedPacket& p, std::span<const unsigned char> data,
                   std::span<const unsigned char> tail) { copy.push(p, data, tail); });
  copy.dropped_packets_ = dropped_packets_;
  copy.dropped_bytes_ = dropped_bytes_;
  copy.truncated_packets_ = truncated_packets_;
  return copy;
}

void CaptureRing::clear() {
  entries_.clear();
  bytes_ = 0;
  head_ = 0;
  dropped_packets_ = 0;
  dropped_bytes_ = 0;
  truncated_packets_ = 0;
}

void write_pcapng(const CaptureRing& ring, const std::string& path, const PcapngInterface& iface,
                  PcapngInterfaceStats stats, const std::string& culprit) {
  PcapngWriter writer(path, culprit);
  const std::uint32_t id = writer.add_interface(iface);
  std::int64_t last = 0;
  ring.for_each([&](const CapturedPacket& p, std::span<const unsigned char> data,
                    std::span<const unsigned char> tail) {
    writer.write_packet(id, PcapngPacket{.timestamp_ns = p.timestamp_ns,
                                         .data = data,
                                         .data_tail = tail,
                                         .original_length = p.original_length,
                                         .flags = epb_flags_for_pkttype(p.pkttype)});
    last = p.timestamp_ns;
  });
  stats.user_delivered = ring.packets();
  if (stats.timestamp_ns == 0) stats.timestamp_ns = last;
  if (stats.comment.empty() && ring.dropped_packets() > 0) {
    stats.comment = std::to_string(ring.dropped_packets()) + " older packets (" +
                    std::to_string(ring.dropped_bytes()) +
                    " captured bytes) were dropped to stay within the ring's budget of " +
                    std::to_string(ring.budget()) + " bytes";
  }
  writer.write_statistics(id, stats);
  writer.close();
}

namespace {

std::string check_cap(std::string path, const PcapngInterface& iface, std::uint64_t max_bytes,
                      const std::string& culprit) {
  std::vector<unsigned char> headers;
  append_section_header(headers, "patchbay");
  append_interface_description(headers, iface);
  const std::uint64_t least = headers.size() + CaptureStream::kCloseReserve;
  if (max_bytes < least) {
    throw Error(ErrorKind::kInvalidArgument, culprit,
                "capture of '" + culprit + "': a file cap of " + std::to_string(max_bytes) +
                    " bytes leaves no room for packets (at least " + std::to_string(least) +
                    " needed)");
  }
  return path;
}

}  // namespace

CaptureStream::CaptureStream(std::string path, const PcapngInterface& iface,
                             std::uint64_t max_bytes, std::string culprit)
    : writer_(check_cap(std::move(path), iface, max_bytes, culprit), culprit),
      snaplen_(iface.snaplen),
      max_bytes_(max_bytes) {
  writer_.add_interface(iface);
}

bool CaptureStream::push(const CapturedPacket& packet, std::span<const unsigned char> data,
                         std::span<const unsigned char> tail) {
  const std::size_t full = data.size() + tail.size();
  std::size_t len = full;
  if (snaplen_ != 0 && len > snaplen_) {
    len = snaplen_;
    std::tie(data, tail) = cut(data, tail, len);
  }
  const PcapngPacket p{.timestamp_ns = packet.timestamp_ns,
                       .data = data,
                       .data_tail = tail,
                       .original_length = packet.original_length ? packet.original_length
                                                                 : static_cast<std::uint32_t>(full),
                       .flags = epb_flags_for_pkttype(packet.pkttype)};
  if (capped_ || writer_.size() + enhanced_packet_size(p) + kCloseReserve > max_bytes_) {
    capped_ = true;
    ++dropped_packets_;
    return false;
  }
  writer_.write_packet(0, p);
  ++packets_;
  bytes_ += len;
  return true;
}

std::uint64_t CaptureStream::flush() {
  writer_.flush();
  return writer_.size();
}

void CaptureStream::close(PcapngInterfaceStats stats) {
  stats.user_delivered = packets_;
  if (stats.comment.empty() && dropped_packets_ > 0) {
    stats.comment = std::to_string(dropped_packets_) +
                    " later packets were not written: the file cap is " +
                    std::to_string(max_bytes_) + " bytes";
  }
  // Within kCloseReserve whatever the caller passed: 24 bytes of block, three counters (36),
  // the end marker and the comment's header (8).
  if (stats.comment.size() > kCloseReserve - 72) stats.comment.resize(kCloseReserve - 72);
  writer_.write_statistics(0, stats);
  writer_.close();
}

}  // namespace patchbay::internal
