#include "gso_segment.hpp"

#include <bit>
#include <cstring>

namespace patchbay::internal {
namespace {

constexpr std::size_t kEthHdrLen = 14;
constexpr std::uint16_t kEthertypeIpv4 = 0x0800;
constexpr std::uint16_t kEthertypeIpv6 = 0x86dd;
constexpr std::size_t kIpv4MinHdrLen = 20;
constexpr std::size_t kIpv6HdrLen = 40;
constexpr std::uint8_t kProtoTcp = 6;
constexpr std::uint8_t kProtoUdp = 17;
constexpr std::uint8_t kIpv6HopByHop = 0;
constexpr std::uint8_t kIpv6Routing = 43;
constexpr std::uint8_t kIpv6DestOpts = 60;
constexpr std::size_t kTcpMinHdrLen = 20;
constexpr std::size_t kUdpHdrLen = 8;
constexpr std::uint16_t kTcpCsumOffset = 16;
constexpr std::uint16_t kUdpCsumOffset = 6;
constexpr std::uint8_t kTcpFin = 0x01;
constexpr std::uint8_t kTcpPsh = 0x08;
constexpr std::uint8_t kTcpCwr = 0x80;

std::uint16_t load16(const unsigned char* p) {
  return static_cast<std::uint16_t>((unsigned{p[0]} << 8) | p[1]);
}
std::uint32_t load32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         p[3];
}
void store16(unsigned char* p, std::uint16_t v) {
  p[0] = static_cast<unsigned char>(v >> 8);
  p[1] = static_cast<unsigned char>(v);
}
void store32(unsigned char* p, std::uint32_t v) {
  p[0] = static_cast<unsigned char>(v >> 24);
  p[1] = static_cast<unsigned char>(v >> 16);
  p[2] = static_cast<unsigned char>(v >> 8);
  p[3] = static_cast<unsigned char>(v);
}

// One's complement addition of two 16-bit values.
std::uint16_t add16(std::uint16_t a, std::uint16_t b) {
  std::uint32_t s = std::uint32_t{a} + b;
  return static_cast<std::uint16_t>((s & 0xffff) + (s >> 16));
}

// Internet sum (RFC 1071) of [data, data + len) as a big-endian 16-bit value, folded, not
// complemented. Sums native 64-bit words with end-around carry: the one's complement sum is
// independent of byte order up to a final swap, and 2^16 - 1 divides 2^64 - 1.
std::uint16_t internet_sum(const unsigned char* data, std::size_t len) {
  std::uint64_t sum = 0;
  auto add = [&sum](std::uint64_t w) {
    sum += w;
    sum += (sum < w);
  };
  for (; len >= 8; data += 8, len -= 8) {
    std::uint64_t w;
    std::memcpy(&w, data, 8);
    add(w);
  }
  if (len > 0) {
    // Zero-filled to 8 bytes: the odd trailing byte becomes the high byte of its word.
    std::uint64_t w = 0;
    std::memcpy(&w, data, len);
    add(w);
  }
  std::uint64_t s = (sum & 0xffffffff) + (sum >> 32);
  s = (s & 0xffffffff) + (s >> 32);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  auto folded = static_cast<std::uint16_t>(s);
  if constexpr (std::endian::native == std::endian::little) {
    folded = static_cast<std::uint16_t>((folded >> 8) | (folded << 8));
  }
  return folded;
}

// Where the headers of a superpacket lie in its Ethernet frame.
struct Layout {
  bool ipv4;
  bool tcp;
  std::size_t l4;       // offset of the TCP/UDP header
  std::size_t hdrs;     // Ethernet + IP + L4 header bytes
  std::size_t ip_hlen;  // IPv4 header length (options included)
};

// Locates the L4 header by walking the IP header(s) and checks that it agrees with the
// virtio_net_hdr. Every offset read is bounds-checked against `len`.
GsoStatus parse(const unsigned char* frame, std::size_t len, const VirtioNetHdr& in,
                std::uint8_t type, Layout& out) {
  out.tcp = type != kVnetGsoUdpL4;
  if (len < kEthHdrLen) return GsoStatus::kMalformed;
  const std::uint16_t ethertype = load16(frame + 12);
  const std::size_t l3 = kEthHdrLen;
  const unsigned char* ip = frame + l3;
  std::uint8_t proto;
  if (ethertype == kEthertypeIpv4) {
    if (type == kVnetGsoTcpv6) return GsoStatus::kMalformed;
    out.ipv4 = true;
    if (len < l3 + kIpv4MinHdrLen || (ip[0] >> 4) != 4) return GsoStatus::kMalformed;
    out.ip_hlen = std::size_t{ip[0] & 0x0fu} * 4;
    if (out.ip_hlen < kIpv4MinHdrLen || l3 + out.ip_hlen > len) return GsoStatus::kMalformed;
    // A superpacket has no Ethernet padding: a length that disagrees means a truncated read.
    if (load16(ip + 2) != len - l3) return GsoStatus::kMalformed;
    if (load16(ip + 6) & 0x3fff) return GsoStatus::kUnsupported;  // MF or fragment offset
    proto = ip[9];
    out.l4 = l3 + out.ip_hlen;
  } else if (ethertype == kEthertypeIpv6) {
    if (type == kVnetGsoTcpv4) return GsoStatus::kMalformed;
    out.ipv4 = false;
    out.ip_hlen = 0;
    if (len < l3 + kIpv6HdrLen || (ip[0] >> 4) != 6) return GsoStatus::kMalformed;
    // Payload length 0 (BIG TCP's jumbograms) lands here too: not split.
    if (load16(ip + 4) != len - l3 - kIpv6HdrLen) return GsoStatus::kMalformed;
    proto = ip[6];
    std::size_t off = l3 + kIpv6HdrLen;
    while (proto != kProtoTcp && proto != kProtoUdp) {
      const bool hop_by_hop_first = proto == kIpv6HopByHop && off == l3 + kIpv6HdrLen;
      if (!hop_by_hop_first && proto != kIpv6Routing && proto != kIpv6DestOpts) {
        return GsoStatus::kUnsupported;  // fragment, AH, ESP, ...: the kernel would not GSO it
      }
      if (off + 8 > len) return GsoStatus::kMalformed;
      proto = frame[off];
      off += (std::size_t{frame[off + 1]} + 1) * 8;
    }
    out.l4 = off;
  } else {
    return GsoStatus::kUnsupported;  // VLAN tags, MPLS, ...
  }

  if (proto != (out.tcp ? kProtoTcp : kProtoUdp)) return GsoStatus::kMalformed;
  if (in.csum_start != out.l4 || in.csum_offset != (out.tcp ? kTcpCsumOffset : kUdpCsumOffset)) {
    return GsoStatus::kMalformed;
  }
  const unsigned char* l4 = frame + out.l4;
  if (out.tcp) {
    if (out.l4 + kTcpMinHdrLen > len) return GsoStatus::kMalformed;
    const std::size_t thlen = std::size_t{l4[12]} / 16 * 4;
    if (thlen < kTcpMinHdrLen) return GsoStatus::kMalformed;
    out.hdrs = out.l4 + thlen;
  } else {
    if (out.l4 + kUdpHdrLen > len) return GsoStatus::kMalformed;
    if (load16(l4 + 4) != len - out.l4) return GsoStatus::kMalformed;
    out.hdrs = out.l4 + kUdpHdrLen;
  }
  // No payload at all is not a superpacket either.
  if (out.hdrs >= len) return GsoStatus::kMalformed;
  if (out.hdrs > 0xffff) return GsoStatus::kUnsupported;  // does not fit hdr_len
  return GsoStatus::kSegmented;
}

}  // namespace

GsoStatus GsoSegmenter::split(const unsigned char* record, std::size_t len) {
  count_ = 0;
  if (len < kVnetHdrLen) return GsoStatus::kMalformed;
  VirtioNetHdr in;
  std::memcpy(&in, record, kVnetHdrLen);
  const std::uint8_t type = in.gso_type & static_cast<std::uint8_t>(~kVnetGsoEcn);
  if (type == kVnetGsoNone) return GsoStatus::kNotGso;
  const bool ecn = in.gso_type & kVnetGsoEcn;
  if (type != kVnetGsoTcpv4 && type != kVnetGsoTcpv6 && (type != kVnetGsoUdpL4 || ecn)) {
    return GsoStatus::kUnsupported;
  }
  // Without a partial checksum the check field holds nothing the segments can inherit (the
  // kernel only hands out CHECKSUM_PARTIAL superpackets anyway).
  if (!(in.flags & kVnetFlagNeedsCsum)) return GsoStatus::kUnsupported;

  const unsigned char* frame = record + kVnetHdrLen;
  const std::size_t flen = len - kVnetHdrLen;
  Layout lay;
  if (GsoStatus st = parse(frame, flen, in, type, lay); st != GsoStatus::kSegmented) return st;
  if (in.gso_size == 0) return GsoStatus::kMalformed;

  const std::size_t mss = in.gso_size;
  const std::size_t payload = flen - lay.hdrs;
  const std::size_t n = (payload + mss - 1) / mss;
  const std::size_t per_seg = kVnetHdrLen + lay.hdrs;
  if (n * per_seg + payload > kMaxOutputBytes) return GsoStatus::kUnsupported;
  if (buf_.size() < n * per_seg + payload) buf_.resize(n * per_seg + payload);
  if (offsets_.size() < n + 1) offsets_.resize(n + 1);

  const std::size_t l3 = kEthHdrLen;
  const std::uint16_t csum_off = in.csum_offset;
  const std::size_t l4_len = flen - lay.l4;  // <= 0xffff: bounded by the IP length field
  // tcp_gso_segment/__udp_gso_segment: the field holds the pseudo-header sum for the whole L4
  // length; take that length out once and put each segment's in.
  const std::uint16_t base = add16(load16(frame + lay.l4 + csum_off),
                                   static_cast<std::uint16_t>(~static_cast<unsigned>(l4_len)));
  const std::uint16_t id0 = lay.ipv4 ? load16(frame + l3 + 4) : 0;
  const std::uint32_t seq0 = lay.tcp ? load32(frame + lay.l4 + 4) : 0;
  const VirtioNetHdr out_hdr{kVnetFlagNeedsCsum,
                             kVnetGsoNone,
                             static_cast<std::uint16_t>(lay.hdrs),
                             0,
                             static_cast<std::uint16_t>(lay.l4),
                             csum_off};

  std::size_t pos = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t chunk = i + 1 < n ? mss : payload - i * mss;
    const std::size_t seg_flen = lay.hdrs + chunk;
    offsets_[i] = pos;
    unsigned char* out = buf_.data() + pos;
    std::memcpy(out, &out_hdr, kVnetHdrLen);
    unsigned char* f = out + kVnetHdrLen;
    std::memcpy(f, frame, lay.hdrs);
    std::memcpy(f + lay.hdrs, frame + lay.hdrs + i * mss, chunk);

    unsigned char* ip = f + l3;
    if (lay.ipv4) {
      store16(ip + 2, static_cast<std::uint16_t>(seg_flen - l3));
      store16(ip + 4, static_cast<std::uint16_t>(id0 + i));
      store16(ip + 10, 0);
      store16(ip + 10, static_cast<std::uint16_t>(~internet_sum(ip, lay.ip_hlen)));
    } else {
      store16(ip + 4, static_cast<std::uint16_t>(seg_flen - l3 - kIpv6HdrLen));
    }
    unsigned char* l4 = f + lay.l4;
    const auto seg_l4_len = static_cast<std::uint16_t>(seg_flen - lay.l4);
    if (lay.tcp) {
      store32(l4 + 4, static_cast<std::uint32_t>(seq0 + i * mss));
      if (i + 1 < n) l4[13] &= static_cast<unsigned char>(~(kTcpFin | kTcpPsh));
      if (i > 0) l4[13] &= static_cast<unsigned char>(~kTcpCwr);
    } else {
      store16(l4 + 4, seg_l4_len);
    }
    store16(l4 + csum_off, add16(base, seg_l4_len));
    pos += kVnetHdrLen + seg_flen;
  }
  offsets_[n] = pos;
  count_ = n;
  return GsoStatus::kSegmented;
}

bool complete_partial_checksum(unsigned char* frame, std::size_t len, VirtioNetHdr& hdr) {
  if (!(hdr.flags & kVnetFlagNeedsCsum)) return true;
  const std::size_t start = hdr.csum_start;
  const std::size_t field = start + hdr.csum_offset;
  // The kernel's skb->len ends with the IP packet; a frame may carry Ethernet padding beyond.
  std::size_t end = len;
  if (len >= kEthHdrLen) {
    const unsigned char* ip = frame + kEthHdrLen;
    const std::uint16_t ethertype = load16(frame + 12);
    std::size_t ip_end = 0;
    if (ethertype == kEthertypeIpv4 && len >= kEthHdrLen + kIpv4MinHdrLen && (ip[0] >> 4) == 4) {
      ip_end = kEthHdrLen + load16(ip + 2);
    } else if (ethertype == kEthertypeIpv6 && len >= kEthHdrLen + kIpv6HdrLen &&
               (ip[0] >> 4) == 6 && load16(ip + 4) != 0) {
      ip_end = kEthHdrLen + kIpv6HdrLen + load16(ip + 4);
    }
    if (ip_end > field + 1 && ip_end < len) end = ip_end;
  }
  if (start >= end || field + 2 > end) return false;
  std::uint16_t sum = static_cast<std::uint16_t>(~internet_sum(frame + start, end - start));
  if (sum == 0) sum = 0xffff;  // skb_checksum_help's CSUM_MANGLED_0 (UDP: 0 means none)
  store16(frame + field, sum);
  hdr.flags &= static_cast<std::uint8_t>(~kVnetFlagNeedsCsum);
  return true;
}

}  // namespace patchbay::internal
