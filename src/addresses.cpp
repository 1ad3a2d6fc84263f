#include "patchbay/addresses.hpp"

#include <boost/system/error_code.hpp>

#include <algorithm>
#include <string_view>

#include "patchbay/error.hpp"

namespace patchbay {
namespace {

// Out-of-range lengths can only come from hand-built values; treating them as host routes
// keeps contains() total instead of shifting past the word size.
unsigned clamp_len(std::uint8_t len, unsigned max) { return std::min<unsigned>(len, max); }

// Splits "addr/len" and parses len strictly (digits only, no sign, no leading zeros beyond
// a single "0"), so typos are reported rather than silently read as something else.
bool split_prefix(const std::string& text, unsigned max_len, std::string& addr, unsigned& len) {
  std::size_t slash = text.find('/');
  if (slash == std::string::npos || text.find('/', slash + 1) != std::string::npos) return false;
  std::string_view digits = std::string_view(text).substr(slash + 1);
  if (digits.empty() || digits.size() > 3) return false;
  if (digits.size() > 1 && digits[0] == '0') return false;
  unsigned value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > max_len) return false;
  addr = text.substr(0, slash);
  len = value;
  return true;
}

[[noreturn]] void bad_prefix(const char* family, const std::string& text) {
  throw Error(
      ErrorKind::kInvalidArgument, text,
      std::string("invalid ") + family + " prefix '" + text + "' (expected address/length)");
}

}  // namespace

std::string Ipv4Net::to_string() const {
  return address.to_string() + "/" + std::to_string(prefix_len);
}

bool Ipv4Net::contains(const Ipv4Address& a) const {
  unsigned len = clamp_len(prefix_len, 32);
  std::uint32_t mask = len == 0 ? 0 : ~std::uint32_t{0} << (32 - len);
  return (a.to_uint() & mask) == (address.to_uint() & mask);
}

std::string Ipv6Net::to_string() const {
  return address.to_string() + "/" + std::to_string(prefix_len);
}

bool Ipv6Net::contains(const Ipv6Address& a) const {
  unsigned len = clamp_len(prefix_len, 128);
  auto lhs = a.to_bytes();
  auto rhs = address.to_bytes();
  for (unsigned i = 0; i < 16 && len > 0; ++i) {
    unsigned bits = std::min(8u, len);
    auto mask = static_cast<unsigned char>(0xff << (8 - bits));
    if ((lhs[i] & mask) != (rhs[i] & mask)) return false;
    len -= bits;
  }
  return true;
}

Ipv4Net parse_ipv4_net(const std::string& text) {
  std::string addr;
  unsigned len = 0;
  if (!split_prefix(text, 32, addr, len)) bad_prefix("IPv4", text);
  boost::system::error_code ec;
  Ipv4Address a = boost::asio::ip::make_address_v4(addr, ec);
  if (ec) bad_prefix("IPv4", text);
  return {a, static_cast<std::uint8_t>(len)};
}

Ipv6Net parse_ipv6_net(const std::string& text) {
  std::string addr;
  unsigned len = 0;
  if (!split_prefix(text, 128, addr, len)) bad_prefix("IPv6", text);
  // A zone ("%eth0") names an interface of one namespace; it has no meaning in a prefix.
  if (addr.find('%') != std::string::npos) bad_prefix("IPv6", text);
  boost::system::error_code ec;
  Ipv6Address a = boost::asio::ip::make_address_v6(addr, ec);
  if (ec) bad_prefix("IPv6", text);
  return {a, static_cast<std::uint8_t>(len)};
}

}  // namespace patchbay
