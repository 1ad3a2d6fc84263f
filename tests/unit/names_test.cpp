#include "names.hpp"

#include <gtest/gtest.h>

#include <string>

#include "patchbay/error.hpp"

namespace patchbay::internal {
namespace {

// Expects `fn` to throw an invalid-argument Error with exactly `message` and `culprit`.
template <typename Fn>
void expect_rejected(Fn&& fn, const std::string& message, const std::string& culprit) {
  try {
    fn();
    ADD_FAILURE() << "expected Error: " << message;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_EQ(std::string(e.what()), message);
    EXPECT_EQ(e.culprit(), culprit);
  }
}

TEST(NodeName, AcceptsLettersDigitsUnderscoreDotAndDash) {
  EXPECT_NO_THROW(validate_node_name("router", "home"));
  EXPECT_NO_THROW(validate_node_name("router", "ISP-1.edge_2"));
  EXPECT_NO_THROW(validate_node_name("device", "a"));
  EXPECT_NO_THROW(validate_node_name("device", ".hidden"));
  EXPECT_NO_THROW(validate_node_name("device", "..."));
  EXPECT_NO_THROW(validate_node_name("device", std::string(63, 'x')));
}

TEST(NodeName, EmptyNameIsRejected) {
  expect_rejected([] { validate_node_name("router", ""); }, "router name must not be empty", "");
  expect_rejected([] { validate_node_name("device", ""); }, "device name must not be empty", "");
}

TEST(NodeName, SixtyFourBytesIsTooLong) {
  std::string name(64, 'x');
  expect_rejected([&] { validate_node_name("device", name); },
                  "device name '" + name + "' is longer than 63 bytes", name);
}

TEST(NodeName, CharactersOutsideTheSafeSetAreRejected) {
  for (std::string name : {"a b", "a/b", "a:b", "ä", "a$b", "a\\b", "a'b", "a=b", "a~b"}) {
    expect_rejected([&] { validate_node_name("router", name); },
                    "router name '" + name + "' may only contain letters, digits, '_', '.' and '-'",
                    name);
  }
}

TEST(NodeName, DotAndDotDotAreRejectedBecauseTheyAreDirectoryAliases) {
  expect_rejected([] { validate_node_name("device", "."); }, "device name '.' is reserved", ".");
  expect_rejected([] { validate_node_name("router", ".."); }, "router name '..' is reserved", "..");
}

TEST(NodeName, RegionPrefixIsReservedForRouters) {
  expect_rejected([] { validate_node_name("router", "region_eu"); },
                  "router names starting with 'region_' are reserved", "region_eu");
  expect_rejected([] { validate_node_name("router", "region_"); },
                  "router names starting with 'region_' are reserved", "region_");
}

TEST(NodeName, RegionPrefixIsOnlyReservedAsAnExactPrefixOfRouterNames) {
  EXPECT_NO_THROW(validate_node_name("device", "region_eu"));
  EXPECT_NO_THROW(validate_node_name("router", "region"));
  EXPECT_NO_THROW(validate_node_name("router", "Region_eu"));
  EXPECT_NO_THROW(validate_node_name("router", "my_region_eu"));
}

TEST(IfaceName, AcceptsTypicalNames) {
  EXPECT_NO_THROW(validate_iface_name("dev", "eth0"));
  EXPECT_NO_THROW(validate_iface_name("dev", "wlan-1.100"));
  EXPECT_NO_THROW(validate_iface_name("dev", std::string(15, 'e')));
  EXPECT_NO_THROW(validate_iface_name("dev", "lo0"));
  EXPECT_NO_THROW(validate_iface_name("dev", "LO"));
}

TEST(IfaceName, EmptyNameIsRejected) {
  expect_rejected([] { validate_iface_name("laptop", ""); },
                  "interface name of device 'laptop' must not be empty", "laptop/");
}

TEST(IfaceName, SixteenBytesExceedsIfnamsiz) {
  std::string name(16, 'e');
  expect_rejected([&] { validate_iface_name("laptop", name); },
                  "interface name '" + name +
                      "' of device 'laptop' is longer than 15 bytes (the kernel's IFNAMSIZ limit)",
                  "laptop/" + name);
}

TEST(IfaceName, SlashColonAndWhitespaceAreRejected) {
  for (std::string name : {"eth/0", "eth:0", "eth 0"}) {
    expect_rejected(
        [&] { validate_iface_name("laptop", name); },
        "interface name '" + name + "' of device 'laptop' must not contain '/', ':' or whitespace",
        "laptop/" + name);
  }
}

TEST(IfaceName, ControlCharactersAreRejectedAndEscapedInTheMessage) {
  // NUL counts too: it would silently truncate the name on its way to the kernel. The
  // culprit keeps the raw bytes.
  struct Case {
    std::string name;
    std::string shown;
  };
  const Case cases[] = {
      {"eth\t0", "eth\\x090"}, {"eth\n0", "eth\\x0a0"}, {std::string("e\0t", 3), "e\\x00t"}};
  for (const Case& c : cases) {
    expect_rejected([&] { validate_iface_name("laptop", c.name); },
                    "interface name '" + c.shown +
                        "' of device 'laptop' must not contain '/', ':' or whitespace",
                    "laptop/" + c.name);
  }
}

TEST(NodeName, ControlCharactersAreEscapedInTheMessage) {
  expect_rejected([] { validate_node_name("device", "a\nb"); },
                  "device name 'a\\x0ab' may only contain letters, digits, '_', '.' and '-'",
                  "a\nb");
}

TEST(IfaceName, LoopbackNameIsReserved) {
  expect_rejected([] { validate_iface_name("laptop", "lo"); },
                  "interface name 'lo' of device 'laptop' is reserved", "laptop/lo");
}

TEST(IfaceName, DotAndDotDotAreRejectedLikeTheKernelDoes) {
  expect_rejected([] { validate_iface_name("laptop", "."); },
                  "interface name '.' of device 'laptop' is reserved", "laptop/.");
  expect_rejected([] { validate_iface_name("laptop", ".."); },
                  "interface name '..' of device 'laptop' is reserved", "laptop/..");
}

TEST(SanitizeForPath, KeepsAlphanumericsUnderscoreAndDash) {
  EXPECT_EQ(sanitize_for_path("Home-Router_1"), "Home-Router_1");
  EXPECT_EQ(sanitize_for_path(""), "");
}

TEST(SanitizeForPath, ReplacesEverythingElseWithUnderscore) {
  EXPECT_EQ(sanitize_for_path("a.b/c d"), "a_b_c_d");
  EXPECT_EQ(sanitize_for_path(".."), "__");
  EXPECT_EQ(sanitize_for_path("Suite/Test.Case:1"), "Suite_Test_Case_1");
  // Each byte of a multi-byte UTF-8 character is replaced on its own.
  EXPECT_EQ(sanitize_for_path("ä"), "__");
}

}  // namespace
}  // namespace patchbay::internal
