// Address and prefix value types used in snapshots and builders.
//
// Addresses are Boost.Asio's, so they plug straight into asio sockets:
//
//   patchbay::Ipv4Net lan = router.lan_v4().value();     // 10.0.1.0/24
//   boost::asio::ip::udp::endpoint ep{*device.ip(), 5000};
#pragma once

#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/address_v6.hpp>

#include <cstdint>
#include <string>

namespace patchbay {

using Ipv4Address = boost::asio::ip::address_v4;
using Ipv6Address = boost::asio::ip::address_v6;

struct Ipv4Net {
  Ipv4Address address;  // network address for prefixes, host address for interface addresses
  std::uint8_t prefix_len = 32;

  std::string to_string() const;  // "10.0.1.0/24"
  bool contains(const Ipv4Address& a) const;
  friend bool operator==(const Ipv4Net&, const Ipv4Net&) = default;
};

struct Ipv6Net {
  Ipv6Address address;
  std::uint8_t prefix_len = 128;

  std::string to_string() const;  // "fd10:0:0:1::/64"
  bool contains(const Ipv6Address& a) const;
  friend bool operator==(const Ipv6Net&, const Ipv6Net&) = default;
};

// Parses "a.b.c.d/len"; throws Error(kInvalidArgument) naming `text` on bad input.
Ipv4Net parse_ipv4_net(const std::string& text);
Ipv6Net parse_ipv6_net(const std::string& text);

}  // namespace patchbay
