#include "patchbay/addresses.hpp"

#include <gtest/gtest.h>

#include <string>

#include "patchbay/error.hpp"

namespace patchbay {
namespace {

Ipv4Address v4(const char* text) { return boost::asio::ip::make_address_v4(text); }
Ipv6Address v6(const char* text) { return boost::asio::ip::make_address_v6(text); }

TEST(Ipv4Net, ToStringIsAddressSlashLength) {
  EXPECT_EQ((Ipv4Net{v4("10.0.1.0"), 24}).to_string(), "10.0.1.0/24");
  EXPECT_EQ((Ipv4Net{v4("10.0.1.7"), 32}).to_string(), "10.0.1.7/32");
  EXPECT_EQ((Ipv4Net{v4("0.0.0.0"), 0}).to_string(), "0.0.0.0/0");
  EXPECT_EQ(Ipv4Net{}.to_string(), "0.0.0.0/32");
}

TEST(Ipv4Net, ContainsChecksOnlyThePrefixBits) {
  Ipv4Net lan{v4("10.0.1.0"), 24};
  EXPECT_TRUE(lan.contains(v4("10.0.1.0")));
  EXPECT_TRUE(lan.contains(v4("10.0.1.255")));
  EXPECT_FALSE(lan.contains(v4("10.0.2.0")));
  EXPECT_FALSE(lan.contains(v4("10.0.0.255")));
  // An interface address (host bits set) still describes its subnet.
  EXPECT_TRUE((Ipv4Net{v4("10.0.1.77"), 24}).contains(v4("10.0.1.3")));
}

TEST(Ipv4Net, ContainsHandlesOddAndExtremeLengths) {
  EXPECT_TRUE((Ipv4Net{v4("100.64.0.0"), 10}).contains(v4("100.127.255.255")));
  EXPECT_FALSE((Ipv4Net{v4("100.64.0.0"), 10}).contains(v4("100.128.0.0")));
  EXPECT_TRUE((Ipv4Net{v4("1.2.3.4"), 0}).contains(v4("255.255.255.255")));
  EXPECT_TRUE((Ipv4Net{v4("1.2.3.4"), 32}).contains(v4("1.2.3.4")));
  EXPECT_FALSE((Ipv4Net{v4("1.2.3.4"), 32}).contains(v4("1.2.3.5")));
  // Out-of-range lengths behave like /32 rather than invoking undefined shifts.
  EXPECT_TRUE((Ipv4Net{v4("1.2.3.4"), 200}).contains(v4("1.2.3.4")));
  EXPECT_FALSE((Ipv4Net{v4("1.2.3.4"), 200}).contains(v4("1.2.3.5")));
}

TEST(Ipv6Net, ToStringUsesCompressedForm) {
  EXPECT_EQ((Ipv6Net{v6("fd10:0:0:1::"), 64}).to_string(), "fd10:0:0:1::/64");
  EXPECT_EQ((Ipv6Net{v6("2001:db8::"), 64}).to_string(), "2001:db8::/64");
  EXPECT_EQ(Ipv6Net{}.to_string(), "::/128");
}

TEST(Ipv6Net, ContainsChecksOnlyThePrefixBits) {
  Ipv6Net lan{v6("fd10:0:0:1::"), 64};
  EXPECT_TRUE(lan.contains(v6("fd10:0:0:1::1")));
  EXPECT_TRUE(lan.contains(v6("fd10:0:0:1:ffff:ffff:ffff:ffff")));
  EXPECT_FALSE(lan.contains(v6("fd10:0:0:2::1")));
  EXPECT_TRUE((Ipv6Net{v6("fe80::"), 10}).contains(v6("febf::1")));
  EXPECT_FALSE((Ipv6Net{v6("fe80::"), 10}).contains(v6("fec0::1")));
  EXPECT_TRUE((Ipv6Net{v6("::"), 0}).contains(v6("2001:db8::1")));
  EXPECT_TRUE((Ipv6Net{v6("::1"), 128}).contains(v6("::1")));
  EXPECT_FALSE((Ipv6Net{v6("::1"), 128}).contains(v6("::2")));
  EXPECT_FALSE((Ipv6Net{v6("::1"), 255}).contains(v6("::2")));
}

TEST(ParseIpv4Net, ParsesAddressAndLength) {
  EXPECT_EQ(parse_ipv4_net("10.0.1.0/24"), (Ipv4Net{v4("10.0.1.0"), 24}));
  EXPECT_EQ(parse_ipv4_net("0.0.0.0/0"), (Ipv4Net{v4("0.0.0.0"), 0}));
  EXPECT_EQ(parse_ipv4_net("1.2.3.4/32"), (Ipv4Net{v4("1.2.3.4"), 32}));
}

TEST(ParseIpv4Net, KeepsHostBitsOfInterfaceAddresses) {
  EXPECT_EQ(parse_ipv4_net("10.0.1.5/24").address, v4("10.0.1.5"));
}

TEST(ParseIpv4Net, RoundTripsThroughToString) {
  for (const char* text : {"198.18.0.0/24", "100.64.0.0/10", "10.0.1.2/32"}) {
    EXPECT_EQ(parse_ipv4_net(text).to_string(), text);
  }
}

TEST(ParseIpv4Net, RejectsMalformedInputNamingTheText) {
  for (const char* text :
       {"", "10.0.1.0", "10.0.1.0/", "10.0.1.0/33", "10.0.1.0/-1", "10.0.1.0/+8", "10.0.1.0/024",
        "10.0.1.0/24/1", "10.0.1/24", "10.0.1.256/24", "10.0.1.0 /24", "10.0.1.0/24 ", "fd10::/64",
        "/24", "10.0.1.0/2a", "10.0.1.0/1000"}) {
    try {
      parse_ipv4_net(text);
      ADD_FAILURE() << "accepted '" << text << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
      EXPECT_EQ(e.culprit(), text);
      EXPECT_NE(std::string(e.what()).find("'" + std::string(text) + "'"), std::string::npos)
          << e.what();
    }
  }
}

TEST(ParseIpv6Net, ParsesAddressAndLength) {
  EXPECT_EQ(parse_ipv6_net("fd10:0:0:1::/64"), (Ipv6Net{v6("fd10:0:0:1::"), 64}));
  EXPECT_EQ(parse_ipv6_net("::/0"), (Ipv6Net{v6("::"), 0}));
  EXPECT_EQ(parse_ipv6_net("2001:db8::10/128"), (Ipv6Net{v6("2001:db8::10"), 128}));
  EXPECT_EQ(parse_ipv6_net("FD10::1/64").address, v6("fd10::1"));
}

TEST(ParseIpv6Net, RoundTripsThroughToString) {
  for (const char* text : {"2001:db8:1:1::/64", "fd10:0:0:ffff::/64", "fe80::1/10"}) {
    EXPECT_EQ(parse_ipv6_net(text).to_string(), text);
  }
}

TEST(ParseIpv6Net, RejectsMalformedInputNamingTheText) {
  for (const char* text : {"", "fd10::", "fd10::/", "fd10::/129", "fd10::/064", "fd10:::1/64",
                           "fe80::1%eth0/64", "10.0.1.0/24", "fd10::/64/1", "fd10::g/64", "/64"}) {
    try {
      parse_ipv6_net(text);
      ADD_FAILURE() << "accepted '" << text << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
      EXPECT_EQ(e.culprit(), text);
    }
  }
}

}  // namespace
}  // namespace patchbay
