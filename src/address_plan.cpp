#include "address_plan.hpp"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <utility>

#include "patchbay/error.hpp"

namespace patchbay::internal {
namespace {

using Bytes6 = Ipv6Address::bytes_type;

// Public LANs use 198.18.1.0 .. 198.18.15.0 first so that small labs get short, familiar
// prefixes next to the IX; 198.18.16.0/20 and up are kept for regions.
constexpr std::uint32_t kPublicLowCount = 15;
constexpr std::uint32_t kPublicHighCount = 256;  // 198.19.0.0/16 in /24s
// Index 0 of the private and carrier sequences is the x.0.0.0/24 that we never hand out, so
// the sequences run over /24 numbers 1 .. count-1 of their block.
constexpr std::uint32_t kPrivateSlash24s = 1u << 16;  // 10.0.0.0/8
constexpr std::uint32_t kCarrierSlash24s = 1u << 14;  // 100.64.0.0/10
constexpr std::uint32_t kV6SubnetMax = 0xffff;        // one 16-bit group of the prefix
constexpr std::uint32_t kIxV4Last = 254;
constexpr std::uint32_t kIxV6Last = 0xfffe;
// v6 hosts stop at ::fffe: 65533 hosts per switch is far more than any lab needs, addresses
// stay short, and the top of a /64 (RFC 2526 subnet anycast) is never touched.
constexpr std::uint64_t kV6HostLastOffset = 0xfffe;

constexpr std::uint32_t v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  return (std::uint32_t{a} << 24) | (std::uint32_t{b} << 16) | (std::uint32_t{c} << 8) | d;
}

Error exhausted(const std::string& what) {
  return Error(ErrorKind::kInvalidArgument, "", what + " pool exhausted");
}

// Adds `offset` to the low 64 bits of `base` (with carry into the high half, so prefixes
// shorter than /64 work too).
Ipv6Address v6_add(const Ipv6Address& base, std::uint64_t offset) {
  Bytes6 bytes = base.to_bytes();
  unsigned carry = 0;
  for (int i = 15; i >= 0; --i) {
    unsigned sum = bytes[i] + carry + (i >= 8 ? static_cast<unsigned>(offset & 0xff) : 0u);
    if (i >= 8) offset >>= 8;
    bytes[i] = static_cast<unsigned char>(sum & 0xff);
    carry = sum >> 8;
  }
  return Ipv6Address(bytes);
}

Ipv6Address v6_with_groups(std::uint16_t g0, std::uint16_t g1, std::uint16_t g2, std::uint16_t g3,
                           std::uint64_t low) {
  Bytes6 bytes{};
  const std::uint16_t groups[4] = {g0, g1, g2, g3};
  for (int i = 0; i < 4; ++i) {
    bytes[2 * i] = static_cast<unsigned char>(groups[i] >> 8);
    bytes[2 * i + 1] = static_cast<unsigned char>(groups[i] & 0xff);
  }
  for (int i = 0; i < 8; ++i) bytes[15 - i] = static_cast<unsigned char>((low >> (8 * i)) & 0xff);
  return Ipv6Address(bytes);
}

std::uint32_t v4_mask(unsigned prefix_len) {
  return prefix_len == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix_len);
}

Ipv6Address v6_network(const Ipv6Address& a, unsigned prefix_len) {
  Bytes6 bytes = a.to_bytes();
  for (unsigned i = 0; i < 16; ++i) {
    unsigned keep = prefix_len > 8 * i ? std::min(8u, prefix_len - 8 * i) : 0u;
    bytes[i] &= static_cast<unsigned char>(keep == 0 ? 0 : 0xff << (8 - keep));
  }
  return Ipv6Address(bytes);
}

// Last usable host offset, or 0 when the prefix leaves room for none beyond the gateway.
std::uint64_t v4_last_offset(unsigned prefix_len) {
  if (prefix_len > 30) return 0;
  return (std::uint64_t{1} << (32 - prefix_len)) - 2;  // broadcast excluded
}

std::uint64_t v6_last_offset(unsigned prefix_len) {
  if (prefix_len > 126) return 0;
  unsigned host_bits = 128 - prefix_len;
  if (host_bits >= 16) return kV6HostLastOffset;
  return (std::uint64_t{1} << host_bits) - 2;  // mirror v4: the all-ones address stays unused
}

}  // namespace

Ipv4Net AddressPlan::ix_v4() { return {Ipv4Address(v4(198, 18, 0, 0)), 24}; }

Ipv6Net AddressPlan::ix_v6() { return {v6_with_groups(0x2001, 0x0db8, 0, 0, 0), 64}; }

Ipv4Address AddressPlan::ix_gateway_v4() { return Ipv4Address(v4(198, 18, 0, 1)); }

Ipv6Address AddressPlan::ix_gateway_v6() { return v6_with_groups(0x2001, 0x0db8, 0, 0, 1); }

Ipv4Address AddressPlan::next_ix_v4() {
  if (ix_v4_next_ > kIxV4Last) throw exhausted("IX IPv4 address");
  return Ipv4Address(v4(198, 18, 0, 0) + ix_v4_next_++);
}

Ipv6Address AddressPlan::next_ix_v6() {
  if (ix_v6_next_ > kIxV6Last) throw exhausted("IX IPv6 address");
  return v6_with_groups(0x2001, 0x0db8, 0, 0, ix_v6_next_++);
}

Ipv4Net AddressPlan::next_lan_v4(LanPool pool) {
  // Counters advance only on success, so an exhausted pool stays exhausted instead of
  // wrapping back to prefixes already in use.
  switch (pool) {
    case LanPool::Public: {
      std::uint32_t i = public_v4_next_;
      if (i < kPublicLowCount) {
        ++public_v4_next_;
        return {Ipv4Address(v4(198, 18, 0, 0) + ((i + 1) << 8)), 24};
      }
      if (i < kPublicLowCount + kPublicHighCount) {
        ++public_v4_next_;
        return {Ipv4Address(v4(198, 19, 0, 0) + ((i - kPublicLowCount) << 8)), 24};
      }
      throw exhausted("public IPv4 subnet");
    }
    case LanPool::Private: {
      if (private_v4_next_ + 1 >= kPrivateSlash24s) throw exhausted("private IPv4 subnet");
      std::uint32_t n = ++private_v4_next_;
      return {Ipv4Address(v4(10, 0, 0, 0) + (n << 8)), 24};
    }
    case LanPool::Carrier: {
      if (carrier_v4_next_ + 1 >= kCarrierSlash24s) throw exhausted("carrier IPv4 subnet");
      std::uint32_t n = ++carrier_v4_next_;
      return {Ipv4Address(v4(100, 64, 0, 0) + (n << 8)), 24};
    }
  }
  throw Error(ErrorKind::kInvalidArgument, "", "unknown LAN pool");
}

Ipv6Net AddressPlan::next_lan_v6(LanPool pool) {
  switch (pool) {
    case LanPool::Public: {
      if (public_v6_next_ > kV6SubnetMax) throw exhausted("public IPv6 subnet");
      auto n = static_cast<std::uint16_t>(public_v6_next_++);
      return {v6_with_groups(0x2001, 0x0db8, 1, n, 0), 64};
    }
    case LanPool::Private:
    case LanPool::Carrier: {
      // Both pools are NATed or otherwise not globally routed in v6 terms, so one ULA
      // counter serves them and their prefixes never collide.
      if (private_v6_next_ > kV6SubnetMax) throw exhausted("private IPv6 subnet");
      auto n = static_cast<std::uint16_t>(private_v6_next_++);
      return {v6_with_groups(0xfd10, 0, 0, n, 0), 64};
    }
  }
  throw Error(ErrorKind::kInvalidArgument, "", "unknown LAN pool");
}

Ipv6Net AddressPlan::nptv6_pool() { return {v6_with_groups(0x2001, 0x0db8, 0xff00, 0, 0), 48}; }

Ipv6Net AddressPlan::next_nptv6() {
  // Every subnet below the counter is in use or released, so the lowest released one is the
  // lowest free one. Subnet 0 stays unused, as in the LAN pools.
  std::uint32_t n = 0;
  if (!nptv6_free_.empty()) {
    n = *nptv6_free_.begin();
    nptv6_free_.erase(nptv6_free_.begin());
  } else {
    if (nptv6_next_ > kV6SubnetMax) throw exhausted("NPTv6 prefix");
    n = nptv6_next_++;
  }
  return {v6_with_groups(0x2001, 0x0db8, 0xff00, static_cast<std::uint16_t>(n), 0), 64};
}

void AddressPlan::release_nptv6(const Ipv6Net& prefix) {
  if (prefix.prefix_len != 64 || !nptv6_pool().contains(prefix.address)) return;
  const Bytes6 bytes = prefix.address.to_bytes();
  const std::uint32_t n = (std::uint32_t{bytes[6]} << 8) | bytes[7];
  if (n == 0 || n >= nptv6_next_) return;  // never handed out
  nptv6_free_.insert(n);
}

LanHosts::LanHosts(std::string lan_name, Ipv4Net v4, std::uint32_t first_offset)
    : name_(std::move(lan_name)) {
  if (v4.prefix_len > 30) {
    throw Error(
        ErrorKind::kInvalidArgument, name_,
        "switch '" + name_ + "' prefix " + v4.to_string() + " has no room for hosts (at most /30)");
  }
  v4_ = {Ipv4Address(v4.address.to_uint() & v4_mask(v4.prefix_len)), v4.prefix_len};
  // Offset 0 is the network address; never hand it out.
  v4_next_ = std::max<std::uint32_t>(first_offset, 1);
}

LanHosts::LanHosts(std::string lan_name, Ipv6Net v6, std::uint32_t first_offset)
    : name_(std::move(lan_name)) {
  if (v6.prefix_len > 126) {
    throw Error(ErrorKind::kInvalidArgument, name_,
                "switch '" + name_ + "' prefix " + v6.to_string() +
                    " has no room for hosts (at most /126)");
  }
  v6_ = {v6_network(v6.address, v6.prefix_len), v6.prefix_len};
  // Offset 0 is the subnet-router anycast address; never hand it out.
  v6_next_ = std::max<std::uint32_t>(first_offset, 1);
}

Ipv4Address LanHosts::gateway_v4() const {
  // A LanHosts built for the other family keeps the default /32 and has no gateway.
  if (v4_last_offset(v4_.prefix_len) == 0) return Ipv4Address();
  return Ipv4Address(v4_.address.to_uint() + 1);
}

Ipv6Address LanHosts::gateway_v6() const {
  if (v6_last_offset(v6_.prefix_len) == 0) return Ipv6Address();
  return v6_add(v6_.address, 1);
}

Ipv4Address LanHosts::next_v4() {
  if (v4_next_ > v4_last_offset(v4_.prefix_len)) {
    throw Error(ErrorKind::kInvalidArgument, name_, "switch '" + name_ + "' host pool exhausted");
  }
  return Ipv4Address(v4_.address.to_uint() + static_cast<std::uint32_t>(v4_next_++));
}

Ipv6Address LanHosts::next_v6() {
  if (v6_next_ > v6_last_offset(v6_.prefix_len)) {
    throw Error(ErrorKind::kInvalidArgument, name_,
                "switch '" + name_ + "' v6 host pool exhausted");
  }
  return v6_add(v6_.address, v6_next_++);
}

std::uint64_t mix64(std::uint64_t x) {
  std::uint64_t z = x + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

Ipv6Address deterministic_link_local(std::uint64_t a, std::uint64_t b, std::uint64_t c) {
  // Rotating between rounds keeps (a, b) and (b, a) apart.
  std::uint64_t h = mix64(a);
  h = mix64(std::rotl(h, 21) ^ b);
  h = mix64(std::rotl(h, 21) ^ c);
  Bytes6 bytes{};
  bytes[0] = 0xfe;
  bytes[1] = 0x80;
  for (int i = 0; i < 8; ++i) bytes[8 + i] = static_cast<unsigned char>(h >> (56 - 8 * i));
  // RFC 4291 modified EUI-64: the "u" bit marks the identifier as not derived from a
  // globally unique MAC.
  bytes[8] |= 0x02;
  return Ipv6Address(bytes);
}

std::array<std::uint8_t, 6> deterministic_mac(std::uint64_t id, std::uint8_t role) {
  std::uint64_t h = mix64(id);
  // 0x02: locally administered, unicast. The role byte sits outside the hash so interfaces
  // sharing an id (one per role) can never collide with each other.
  return {0x02,
          role,
          static_cast<std::uint8_t>(h >> 56),
          static_cast<std::uint8_t>(h >> 48),
          static_cast<std::uint8_t>(h >> 40),
          static_cast<std::uint8_t>(h >> 32)};
}

std::string format_mac(const std::array<std::uint8_t, 6>& mac) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
                mac[4], mac[5]);
  return buf;
}

}  // namespace patchbay::internal
