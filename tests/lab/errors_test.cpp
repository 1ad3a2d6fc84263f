// Bad input gets an Error naming the culprit, and leaves the lab as it was.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>

#include "patchbay/gtest.hpp"

namespace {

using patchbay::Error;
using patchbay::ErrorKind;
using patchbay::Router;
using patchbay::RouterPreset;
using ::testing::HasSubstr;

class ErrorsTest : public patchbay::testing::LabTest {};

// Runs `fn`, expecting an Error of `kind` whose message contains `text`.
template <class F>
void expect_error(F&& fn, ErrorKind kind, const std::string& text,
                  const std::string& culprit = "") {
  try {
    fn();
    ADD_FAILURE() << "expected an error containing: " << text;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_THAT(e.what(), HasSubstr(text));
    if (!culprit.empty()) {
      EXPECT_EQ(e.culprit(), culprit);
    }
  }
}

TEST_F(ErrorsTest, DuplicateRouterName) {
  (void)lab().add_router("dc").build();
  expect_error([&] { (void)lab().add_router("dc").build(); }, ErrorKind::kAlreadyExists,
               "router 'dc' already exists", "dc");
}

TEST_F(ErrorsTest, DuplicateDeviceName) {
  Router dc = lab().add_router("dc").build();
  (void)lab().add_device("pc").iface("eth0", dc).build();
  expect_error([&] { (void)lab().add_device("pc").iface("eth0", dc).build(); },
               ErrorKind::kAlreadyExists, "device 'pc' already exists", "pc");
}

TEST_F(ErrorsTest, NamesAreUniqueAcrossRoutersAndDevices) {
  Router dc = lab().add_router("dc").build();
  expect_error([&] { (void)lab().add_device("dc").iface("eth0", dc).build(); },
               ErrorKind::kAlreadyExists, "already used by router 'dc'", "dc");
}

TEST_F(ErrorsTest, UnknownGateway) {
  expect_error([&] { (void)lab().add_device("pc").iface("eth0", "nowhere").build(); },
               ErrorKind::kNotFound,
               "unknown gateway router 'nowhere' for interface 'eth0' of device 'pc'", "nowhere");
}

TEST_F(ErrorsTest, UnknownUpstream) {
  expect_error([&] { (void)lab().add_router("home").upstream("isp").build(); },
               ErrorKind::kNotFound, "unknown upstream router 'isp' for router 'home'", "isp");
}

TEST_F(ErrorsTest, UpstreamCycle) {
  expect_error([&] { (void)lab().add_router("loop").upstream("loop").build(); },
               ErrorKind::kInvalidArgument, "upstream cycle", "loop");
}

TEST_F(ErrorsTest, InterfaceNameLongerThanFifteenBytes) {
  Router dc = lab().add_router("dc").build();
  expect_error([&] { (void)lab().add_device("pc").iface("a-very-long-iface0", dc).build(); },
               ErrorKind::kInvalidArgument, "longer than 15 bytes", "pc/a-very-long-iface0");
}

TEST_F(ErrorsTest, ReservedNames) {
  expect_error([&] { (void)lab().add_router("region_eu").build(); }, ErrorKind::kInvalidArgument,
               "router names starting with 'region_' are reserved", "region_eu");
  expect_error([&] { (void)lab().add_router("ix").build(); }, ErrorKind::kInvalidArgument,
               "reserved", "ix");
  Router dc = lab().add_router("dc").build();
  expect_error([&] { (void)lab().add_device("pc").iface("lo", dc).build(); },
               ErrorKind::kInvalidArgument, "reserved", "pc/lo");
}

TEST_F(ErrorsTest, BadNodeNames) {
  expect_error([&] { (void)lab().add_router("").build(); }, ErrorKind::kInvalidArgument,
               "must not be empty");
  expect_error([&] { (void)lab().add_router("a/b").build(); }, ErrorKind::kInvalidArgument,
               "may only contain", "a/b");
}

TEST_F(ErrorsTest, DuplicateInterfaceInOneDevice) {
  Router dc = lab().add_router("dc").build();
  expect_error([&] { (void)lab().add_device("pc").iface("eth0", dc).iface("eth0", dc).build(); },
               ErrorKind::kAlreadyExists, "device 'pc' already has interface 'eth0'");
}

TEST_F(ErrorsTest, DefaultViaUnknownInterface) {
  Router dc = lab().add_router("dc").build();
  expect_error([&] { (void)lab().add_device("pc").iface("eth0", dc).default_via("wlan0").build(); },
               ErrorKind::kNotFound, "interface 'wlan0' not found on device 'pc'");
}

TEST_F(ErrorsTest, UnknownInterfaceAtRuntime) {
  Router dc = lab().add_router("dc").build();
  auto pc = lab().add_device("pc").iface("eth0", dc).build();
  expect_error([&] { pc.link_down("wlan0"); }, ErrorKind::kNotFound,
               "device 'pc' has no interface 'wlan0'");
  expect_error([&] { pc.set_default_route("wlan0"); }, ErrorKind::kNotFound,
               "interface 'wlan0' not found on device 'pc'");
}

TEST_F(ErrorsTest, FailedBuildLeavesNoHalfBuiltNode) {
  Router tiny = lab().add_router("tiny").lan_cidr("10.9.9.0/30").build();  // room for one host
  std::size_t threads = lab().thread_count();
  // The second interface exhausts the /30 after the first got its address: nothing of "pc"
  // may remain, and the address it took must be handed out again.
  expect_error(
      [&] { (void)lab().add_device("pc").iface("eth0", tiny).iface("eth1", tiny).build(); },
      ErrorKind::kInvalidArgument, "switch 'tiny' host pool exhausted");
  EXPECT_FALSE(lab().device("pc"));
  EXPECT_EQ(lab().thread_count(), threads);
  auto pc = lab().add_device("pc").iface("eth0", tiny).build();
  EXPECT_EQ(pc.ip()->to_string(), "10.9.9.2");
}

TEST_F(ErrorsTest, RemovingANodeOfAnotherLabIsRefused) {
  patchbay::Lab other;
  Router foreign = other.add_router("dc").build();
  (void)lab().add_router("dc").build();
  expect_error([&] { lab().remove_router(foreign); }, ErrorKind::kInvalidArgument,
               "belongs to another lab", "dc");
  EXPECT_TRUE(lab().router("dc"));
}

TEST_F(ErrorsTest, DeviceMtuBelowIpv6MinimumIsRefusedWithIpv6) {
  Router dc = lab().add_router("dc").preset(RouterPreset::Public).build();
  expect_error([&] { (void)lab().add_device("pc").iface("eth0", dc).mtu(1000).build(); },
               ErrorKind::kInvalidArgument, "below 1280", "pc");
}

TEST_F(ErrorsTest, RouterRemovalRefusedWhileSubRouterAttached) {
  Router isp = lab().add_router("isp").build();
  (void)lab().add_router("home").nat(patchbay::Nat::Home).upstream(isp).build();
  expect_error([&] { lab().remove_router(isp); }, ErrorKind::kInvalidArgument,
               "cannot remove router 'isp': router 'home' is still connected");
}

TEST(BootstrapTest, RefusesOnceASecondThreadExists) {
  // A fresh process that starts a thread first, then tries to bootstrap.
  std::FILE* p = ::popen(PATCHBAY_BOOTSTRAP_PROBE " 2>&1", "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  int status = ::pclose(p);
  EXPECT_NE(status, 0);
  EXPECT_THAT(out, HasSubstr("needs a single-threaded process"));
  EXPECT_THAT(out, HasSubstr("2 threads"));
}

}  // namespace
