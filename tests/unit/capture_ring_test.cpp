// CaptureRing budget semantics (whole packets, oldest out, newest in, exact byte counts, data
// intact across the storage's wrap) and CaptureStream's cap, checked through the pcapng files
// they write.
#include "capture_ring.hpp"
#include "../temp_dir.hpp"

#include <linux/if_packet.h>
#include <stdlib.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "patchbay/error.hpp"
#include "pcapng_writer.hpp"

namespace patchbay::internal {
namespace {

using Bytes = std::vector<unsigned char>;

// Packet `i` of `len` bytes: byte k is (i * 31 + k) mod 251, so a byte out of place shows.
Bytes packet(int i, std::size_t len) {
  Bytes b(len);
  for (std::size_t k = 0; k < len; ++k) b[k] = static_cast<unsigned char>((i * 31 + k) % 251);
  return b;
}

CapturedPacket meta(int i) {
  return CapturedPacket{.timestamp_ns = 1000 + i, .original_length = 0, .pkttype = PACKET_HOST};
}

struct Held {
  std::int64_t timestamp_ns;
  std::uint32_t original_length;
  Bytes data;
  std::size_t pieces;
};

std::vector<Held> held(const CaptureRing& ring) {
  std::vector<Held> out;
  ring.for_each([&](const CapturedPacket& p, std::span<const unsigned char> data,
                    std::span<const unsigned char> tail) {
    Bytes all(data.begin(), data.end());
    all.insert(all.end(), tail.begin(), tail.end());
    out.push_back(Held{p.timestamp_ns, p.original_length, all, tail.empty() ? 1u : 2u});
  });
  return out;
}

using pbtest::TempDir;

TEST(CaptureRingTest, KeepsEverythingWithinTheBudget) {
  CaptureRing ring(1000);
  for (int i = 0; i < 10; ++i) ring.push(meta(i), packet(i, 100));
  EXPECT_EQ(ring.packets(), 10u);
  EXPECT_EQ(ring.bytes(), 1000u);
  EXPECT_EQ(ring.dropped_packets(), 0u);
  const std::vector<Held> h = held(ring);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(h[i].data, packet(i, 100)) << i;
}

TEST(CaptureRingTest, OnePacketOverTheBudgetEvictsTheOldestWholePacket) {
  CaptureRing ring(1000);
  for (int i = 0; i < 11; ++i) ring.push(meta(i), packet(i, 100));
  EXPECT_EQ(ring.packets(), 10u);
  EXPECT_EQ(ring.bytes(), 1000u);
  EXPECT_EQ(ring.dropped_packets(), 1u);
  EXPECT_EQ(ring.dropped_bytes(), 100u);
  const std::vector<Held> h = held(ring);
  EXPECT_EQ(h.front().timestamp_ns, 1001);  // packet 0 went
  EXPECT_EQ(h.front().data, packet(1, 100));
  EXPECT_EQ(h.back().timestamp_ns, 1010);  // the newest stays
  EXPECT_EQ(h.back().data, packet(10, 100));
}

TEST(CaptureRingTest, ABigPacketEvictsJustEnoughOldOnes) {
  CaptureRing ring(1000);
  for (int i = 0; i < 10; ++i) ring.push(meta(i), packet(i, 100));
  ring.push(meta(10), packet(10, 350));  // needs 350 free: four 100-byte packets go
  EXPECT_EQ(ring.dropped_packets(), 4u);
  EXPECT_EQ(ring.dropped_bytes(), 400u);
  EXPECT_EQ(ring.packets(), 7u);
  EXPECT_EQ(ring.bytes(), 950u);
  const std::vector<Held> h = held(ring);
  EXPECT_EQ(h.front().data, packet(4, 100));
  EXPECT_EQ(h.back().data, packet(10, 350));
}

TEST(CaptureRingTest, HeldBytesAreExactlyTheNewestPacketsThatFitAndDataSurvivesWrapping) {
  const std::size_t budget = 10'007;  // prime: packets straddle the storage's end at odd places
  CaptureRing ring(budget);
  std::vector<std::size_t> sizes;
  std::uint32_t x = 12345;
  for (int i = 0; i < 2000; ++i) {
    x = x * 1103515245 + 12345;
    const std::size_t len = 1 + (x >> 16) % 1514;
    sizes.push_back(len);
    ring.push(meta(i), packet(i, len));

    // The newest packets whose sizes sum to at most the budget, and no more.
    std::size_t want_bytes = 0;
    int first = i + 1;
    while (first > 0 && want_bytes + sizes[first - 1] <= budget) want_bytes += sizes[--first];
    ASSERT_EQ(ring.bytes(), want_bytes) << "after packet " << i;
    ASSERT_EQ(ring.packets(), static_cast<std::size_t>(i + 1 - first)) << "after packet " << i;
    ASSERT_EQ(ring.dropped_packets(), static_cast<std::uint64_t>(first));
    const std::size_t pushed = std::accumulate(sizes.begin(), sizes.end(), std::size_t{0});
    ASSERT_EQ(ring.dropped_bytes() + ring.bytes(), pushed);
  }
  const std::vector<Held> h = held(ring);
  const int first = 2000 - static_cast<int>(h.size());
  bool some_split = false;
  for (std::size_t k = 0; k < h.size(); ++k) {
    const int i = first + static_cast<int>(k);
    ASSERT_EQ(h[k].timestamp_ns, 1000 + i);
    ASSERT_EQ(h[k].data, packet(i, sizes[i])) << "packet " << i;
    ASSERT_EQ(h[k].original_length, sizes[i]);
    some_split |= h[k].pieces == 2;
  }
  // The wrap-around path was exercised (else this test proves less than it claims).
  EXPECT_TRUE(some_split || ring.dropped_packets() > 0);
}

TEST(CaptureRingTest, APacketAcrossTheStorageEndComesInTwoPieces) {
  CaptureRing ring(250);
  ring.push(meta(0), packet(0, 100));
  ring.push(meta(1), packet(1, 100));
  ring.push(meta(2), packet(2, 100));  // evicts packet 0; stored at 200..249 and 0..49
  const std::vector<Held> h = held(ring);
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[1].pieces, 2u);
  EXPECT_EQ(h[1].data, packet(2, 100));
  EXPECT_EQ(ring.bytes(), 200u);
}

TEST(CaptureRingTest, PacketLargerThanTheBudgetIsKeptCutWithItsRealLength) {
  CaptureRing ring(500);
  ring.push(meta(0), packet(0, 100));
  ring.push(meta(1), packet(1, 800));
  EXPECT_EQ(ring.packets(), 1u);
  EXPECT_EQ(ring.bytes(), 500u);
  EXPECT_EQ(ring.truncated_packets(), 1u);
  EXPECT_EQ(ring.dropped_packets(), 1u);
  const std::vector<Held> h = held(ring);
  EXPECT_EQ(h[0].original_length, 800u);
  const Bytes big = packet(1, 800);
  EXPECT_EQ(h[0].data, Bytes(big.begin(), big.begin() + 500));
}

TEST(CaptureRingTest, GivenOriginalLengthIsKept) {
  CaptureRing ring(1000);
  ring.push({.timestamp_ns = 1, .original_length = 65000, .pkttype = PACKET_OUTGOING},
            packet(0, 96));
  EXPECT_EQ(held(ring)[0].original_length, 65000u);
  EXPECT_EQ(ring.bytes(), 96u);
}

TEST(CaptureRingTest, SnapshotIsUnaffectedByLaterPushesAndKeepsTheCounters) {
  CaptureRing ring(250);
  for (int i = 0; i < 3; ++i) ring.push(meta(i), packet(i, 100));
  const CaptureRing snap = ring.snapshot();
  for (int i = 3; i < 6; ++i) ring.push(meta(i), packet(i, 100));
  const std::vector<Held> h = held(snap);
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].data, packet(1, 100));
  EXPECT_EQ(h[1].data, packet(2, 100));
  EXPECT_EQ(h[1].pieces, 1u);  // copied in one piece
  EXPECT_EQ(snap.dropped_packets(), 1u);
  EXPECT_EQ(snap.bytes(), 200u);
}

TEST(CaptureRingTest, ClearEmptiesAndResetsCounters) {
  CaptureRing ring(150);
  for (int i = 0; i < 3; ++i) ring.push(meta(i), packet(i, 100));
  ring.clear();
  EXPECT_EQ(ring.packets(), 0u);
  EXPECT_EQ(ring.bytes(), 0u);
  EXPECT_EQ(ring.dropped_packets(), 0u);
  ring.push(meta(9), packet(9, 150));
  EXPECT_EQ(held(ring)[0].data, packet(9, 150));
}

TEST(CaptureRingTest, ZeroBudgetIsRejected) {
  try {
    CaptureRing ring(0);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  }
}

TEST(CaptureRingTest, WrittenFileHoldsTheRingsPacketsAndSaysWhatTheBudgetDropped) {
  TempDir dir;
  CaptureRing ring(1000);
  for (int i = 0; i < 15; ++i) {
    ring.push({.timestamp_ns = 1000 + i,
               .original_length = 0,
               .pkttype = static_cast<std::uint8_t>(i % 2 ? PACKET_OUTGOING : PACKET_HOST)},
              packet(i, 100));
  }
  const std::string path = dir.file("r.pcap");
  write_pcapng(ring, path, {.name = "eth0", .snaplen = 1514},
               {.timestamp_ns = 5000, .filter_accept = 15, .os_drop = 0}, "a/eth0");
  const PcapngFile f = read_pcapng(path);
  ASSERT_EQ(f.interfaces.size(), 1u);
  EXPECT_EQ(f.interfaces[0].name, "eth0");
  ASSERT_EQ(f.packets.size(), 10u);
  for (int k = 0; k < 10; ++k) {
    const int i = 5 + k;
    EXPECT_EQ(f.packets[k].data, packet(i, 100));
    EXPECT_EQ(f.packets[k].timestamp_ns, 1000 + i);
    EXPECT_EQ(f.packets[k].flags, epb_flags_for_pkttype(i % 2 ? PACKET_OUTGOING : PACKET_HOST));
  }
  ASSERT_EQ(f.statistics.size(), 1u);
  EXPECT_EQ(f.statistics[0].user_delivered, 10u);
  EXPECT_EQ(f.statistics[0].filter_accept, 15u);
  EXPECT_NE(f.statistics[0].comment.find("5 older packets"), std::string::npos)
      << f.statistics[0].comment;
  EXPECT_EQ(f.block_types.back(), kPcapngInterfaceStatisticsBlock);
}

TEST(CaptureStreamTest, WritesPacketsUntilTheCapThenKeepsTheFileAnUnbrokenStart) {
  TempDir dir;
  const std::string path = dir.file("s.pcap");
  const PcapngInterface iface{.name = "eth0"};
  std::vector<unsigned char> headers;
  append_section_header(headers, "patchbay");
  append_interface_description(headers, iface);
  const std::size_t epb = enhanced_packet_size(
      {.data = std::span<const unsigned char>(packet(0, 100)), .flags = 5});  // 100 B + flags
  const std::uint64_t cap = headers.size() + 7 * epb + CaptureStream::kCloseReserve + epb / 2;

  CaptureStream s(path, iface, cap, "a/eth0");
  int written = 0;
  for (int i = 0; i < 12; ++i) written += s.push(meta(i), packet(i, 100));
  // Smaller than the rest, it would fit: still dropped, or the file would have a gap.
  written += s.push(meta(12), packet(12, 10));
  EXPECT_EQ(written, 7);
  EXPECT_TRUE(s.capped());
  EXPECT_EQ(s.packets(), 7u);
  EXPECT_EQ(s.dropped_packets(), 6u);
  EXPECT_EQ(s.bytes(), 700u);
  s.close({.timestamp_ns = 1});
  EXPECT_LE(std::filesystem::file_size(path), cap);
  const PcapngFile f = read_pcapng(path);
  ASSERT_EQ(f.packets.size(), 7u);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(f.packets[i].data, packet(i, 100));
  ASSERT_EQ(f.statistics.size(), 1u);
  EXPECT_EQ(f.statistics[0].user_delivered, 7u);
  EXPECT_NE(f.statistics[0].comment.find("6 later packets"), std::string::npos);
}

TEST(CaptureStreamTest, FlushMakesTheFileReadableUpToTheLastPacket) {
  TempDir dir;
  const std::string path = dir.file("s.pcap");
  CaptureStream s(path, {.name = "eth0"}, 1 << 20, "a/eth0");
  s.push(meta(0), packet(0, 60));
  const std::uint64_t size = s.flush();
  EXPECT_EQ(size, std::filesystem::file_size(path));
  EXPECT_EQ(read_pcapng(path).packets.size(), 1u);
  s.push(meta(1), packet(1, 60));
  s.flush();
  EXPECT_EQ(read_pcapng(path).packets.size(), 2u);
}

TEST(CaptureStreamTest, SnaplenCutsPacketsButKeepsTheirOriginalLength) {
  TempDir dir;
  const std::string path = dir.file("s.pcap");
  CaptureStream s(path, {.name = "eth0", .snaplen = 64}, 1 << 20, "a/eth0");
  s.push(meta(0), packet(0, 100));
  s.close({});
  const PcapngFile f = read_pcapng(path);
  ASSERT_EQ(f.packets.size(), 1u);
  const Bytes sent = packet(0, 100);
  EXPECT_EQ(f.packets[0].data, Bytes(sent.begin(), sent.begin() + 64));
  EXPECT_EQ(f.packets[0].original_length, 100u);
  EXPECT_EQ(f.interfaces[0].snaplen, 64u);
}

TEST(CaptureStreamTest, CapTooSmallForTheHeadersIsRejectedBeforeCreatingTheFile) {
  TempDir dir;
  const std::string path = dir.file("s.pcap");
  try {
    CaptureStream s(path, {.name = "eth0"}, 100, "a/eth0");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_EQ(e.culprit(), "a/eth0");
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace patchbay::internal
