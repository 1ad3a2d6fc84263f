// Packet capture on lab links: on request into a pcapng file, and always-on rings written with
// the failure artifacts. Checked with tcpdump, the way a user reads them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "../temp_dir.hpp"
#include "patchbay/gtest.hpp"
#include "patchbay/patchbay.hpp"

namespace {

using patchbay::Device;
using patchbay::Lab;
using patchbay::LabOptions;
using patchbay::Router;
using ::testing::HasSubstr;

using pbtest::TempDir;

// tcpdump's text for a capture file, read from `node` (any node: the file is on the host).
// Inside the lab's user namespace tcpdump would switch to its own user, which is not mapped
// there; a nested user namespace keeps it root.
std::string tcpdump(const patchbay::Node& node, const std::filesystem::path& file,
                    const std::string& filter) {
  patchbay::CommandResult r =
      node.run_command({"unshare", "--user", "tcpdump", "-n", "-r", file.string(), filter});
  EXPECT_TRUE(r.success()) << r.stderr_text;
  return r.stdout_text;
}

int count_lines(const std::string& text, const std::string& needle) {
  int n = 0;
  for (std::size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) {
    ++n;
  }
  return n;
}

TEST(CaptureTest, CaptureOnRequestWritesPcapngThatTcpdumpReads) {
  TempDir dir;
  Lab lab;
  Router dc = lab.add_router("dc").build();
  Device a = lab.add_device("a").iface("eth0", dc).build();
  Device b = lab.add_device("b").iface("eth0", dc).build();
  const std::filesystem::path file = dir.path() / "a.eth0.pcapng";
  a.start_capture("eth0", file);
  ASSERT_TRUE(a.run_command({"ping", "-c", "3", "-i", "0.2", b.ip()->to_string()}).success());
  a.stop_capture("eth0");

  const std::string text = tcpdump(a, file, "icmp");
  // Both directions: three requests out, three replies in.
  EXPECT_EQ(
      count_lines(text, a.ip()->to_string() + " > " + b.ip()->to_string() + ": ICMP echo request"),
      3)
      << text;
  EXPECT_EQ(
      count_lines(text, b.ip()->to_string() + " > " + a.ip()->to_string() + ": ICMP echo reply"), 3)
      << text;
  // After stop_capture nothing more is written.
  const auto size = std::filesystem::file_size(file);
  ASSERT_TRUE(a.run_command({"ping", "-c", "1", b.ip()->to_string()}).success());
  EXPECT_EQ(std::filesystem::file_size(file), size);
}

TEST(CaptureTest, ErrorsNameTheInterface) {
  TempDir dir;
  Lab lab;
  Router dc = lab.add_router("dc").build();
  Device a = lab.add_device("a").iface("eth0", dc).build();
  try {
    a.start_capture("wlan9", dir.path() / "x.pcapng");
    FAIL() << "expected an error";
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.kind(), patchbay::ErrorKind::kNotFound);
    EXPECT_THAT(e.what(), HasSubstr("wlan9"));
  }
  a.start_capture("eth0", dir.path() / "a.pcapng");
  try {
    a.start_capture("eth0", dir.path() / "again.pcapng");
    FAIL() << "expected an error";
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.kind(), patchbay::ErrorKind::kAlreadyExists);
    EXPECT_THAT(e.what(), HasSubstr("already being captured"));
  }
  a.stop_capture("eth0");
  EXPECT_THROW(a.stop_capture("eth0"), patchbay::Error);
}

TEST(CaptureTest, AlwaysOnRingsAreWrittenWithTheArtifacts) {
  TempDir dir;
  Lab lab(LabOptions{.capture_ring_bytes = 1u << 20});
  Router dc = lab.add_router("dc").build();
  Router home = lab.add_router("home").preset(patchbay::RouterPreset::Home).build();
  Device server = lab.add_device("server").iface("eth0", dc).build();
  Device laptop = lab.add_device("laptop").iface("eth0", home).build();
  // Six captured links, one capture thread (and the control thread; no node thread yet).
  EXPECT_EQ(lab.thread_count(), 2u);
  ASSERT_TRUE(
      laptop.run_command({"ping", "-c", "2", "-i", "0.2", server.ip()->to_string()}).success());
  lab.write_artifacts(dir.path());

  // The laptop's own interface sees its private address; the home router's uplink sees the
  // same pings after NAT, from its public address.
  const std::string at_laptop = tcpdump(laptop, dir.path() / "device.laptop.eth0.pcapng", "icmp");
  EXPECT_EQ(count_lines(at_laptop, laptop.ip()->to_string() + " > " + server.ip()->to_string() +
                                       ": ICMP echo request"),
            2)
      << at_laptop;
  const std::string at_uplink = tcpdump(laptop, dir.path() / "router.home.ix.pcapng", "icmp");
  EXPECT_EQ(count_lines(at_uplink, home.uplink_ip()->to_string() + " > " +
                                       server.ip()->to_string() + ": ICMP echo request"),
            2)
      << at_uplink;
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "device.server.eth0.pcapng"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "router.dc.ix.pcapng"));
}

TEST(CaptureTest, RemovedNodeTakesItsCapturesAlong) {
  TempDir dir;
  Lab lab(LabOptions{.capture_ring_bytes = 1u << 20});
  Router dc = lab.add_router("dc").build();
  Device a = lab.add_device("a").iface("eth0", dc).build();
  a.start_capture("eth0", dir.path() / "a.pcapng");
  lab.remove_device(a);
  lab.write_artifacts(dir.path() / "out");
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "out" / "device.a.eth0.pcapng"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "out" / "router.dc.ix.pcapng"));
  // The streamed file was completed when the device went.
  EXPECT_GT(std::filesystem::file_size(dir.path() / "a.pcapng"), 0u);
}

}  // namespace
