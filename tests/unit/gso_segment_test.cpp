// Software GSO: hand-built superpackets split into exactly the wire packets the kernel's
// tcp_gso_segment/__udp_gso_segment would send, checked with an independent RFC 1071 checksum;
// anything it cannot split is refused without reading outside the record.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "gso_segment.hpp"
#include "virtio_net_hdr.hpp"

namespace {

using patchbay::internal::complete_partial_checksum;
using patchbay::internal::GsoSegmenter;
using patchbay::internal::GsoStatus;
using patchbay::internal::kVnetFlagNeedsCsum;
using patchbay::internal::kVnetGsoEcn;
using patchbay::internal::kVnetGsoNone;
using patchbay::internal::kVnetGsoTcpv4;
using patchbay::internal::kVnetGsoTcpv6;
using patchbay::internal::kVnetGsoUdp;
using patchbay::internal::kVnetGsoUdpL4;
using patchbay::internal::kVnetHdrLen;
using patchbay::internal::VirtioNetHdr;
using Bytes = std::vector<unsigned char>;

constexpr std::size_t kEth = 14;
constexpr std::uint8_t kFin = 0x01, kPsh = 0x08, kAck = 0x10, kEce = 0x40, kCwr = 0x80;

std::uint16_t get16(const unsigned char* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }
std::uint32_t get32(const unsigned char* p) { return std::uint32_t{get16(p)} << 16 | get16(p + 2); }
void put16(unsigned char* p, std::uint16_t v) {
  p[0] = static_cast<unsigned char>(v >> 8);
  p[1] = static_cast<unsigned char>(v);
}
void put32(unsigned char* p, std::uint32_t v) {
  put16(p, static_cast<std::uint16_t>(v >> 16));
  put16(p + 2, static_cast<std::uint16_t>(v));
}

// RFC 1071, the textbook way: 16-bit big-endian words, an odd byte padded with zero.
std::uint32_t add_words(const unsigned char* p, std::size_t n, std::uint32_t acc = 0) {
  for (std::size_t i = 0; i < n; i += 2) {
    acc += std::uint32_t{p[i]} << 8 | (i + 1 < n ? p[i + 1] : 0u);
  }
  return acc;
}
std::uint16_t fold(std::uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<std::uint16_t>(s);
}
// One's complement has two zeros; compare sums modulo 0xffff.
std::uint16_t canonical(std::uint16_t v) { return v == 0xffff ? 0 : v; }

// A superpacket layout to build.
struct Spec {
  bool ipv6 = false;
  bool udp = false;
  bool hop_by_hop = false;    // IPv6: an 8-byte hop-by-hop header before the L4 header
  bool ipv4_options = false;  // IPv4: 4 bytes of options (ihl 6)
  std::size_t payload = 10000;
  std::uint16_t gso_size = 1448;
  std::uint8_t tcp_flags = kAck | kPsh;
  bool ecn = false;
  std::uint16_t ip_id = 0x1234;
  std::uint32_t seq = 1000;
};

struct Built {
  Bytes record;  // VirtioNetHdr + frame
  std::size_t l4 = 0;
  std::size_t hdrs = 0;  // Ethernet + IP + L4 headers
};

unsigned char payload_byte(std::size_t i) {
  // Period 65536: a chunk copied from the wrong offset does not match by accident.
  return static_cast<unsigned char>(i * 131 + (i >> 8) * 7 + 1);
}

// The pseudo-header sum (unfolded) for `l4_len` bytes of L4 in the IP packet at `ip`.
std::uint32_t pseudo_sum(const unsigned char* ip, bool ipv6, std::uint8_t proto,
                         std::size_t l4_len) {
  std::uint32_t s = ipv6 ? add_words(ip + 8, 32) : add_words(ip + 12, 8);
  s += proto;
  s += static_cast<std::uint32_t>(l4_len >> 16) + static_cast<std::uint32_t>(l4_len & 0xffff);
  return s;
}

Built build(const Spec& s) {
  Bytes f;
  auto push = [&f](std::initializer_list<int> bytes) {
    for (int b : bytes) f.push_back(static_cast<unsigned char>(b));
  };
  push({0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02});
  push({s.ipv6 ? 0x86 : 0x08, s.ipv6 ? 0xdd : 0x00});
  const std::uint8_t proto = s.udp ? 17 : 6;
  if (s.ipv6) {
    push({0x60, 0x01, 0x23, 0x45, 0, 0, s.hop_by_hop ? 0 : proto, 64});
    push({0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01});
    push({0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0x02});
    if (s.hop_by_hop) push({proto, 0, 0x01, 0x04, 0, 0, 0, 0});  // PadN
  } else {
    push({s.ipv4_options ? 0x46 : 0x45, 0x10, 0, 0, s.ip_id >> 8, s.ip_id & 0xff, 0x40, 0});
    push({64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 3, 2});
    if (s.ipv4_options) push({0x01, 0x01, 0x01, 0x00});
  }
  Built b;
  b.l4 = f.size();
  if (s.udp) {
    push({0x9c, 0x40, 0x11, 0x51, 0, 0, 0, 0});
  } else {
    push({0x9c, 0x40, 0,    80,          0,    0,    0, 0, 0, 0,
          0x15, 0xb3, 0x80, s.tcp_flags, 0x01, 0xf6, 0, 0, 0, 0});
    put32(&f[b.l4 + 4], s.seq);
    push({0x01, 0x01, 0x08, 0x0a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88});  // timestamps
  }
  b.hdrs = f.size();
  for (std::size_t i = 0; i < s.payload; ++i) f.push_back(payload_byte(i));

  const std::size_t l4_len = f.size() - b.l4;
  unsigned char* ip = &f[kEth];
  if (s.ipv6) {
    put16(ip + 4, static_cast<std::uint16_t>(f.size() - kEth - 40));
  } else {
    put16(ip + 2, static_cast<std::uint16_t>(f.size() - kEth));
    const std::size_t ihl = (ip[0] & 0xfu) * 4;
    put16(ip + 10, static_cast<std::uint16_t>(~fold(add_words(ip, ihl))));
  }
  if (s.udp) put16(&f[b.l4 + 4], static_cast<std::uint16_t>(l4_len));
  // CHECKSUM_PARTIAL as the stack leaves it: ~csum_tcpudp_magic(saddr, daddr, len, proto, 0).
  const std::size_t csum_offset = s.udp ? 6 : 16;
  put16(&f[b.l4 + csum_offset], fold(pseudo_sum(ip, s.ipv6, proto, l4_len)));

  VirtioNetHdr h{};
  h.flags = kVnetFlagNeedsCsum;
  h.gso_type = s.udp ? kVnetGsoUdpL4 : (s.ipv6 ? kVnetGsoTcpv6 : kVnetGsoTcpv4);
  if (s.ecn) h.gso_type |= kVnetGsoEcn;
  h.hdr_len = static_cast<std::uint16_t>(b.hdrs);
  h.gso_size = s.gso_size;
  h.csum_start = static_cast<std::uint16_t>(b.l4);
  h.csum_offset = static_cast<std::uint16_t>(csum_offset);
  b.record.resize(kVnetHdrLen);
  std::memcpy(b.record.data(), &h, kVnetHdrLen);
  b.record.insert(b.record.end(), f.begin(), f.end());
  return b;
}

VirtioNetHdr hdr_of(const Bytes& record) {
  VirtioNetHdr h;
  std::memcpy(&h, record.data(), kVnetHdrLen);
  return h;
}
void set_hdr(Bytes& record, const VirtioNetHdr& h) { std::memcpy(record.data(), &h, kVnetHdrLen); }

struct Segment {
  VirtioNetHdr hdr;
  Bytes frame;
};

std::vector<Segment> split_ok(GsoSegmenter& seg, const Bytes& record) {
  std::vector<Segment> out;
  EXPECT_EQ(seg.split(record.data(), record.size()), GsoStatus::kSegmented);
  for (std::size_t i = 0; i < seg.count(); ++i) {
    std::span<const unsigned char> s = std::as_const(seg).segment(i);
    Segment x;
    EXPECT_GE(s.size(), kVnetHdrLen);
    std::memcpy(&x.hdr, s.data(), kVnetHdrLen);
    x.frame.assign(s.begin() + kVnetHdrLen, s.end());
    out.push_back(std::move(x));
  }
  return out;
}

std::size_t expected_count(const Spec& s) { return (s.payload + s.gso_size - 1) / s.gso_size; }

// The L4 checksum of a complete frame verifies against the pseudo-header.
bool l4_checksum_valid(const Bytes& frame, const Built& b, bool ipv6, bool udp) {
  const std::size_t l4_len = frame.size() - b.l4;
  std::uint32_t s = pseudo_sum(&frame[kEth], ipv6, udp ? 17 : 6, l4_len);
  s = add_words(&frame[b.l4], l4_len, s);
  return fold(s) == 0xffff;
}

// Every property of a split that does not depend on the L4 kind.
void check_split(const Spec& spec) {
  SCOPED_TRACE(::testing::Message()
               << "ipv6=" << spec.ipv6 << " udp=" << spec.udp << " hbh=" << spec.hop_by_hop
               << " payload=" << spec.payload << " gso_size=" << spec.gso_size);
  const Built b = build(spec);
  GsoSegmenter seg;
  const std::vector<Segment> segs = split_ok(seg, b.record);
  ASSERT_EQ(segs.size(), expected_count(spec));
  const Bytes orig(b.record.begin() + kVnetHdrLen, b.record.end());
  const VirtioNetHdr in = hdr_of(b.record);
  Bytes payload;
  for (std::size_t i = 0; i < segs.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "segment " << i);
    const Segment& s = segs[i];
    const bool last = i + 1 == segs.size();
    const std::size_t want_payload =
        last ? spec.payload - i * spec.gso_size : std::size_t{spec.gso_size};
    ASSERT_EQ(s.frame.size(), b.hdrs + want_payload);
    payload.insert(payload.end(), s.frame.begin() + static_cast<std::ptrdiff_t>(b.hdrs),
                   s.frame.end());
    // Ethernet header untouched.
    EXPECT_TRUE(std::equal(orig.begin(), orig.begin() + kEth, s.frame.begin()));
    // A plain frame with a partial checksum where the superpacket had it.
    EXPECT_EQ(s.hdr.flags, kVnetFlagNeedsCsum);
    EXPECT_EQ(s.hdr.gso_type, kVnetGsoNone);
    EXPECT_EQ(s.hdr.gso_size, 0);
    EXPECT_TRUE(s.hdr.hdr_len == 0 || s.hdr.hdr_len == b.hdrs) << s.hdr.hdr_len;
    EXPECT_EQ(s.hdr.csum_start, in.csum_start);
    EXPECT_EQ(s.hdr.csum_offset, in.csum_offset);

    const unsigned char* ip = &s.frame[kEth];
    if (spec.ipv6) {
      EXPECT_EQ(get16(ip + 4), s.frame.size() - kEth - 40);
      // Everything else in the IPv6 header (and extension headers) is copied.
      EXPECT_TRUE(std::equal(orig.begin() + kEth, orig.begin() + kEth + 4, s.frame.begin() + kEth));
      EXPECT_TRUE(std::equal(orig.begin() + kEth + 6,
                             orig.begin() + static_cast<std::ptrdiff_t>(b.l4),
                             s.frame.begin() + kEth + 6));
    } else {
      const std::size_t ihl = (ip[0] & 0xfu) * 4;
      EXPECT_EQ(get16(ip + 2), s.frame.size() - kEth);
      EXPECT_EQ(get16(ip + 4), static_cast<std::uint16_t>(spec.ip_id + i));
      EXPECT_EQ(fold(add_words(ip, ihl)), 0xffff) << "IPv4 header checksum";
      EXPECT_EQ(get16(ip + 6), get16(&orig[kEth + 6]));  // DF kept, no fragment
      EXPECT_TRUE(std::equal(orig.begin() + kEth + 8, orig.begin() + kEth + 10,
                             s.frame.begin() + kEth + 8));  // TTL, protocol
      EXPECT_TRUE(std::equal(orig.begin() + kEth + 12,
                             orig.begin() + static_cast<std::ptrdiff_t>(b.l4),
                             s.frame.begin() + kEth + 12));  // addresses, options
    }

    const std::size_t l4_len = s.frame.size() - b.l4;
    const std::uint8_t proto = spec.udp ? 17 : 6;
    // The field holds the pseudo-header sum for this segment's length.
    EXPECT_EQ(canonical(get16(&s.frame[b.l4 + in.csum_offset])),
              canonical(fold(pseudo_sum(ip, spec.ipv6, proto, l4_len))));
    if (spec.udp) {
      EXPECT_EQ(get16(&s.frame[b.l4 + 4]), l4_len);
      EXPECT_TRUE(std::equal(orig.begin() + static_cast<std::ptrdiff_t>(b.l4),
                             orig.begin() + static_cast<std::ptrdiff_t>(b.l4) + 4,
                             s.frame.begin() + static_cast<std::ptrdiff_t>(b.l4)));  // ports
    } else {
      EXPECT_EQ(get32(&s.frame[b.l4 + 4]),
                static_cast<std::uint32_t>(spec.seq + i * std::size_t{spec.gso_size}));
    }

    Segment done = s;
    ASSERT_TRUE(complete_partial_checksum(done.frame.data(), done.frame.size(), done.hdr));
    EXPECT_EQ(done.hdr.flags & kVnetFlagNeedsCsum, 0);
    EXPECT_TRUE(l4_checksum_valid(done.frame, b, spec.ipv6, spec.udp));
  }
  EXPECT_TRUE(payload == Bytes(orig.begin() + static_cast<std::ptrdiff_t>(b.hdrs), orig.end()))
      << "concatenated segment payloads differ from the superpacket's";
}

TEST(GsoSegmentTest, TcpV4SplitsIntoGsoSizedSegmentsThatReassembleThePayload) {
  check_split(Spec{.payload = 10000, .gso_size = 1448});  // 6 full + 1 short (1312)
}

TEST(GsoSegmentTest, TcpV4WithIpOptionsCopiesThemIntoEverySegment) {
  check_split(Spec{.ipv4_options = true, .payload = 5000, .gso_size = 1000});
}

TEST(GsoSegmentTest, Ipv4IdIncrementsPerSegmentAndWrapsAt65536) {
  check_split(Spec{.payload = 6000, .gso_size = 1000, .ip_id = 0xfffd});
}

TEST(GsoSegmentTest, TcpSequenceContinuesAcrossSegmentsAndWrapsAt2To32) {
  check_split(Spec{.payload = 9000, .gso_size = 1448, .seq = 0xffffe000u});
}

TEST(GsoSegmentTest, FullSize64KiBTcpV4Superpacket) {
  check_split(Spec{.payload = 65535 - 20 - 32, .gso_size = 1448});
}

TEST(GsoSegmentTest, TcpV6SplitsWithPayloadLengthPerSegment) {
  check_split(Spec{.ipv6 = true, .payload = 20000, .gso_size = 1428});
}

TEST(GsoSegmentTest, TcpV6FindsTheTcpHeaderAfterAHopByHopHeader) {
  const Spec spec{.ipv6 = true, .hop_by_hop = true, .payload = 7000, .gso_size = 1420};
  EXPECT_EQ(build(spec).l4, kEth + 40 + 8);
  check_split(spec);
}

TEST(GsoSegmentTest, UdpL4OverIpv4GivesEachSegmentItsOwnUdpLength) {
  check_split(Spec{.udp = true, .payload = 12345, .gso_size = 1472});
}

TEST(GsoSegmentTest, UdpL4OverIpv6WithHopByHopHeader) {
  check_split(
      Spec{.ipv6 = true, .udp = true, .hop_by_hop = true, .payload = 5000, .gso_size = 1200});
}

TEST(GsoSegmentTest, PayloadAnExactMultipleOfGsoSizeGivesOnlyFullSegments) {
  for (bool udp : {false, true}) {
    const Spec spec{.udp = udp, .payload = 4 * 1448, .gso_size = 1448};
    check_split(spec);
    GsoSegmenter seg;
    const Built b = build(spec);
    for (const Segment& s : split_ok(seg, b.record)) EXPECT_EQ(s.frame.size(), b.hdrs + 1448);
  }
}

TEST(GsoSegmentTest, ShortLastSegmentCarriesTheRemainder) {
  const Spec spec{.payload = 3 * 1000 + 1, .gso_size = 1000};
  check_split(spec);
  GsoSegmenter seg;
  const Built b = build(spec);
  const std::vector<Segment> segs = split_ok(seg, b.record);
  ASSERT_EQ(segs.size(), 4u);
  EXPECT_EQ(segs.back().frame.size(), b.hdrs + 1);
}

TEST(GsoSegmentTest, PayloadNoLargerThanGsoSizeGivesOneNonGsoFrame) {
  check_split(Spec{.payload = 1448, .gso_size = 1448});
  check_split(Spec{.ipv6 = true, .udp = true, .payload = 10, .gso_size = 1448});
}

TEST(GsoSegmentTest, FinAndPshOnlyOnTheLastSegmentAndCwrOnlyOnTheFirst) {
  const Spec spec{.payload = 5000,
                  .gso_size = 1448,
                  .tcp_flags = kFin | kPsh | kAck | kCwr | kEce,
                  .ecn = true};
  const Built b = build(spec);
  GsoSegmenter seg;
  const std::vector<Segment> segs = split_ok(seg, b.record);
  ASSERT_EQ(segs.size(), 4u);
  for (std::size_t i = 0; i < segs.size(); ++i) {
    const std::uint8_t flags = segs[i].frame[b.l4 + 13];
    const bool first = i == 0, last = i + 1 == segs.size();
    EXPECT_EQ((flags & kFin) != 0, last) << i;
    EXPECT_EQ((flags & kPsh) != 0, last) << i;
    EXPECT_EQ((flags & kCwr) != 0, first) << i;
    EXPECT_TRUE(flags & kAck) << i;
    EXPECT_TRUE(flags & kEce) << i;
    // Ports, ack number, data offset, window, urgent pointer and options are copied.
    const Bytes& f = segs[i].frame;
    const auto l4 = b.record.begin() + static_cast<std::ptrdiff_t>(kVnetHdrLen + b.l4);
    EXPECT_TRUE(std::equal(l4, l4 + 4, f.begin() + static_cast<std::ptrdiff_t>(b.l4)));
    EXPECT_TRUE(std::equal(l4 + 8, l4 + 13, f.begin() + static_cast<std::ptrdiff_t>(b.l4 + 8)));
    EXPECT_TRUE(std::equal(l4 + 14, l4 + 16, f.begin() + static_cast<std::ptrdiff_t>(b.l4 + 14)));
    EXPECT_TRUE(std::equal(l4 + 18, l4 + 32, f.begin() + static_cast<std::ptrdiff_t>(b.l4 + 18)));
  }
}

TEST(GsoSegmentTest, NonGsoFrameIsReportedAndProducesNothing) {
  Built b = build(Spec{.payload = 100});
  VirtioNetHdr h = hdr_of(b.record);
  h.gso_type = kVnetGsoNone;
  h.gso_size = 0;
  set_hdr(b.record, h);
  GsoSegmenter seg;
  EXPECT_EQ(seg.split(b.record.data(), b.record.size()), GsoStatus::kNotGso);
  EXPECT_EQ(seg.count(), 0u);
}

TEST(GsoSegmentTest, GsoKindsItCannotSplitAreRefused) {
  struct Case {
    const char* what;
    Spec spec;
    void (*mutate)(Built&);
  };
  const Case cases[] = {
      {"legacy UFO", Spec{.udp = true},
       [](Built& b) {
         VirtioNetHdr h = hdr_of(b.record);
         h.gso_type = kVnetGsoUdp;
         set_hdr(b.record, h);
       }},
      {"UDP_L4 with the ECN bit", Spec{.udp = true},
       [](Built& b) {
         VirtioNetHdr h = hdr_of(b.record);
         h.gso_type |= kVnetGsoEcn;
         set_hdr(b.record, h);
       }},
      {"unknown GSO type", Spec{},
       [](Built& b) {
         VirtioNetHdr h = hdr_of(b.record);
         h.gso_type = 6;
         set_hdr(b.record, h);
       }},
      {"no partial checksum", Spec{},
       [](Built& b) {
         VirtioNetHdr h = hdr_of(b.record);
         h.flags = 0;
         set_hdr(b.record, h);
       }},
      {"VLAN tag", Spec{},
       [](Built& b) {
         const auto at = b.record.begin() + kVnetHdrLen + 12;
         b.record.insert(at, {0x81, 0x00, 0x00, 0x07});
         VirtioNetHdr h = hdr_of(b.record);
         h.csum_start = static_cast<std::uint16_t>(h.csum_start + 4);
         set_hdr(b.record, h);
       }},
      {"IPv4 fragment", Spec{}, [](Built& b) { b.record[kVnetHdrLen + kEth + 6] |= 0x20; }},  // MF
      {"IPv6 fragment header", Spec{.ipv6 = true, .hop_by_hop = true},
       [](Built& b) { b.record[kVnetHdrLen + kEth + 6] = 44; }},
  };
  GsoSegmenter seg;
  for (const Case& c : cases) {
    Built b = build(c.spec);
    c.mutate(b);
    EXPECT_EQ(seg.split(b.record.data(), b.record.size()), GsoStatus::kUnsupported) << c.what;
    EXPECT_EQ(seg.count(), 0u) << c.what;
  }
}

TEST(GsoSegmentTest, InconsistentHeadersAreReportedMalformed) {
  struct Case {
    const char* what;
    Spec spec;
    void (*mutate)(Built&);
  };
  const Case cases[] = {
      {"TCPV4 on an IPv6 frame", Spec{.ipv6 = true},
       [](Built& b) {
         VirtioNetHdr h = hdr_of(b.record);
         h.gso_type = kVnetGsoTcpv4;
         set_hdr(b.record, h);
       }},
      {"TCPV6 on an IPv4 frame", Spec{},
       [](Built& b) {
         VirtioNetHdr h = hdr_of(b.record);
         h.gso_type = kVnetGsoTcpv6;
         set_hdr(b.record, h);
       }},
      {"UDP_L4 on a TCP packet", Spec{},
       [](Built& b) {
         VirtioNetHdr h = hdr_of(b.record);
         h.gso_type = kVnetGsoUdpL4;
         h.csum_offset = 6;
         set_hdr(b.record, h);
       }},
      {"csum_start not at the L4 header", Spec{},
       [](Built& b) {
         VirtioNetHdr h = hdr_of(b.record);
         h.csum_start = static_cast<std::uint16_t>(h.csum_start + 4);
         set_hdr(b.record, h);
       }},
      {"csum_offset not the TCP checksum", Spec{},
       [](Built& b) {
         VirtioNetHdr h = hdr_of(b.record);
         h.csum_offset = 6;
         set_hdr(b.record, h);
       }},
      {"gso_size 0", Spec{},
       [](Built& b) {
         VirtioNetHdr h = hdr_of(b.record);
         h.gso_size = 0;
         set_hdr(b.record, h);
       }},
      {"IPv4 total length disagrees", Spec{},
       [](Built& b) { b.record[kVnetHdrLen + kEth + 3] ^= 0x01; }},
      {"IPv6 payload length 0", Spec{.ipv6 = true},
       [](Built& b) { put16(&b.record[kVnetHdrLen + kEth + 4], 0); }},
      {"IPv4 version field", Spec{}, [](Built& b) { b.record[kVnetHdrLen + kEth] = 0x65; }},
      {"IPv4 ihl below 5", Spec{}, [](Built& b) { b.record[kVnetHdrLen + kEth] = 0x44; }},
      {"TCP data offset below 5", Spec{},
       [](Built& b) { b.record[kVnetHdrLen + b.l4 + 12] = 0x40; }},
      {"TCP data offset beyond the frame", Spec{.payload = 20},
       [](Built& b) { b.record[kVnetHdrLen + b.l4 + 12] = 0xf0; }},
      {"UDP length disagrees", Spec{.udp = true},
       [](Built& b) { b.record[kVnetHdrLen + b.l4 + 5] ^= 0x10; }},
      {"headers only", Spec{.payload = 0}, [](Built&) {}},
  };
  GsoSegmenter seg;
  for (const Case& c : cases) {
    Built b = build(c.spec);
    c.mutate(b);
    EXPECT_EQ(seg.split(b.record.data(), b.record.size()), GsoStatus::kMalformed) << c.what;
    EXPECT_EQ(seg.count(), 0u) << c.what;
  }
  const unsigned char tiny[kVnetHdrLen - 1] = {};
  EXPECT_EQ(seg.split(tiny, sizeof tiny), GsoStatus::kMalformed);
}

const Spec kVariety[] = {
    Spec{.payload = 3000, .gso_size = 1000},
    Spec{.ipv4_options = true, .payload = 3000, .gso_size = 1000},
    Spec{.ipv6 = true, .payload = 3000, .gso_size = 1000},
    Spec{.ipv6 = true, .hop_by_hop = true, .payload = 3000, .gso_size = 1000},
    Spec{.udp = true, .payload = 3000, .gso_size = 1000},
    Spec{.ipv6 = true, .udp = true, .hop_by_hop = true, .payload = 3000, .gso_size = 1000},
};

TEST(GsoSegmentTest, TruncatedRecordsAreRefusedWithoutReadingPastTheirEnd) {
  std::mt19937 rng(12345);
  GsoSegmenter seg;
  for (const Spec& spec : kVariety) {
    const Built b = build(spec);
    for (std::size_t len = 0; len < b.hdrs + kVnetHdrLen + 2; ++len) {
      // An exact-size heap copy, so a sanitizer build catches any read past `len`.
      const Bytes cut(b.record.begin(), b.record.begin() + static_cast<std::ptrdiff_t>(len));
      EXPECT_NE(seg.split(cut.data(), cut.size()), GsoStatus::kSegmented) << len;
      EXPECT_EQ(seg.count(), 0u);
    }
    std::uniform_int_distribution<std::size_t> any(0, b.record.size() - 1);
    for (int i = 0; i < 200; ++i) {
      const std::size_t len = any(rng);
      const Bytes cut(b.record.begin(), b.record.begin() + static_cast<std::ptrdiff_t>(len));
      EXPECT_NE(seg.split(cut.data(), cut.size()), GsoStatus::kSegmented) << len;
      EXPECT_EQ(seg.count(), 0u);
    }
  }
}

TEST(GsoSegmentTest, RandomHeaderDamageNeverYieldsSegmentsBeyondTheInput) {
  std::mt19937 rng(777);
  GsoSegmenter seg;
  int segmented = 0, refused = 0;
  for (const Spec& spec : kVariety) {
    const Built b = build(spec);
    std::uniform_int_distribution<std::size_t> pos(0, kVnetHdrLen + b.hdrs - 1);
    std::uniform_int_distribution<int> byte(0, 255);
    for (int i = 0; i < 500; ++i) {
      Bytes rec = b.record;
      for (int k = 0; k < 1 + i % 3; ++k) {
        rec[pos(rng)] = static_cast<unsigned char>(byte(rng));
      }
      if (seg.split(rec.data(), rec.size()) != GsoStatus::kSegmented) {
        EXPECT_EQ(seg.count(), 0u);
        ++refused;
        continue;
      }
      ++segmented;
      const VirtioNetHdr in = hdr_of(rec);
      ASSERT_GE(seg.count(), 1u);
      VirtioNetHdr first;
      std::memcpy(&first, seg.segment(0).data(), kVnetHdrLen);
      std::size_t payload = 0;
      for (std::size_t j = 0; j < seg.count(); ++j) {
        std::span<unsigned char> s = seg.segment(j);
        ASSERT_GT(s.size(), kVnetHdrLen);
        VirtioNetHdr h;
        std::memcpy(&h, s.data(), kVnetHdrLen);
        const std::size_t flen = s.size() - kVnetHdrLen;
        ASSERT_GE(flen, h.hdr_len);
        ASSERT_LE(flen, std::size_t{h.hdr_len} + in.gso_size);
        payload += flen - h.hdr_len;
        EXPECT_TRUE(complete_partial_checksum(s.data() + kVnetHdrLen, flen, h));
      }
      EXPECT_EQ(payload, rec.size() - kVnetHdrLen - first.hdr_len);
    }
  }
  // Both outcomes occurred: damage to e.g. addresses or ports still splits.
  EXPECT_GT(segmented, 0);
  EXPECT_GT(refused, 0);
}

TEST(GsoSegmentTest, SplittingAgainReplacesTheSegmentsAndReusesTheBuffer) {
  const Built big = build(Spec{.payload = 60000, .gso_size = 1448});
  const Built small = build(Spec{.ipv6 = true, .udp = true, .payload = 2000, .gso_size = 1000});
  GsoSegmenter seg;
  ASSERT_EQ(seg.split(big.record.data(), big.record.size()), GsoStatus::kSegmented);
  const unsigned char* first = seg.segment(0).data();
  ASSERT_EQ(seg.split(small.record.data(), small.record.size()), GsoStatus::kSegmented);
  ASSERT_EQ(seg.count(), 2u);
  EXPECT_EQ(seg.segment(1).size(), kVnetHdrLen + small.hdrs + 1000);
  EXPECT_EQ(seg.segment(0).data(), first);
  ASSERT_EQ(seg.split(big.record.data(), big.record.size()), GsoStatus::kSegmented);
  EXPECT_EQ(seg.count(), 42u);
  EXPECT_EQ(seg.segment(0).data(), first) << "the buffer was reallocated for the same size";
}

// A single non-GSO frame with a partial checksum, as the kernel hands it out.
Built single(const Spec& spec) {
  Built b = build(spec);
  VirtioNetHdr h = hdr_of(b.record);
  h.gso_type = kVnetGsoNone;
  h.gso_size = 0;
  set_hdr(b.record, h);
  return b;
}

TEST(GsoSegmentTest, CompletingThePartialChecksumOfASingleFrameMakesItValid) {
  for (const Spec& spec : {Spec{.payload = 1000}, Spec{.payload = 999},
                           Spec{.ipv6 = true, .hop_by_hop = true, .payload = 1001},
                           Spec{.udp = true, .payload = 77}, Spec{.ipv6 = true, .udp = true}}) {
    Built b = single(spec);
    VirtioNetHdr h = hdr_of(b.record);
    Bytes frame(b.record.begin() + kVnetHdrLen, b.record.end());
    ASSERT_FALSE(l4_checksum_valid(frame, b, spec.ipv6, spec.udp));
    ASSERT_TRUE(complete_partial_checksum(frame.data(), frame.size(), h));
    EXPECT_EQ(h.flags & kVnetFlagNeedsCsum, 0);
    EXPECT_TRUE(l4_checksum_valid(frame, b, spec.ipv6, spec.udp))
        << "ipv6=" << spec.ipv6 << " udp=" << spec.udp << " payload=" << spec.payload;
  }
}

TEST(GsoSegmentTest, CompletingIgnoresEthernetPadding) {
  Built b = single(Spec{.payload = 0, .tcp_flags = kAck});  // a bare ACK: 66 bytes
  Bytes frame(b.record.begin() + kVnetHdrLen, b.record.end());
  const std::size_t ip_end = frame.size();
  frame.insert(frame.end(), {0xde, 0xad, 0xbe, 0xef, 0x55});
  VirtioNetHdr h = hdr_of(b.record);
  ASSERT_TRUE(complete_partial_checksum(frame.data(), frame.size(), h));
  frame.resize(ip_end);
  EXPECT_TRUE(l4_checksum_valid(frame, b, false, false));
}

TEST(GsoSegmentTest, CompletedUdpChecksumOfZeroIsSentAsAllOnes) {
  Built b = single(Spec{.udp = true, .payload = 64});
  Bytes frame(b.record.begin() + kVnetHdrLen, b.record.end());
  // Choose the last payload word so that the data sums to 0xffff: the checksum computes to 0.
  const std::size_t last = frame.size() - 2;
  put16(&frame[last], 0);
  const std::uint16_t rest = fold(add_words(&frame[b.l4], frame.size() - b.l4));
  put16(&frame[last], static_cast<std::uint16_t>(~rest));
  VirtioNetHdr h = hdr_of(b.record);
  ASSERT_TRUE(complete_partial_checksum(frame.data(), frame.size(), h));
  EXPECT_EQ(get16(&frame[b.l4 + 6]), 0xffff);
  EXPECT_TRUE(l4_checksum_valid(frame, b, false, true));
}

TEST(GsoSegmentTest, CompletingRefusesOffsetsOutsideTheFrame) {
  const Built b = single(Spec{.payload = 100});
  const Bytes frame(b.record.begin() + kVnetHdrLen, b.record.end());
  const VirtioNetHdr good = hdr_of(b.record);
  auto attempt = [&](std::uint16_t start, std::uint16_t offset) {
    Bytes f = frame;
    VirtioNetHdr h = good;
    h.csum_start = start;
    h.csum_offset = offset;
    const bool ok = complete_partial_checksum(f.data(), f.size(), h);
    EXPECT_TRUE(f == frame) << "frame changed on refusal";
    EXPECT_EQ(h.flags, good.flags);
    return ok;
  };
  EXPECT_FALSE(attempt(static_cast<std::uint16_t>(frame.size()), 0));
  EXPECT_FALSE(attempt(good.csum_start, static_cast<std::uint16_t>(frame.size())));
  EXPECT_FALSE(attempt(static_cast<std::uint16_t>(frame.size() - 1), 0));
  EXPECT_FALSE(attempt(0xffff, 0xffff));
}

TEST(GsoSegmentTest, CompletingWithoutNeedsCsumChangesNothing) {
  const Built b = single(Spec{.payload = 100});
  Bytes frame(b.record.begin() + kVnetHdrLen, b.record.end());
  const Bytes before = frame;
  VirtioNetHdr h = hdr_of(b.record);
  h.flags = 0;
  EXPECT_TRUE(complete_partial_checksum(frame.data(), frame.size(), h));
  EXPECT_TRUE(frame == before);
}

}  // namespace
