// Runs examples/failing_example_test.cpp, a test binary whose first test fails on purpose, and
// checks that the failure left every artifact docs/artifacts.md promises — each in its
// documented shape and telling the story of that run — while the passing test left nothing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../temp_dir.hpp"
#include "child_process.hpp"
#include "patchbay/gtest.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::AllOf;
using ::testing::HasSubstr;

#ifdef PATCHBAY_FAILING_EXAMPLE
constexpr const char* kExample = PATCHBAY_FAILING_EXAMPLE;
#else
constexpr const char* kExample = nullptr;
#endif

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

std::vector<json> read_json_lines(const fs::path& p) {
  std::vector<json> lines;
  std::istringstream in(read_file(p));
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  return lines;
}

// "2026-05-02T09:15:04.002231765Z": RFC 3339, UTC, up to nanoseconds. (Checked by hand:
// std::regex trips GCC 12's -Wmaybe-uninitialized under the sanitizers.)
bool is_utc_timestamp(const json& value) {
  if (!value.is_string()) return false;
  const std::string t = value.get<std::string>();
  const std::string shape = "dddd-dd-ddTdd:dd:dd";
  if (t.size() < shape.size() + 1 || t.back() != 'Z') return false;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 'd' ? !std::isdigit(static_cast<unsigned char>(t[i])) : t[i] != shape[i]) {
      return false;
    }
  }
  const std::string fraction = t.substr(shape.size(), t.size() - shape.size() - 1);
  if (fraction.empty()) return true;
  return fraction[0] == '.' && fraction.size() >= 2 && fraction.size() <= 10 &&
         std::all_of(fraction.begin() + 1, fraction.end(),
                     [](unsigned char c) { return std::isdigit(c); });
}

// tcpdump's text for a capture. In the test's user namespace tcpdump would switch to its own
// user, which is not mapped; a nested user namespace keeps it root.
std::string tcpdump(const fs::path& file) {
  pbtest::ChildResult r =
      pbtest::run_child({"/usr/bin/unshare", "--user", "tcpdump", "-n", "-r", file.string()});
  EXPECT_TRUE(r.exited_with(0)) << r.output;
  return r.output;
}

class FailingExampleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (kExample == nullptr || patchbay::testing::lab_unavailable_reason()) return;
    out_ = new pbtest::TempDir("patchbay-failing-example");
    result_ = new pbtest::ChildResult(
        pbtest::run_child({kExample}, {"PATCHBAY_OUTDIR=" + out_->path().string()}));
  }
  static void TearDownTestSuite() {
    delete result_;
    delete out_;
    result_ = nullptr;
    out_ = nullptr;
  }
  void SetUp() override {
    if (kExample == nullptr) GTEST_SKIP() << "built without the examples";
    if (auto reason = patchbay::testing::lab_unavailable_reason()) GTEST_SKIP() << *reason;
  }

  static fs::path run_dir() {
    return out_->path() / "EchoThroughHomeNat" / "ServerSeesTheClientsOwnAddress";
  }

  static pbtest::TempDir* out_;
  static pbtest::ChildResult* result_;
};

pbtest::TempDir* FailingExampleTest::out_ = nullptr;
pbtest::ChildResult* FailingExampleTest::result_ = nullptr;

TEST_F(FailingExampleTest, FailsAndNamesItsArtifactDirectory) {
  EXPECT_TRUE(result_->exited_with(1)) << result_->output;
  EXPECT_THAT(result_->output, HasSubstr("artifacts of "
                                         "EchoThroughHomeNat.ServerSeesTheClientsOwnAddress: " +
                                         run_dir().string()));
  EXPECT_FALSE(fs::exists(out_->path() / "EchoThroughHomeNat" / "ServerSeesTheHomeRoutersAddress"))
      << "a passing test leaves nothing";
}

TEST_F(FailingExampleTest, LeavesEveryArtifact) {
  std::set<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(run_dir())) {
    if (entry.is_regular_file()) {
      files.insert(fs::relative(entry.path(), run_dir()).string());
      // Only a command's stderr may be empty: ping has nothing to complain about.
      if (!entry.path().string().ends_with(".stderr.log")) {
        EXPECT_GT(entry.file_size(), 0u) << entry.path();
      }
    }
  }
  const std::vector<std::string> expected = {
      "events.jsonl", "state.json", "summary.txt", "summary.json", "files/results.json",
      // per-node logs, timeline events and kernel state
      "device.client.tracing.jsonl", "device.client.tracing.log", "device.client.events.jsonl",
      "device.client.kernel.txt", "device.server.tracing.jsonl", "device.server.tracing.log",
      "device.server.events.jsonl", "device.server.kernel.txt", "router.dc.tracing.jsonl",
      "router.dc.kernel.txt", "router.isp.tracing.jsonl", "router.isp.kernel.txt",
      "router.home.tracing.jsonl", "router.home.tracing.log", "router.home.kernel.txt",
      "ix.ix.kernel.txt",
      // a spawned command's output
      "device.client.ping.stdout.log", "device.client.ping.stderr.log",
      // the capture rings of every device interface and router uplink
      "device.client.eth0.pcapng", "device.server.eth0.pcapng", "router.home.wan.pcapng",
      "router.isp.ix.pcapng", "router.dc.ix.pcapng"};
  for (const auto& name : expected) EXPECT_TRUE(files.count(name)) << "missing " << name;
}

TEST_F(FailingExampleTest, EventsTellTheRunInOrder) {
  std::vector<json> events = read_json_lines(run_dir() / "events.jsonl");
  ASSERT_FALSE(events.empty());
  std::multiset<std::string> kinds;
  for (std::size_t i = 0; i < events.size(); ++i) {
    const json& e = events[i];
    ASSERT_TRUE(e.is_object());
    EXPECT_EQ(e["opid"], i) << e.dump();
    EXPECT_TRUE(is_utc_timestamp(e["timestamp"])) << e.dump();
    kinds.insert(e["kind"].get<std::string>());
  }
  EXPECT_EQ(events.front()["kind"], "lab_created");
  EXPECT_EQ(events.front()["label"], "EchoThroughHomeNat.ServerSeesTheClientsOwnAddress");
  EXPECT_EQ(events.back()["kind"], "lab_stopped");
  EXPECT_EQ(kinds.count("router_added"), 3u);
  EXPECT_EQ(kinds.count("device_added"), 2u);
  EXPECT_EQ(kinds.count("user_event"), 2u);
  bool ping_exited_cleanly = false;
  for (const json& e : events) {
    if (e["kind"] == "command_exited" && e.value("exit_code", -1) == 0) ping_exited_cleanly = true;
  }
  EXPECT_TRUE(ping_exited_cleanly);
}

TEST_F(FailingExampleTest, StateShowsTheFinalTopology) {
  json state = json::parse(read_file(run_dir() / "state.json"));
  EXPECT_EQ(state["status"], "stopped");
  EXPECT_EQ(state["label"], "EchoThroughHomeNat.ServerSeesTheClientsOwnAddress");
  json home;
  for (const json& r : state["routers"]) {
    if (r["name"] == "home") home = r;
  }
  EXPECT_EQ(home["nat"], "home");
  EXPECT_EQ(home["upstream"], "isp");
  json client = state["devices"][1];
  ASSERT_EQ(client["name"], "client");
  EXPECT_EQ(client["interfaces"][0]["ip"], "10.0.1.2/24");
  EXPECT_EQ(client["interfaces"][0]["link_condition"]["egress"]["latency_ms"], 20);
}

TEST_F(FailingExampleTest, NodeLogsAndTimelineEventsCarryTheUsersLines) {
  bool connected_line = false;
  for (const json& line : read_json_lines(run_dir() / "device.client.tracing.jsonl")) {
    EXPECT_TRUE(is_utc_timestamp(line["timestamp"])) << line.dump();
    EXPECT_TRUE(line["level"].is_string() && line["target"].is_string()) << line.dump();
    const std::string message = line["fields"]["message"].get<std::string>();
    if (message.find("connected to 198.18.1.2:7000") != std::string::npos) {
      connected_line = true;
      EXPECT_EQ(line["level"], "INFO");
      EXPECT_EQ(line["target"], "client");
    }
  }
  EXPECT_TRUE(connected_line);
  EXPECT_THAT(read_file(run_dir() / "device.server.tracing.log"),
              HasSubstr("accepted a connection from 198.18.2.2"));

  std::vector<json> client_events = read_json_lines(run_dir() / "device.client.events.jsonl");
  ASSERT_EQ(client_events.size(), 1u);
  EXPECT_EQ(client_events[0]["kind"], "TcpRoundtripComplete");
  EXPECT_EQ(client_events[0]["peer"], "198.18.1.2");
  EXPECT_TRUE(is_utc_timestamp(client_events[0]["timestamp"]));
  std::vector<json> server_events = read_json_lines(run_dir() / "device.server.events.jsonl");
  ASSERT_EQ(server_events.size(), 1u);
  EXPECT_EQ(server_events[0]["kind"], "TcpEchoStarted");
  EXPECT_EQ(server_events[0]["port"], "7000");

  EXPECT_THAT(read_file(run_dir() / "device.client.ping.stdout.log"),
              HasSubstr("2 packets transmitted, 2 received"));
}

TEST_F(FailingExampleTest, SummaryNamesTheFailedExpectation) {
  EXPECT_THAT(read_file(run_dir() / "summary.txt"),
              AllOf(HasSubstr("EchoThroughHomeNat.ServerSeesTheClientsOwnAddress: FAILED"),
                    HasSubstr("failing_example_test.cpp:"),
                    HasSubstr("the server should see the client's own address")));
  json summary = json::parse(read_file(run_dir() / "summary.json"));
  ASSERT_EQ(summary["failures"].size(), 1u);
  EXPECT_THAT(summary["failures"][0]["message"].get<std::string>(), HasSubstr("198.18.2.2"));
}

TEST_F(FailingExampleTest, KernelStateShowsTheNatMapping) {
  // The home router's conntrack table holds the echo connection, translated to its uplink.
  EXPECT_THAT(read_file(run_dir() / "router.home.kernel.txt"),
              AllOf(HasSubstr("tcp 10.0.1.2:"),
                    HasSubstr("-> 198.18.1.2:7000, reply 198.18.1.2:7000 -> 198.18.2.2:"),
                    HasSubstr("[SNAT]"), HasSubstr("inet 198.18.2.2/24")));
  EXPECT_THAT(read_file(run_dir() / "device.client.kernel.txt"),
              AllOf(HasSubstr("inet 10.0.1.2/24"), HasSubstr("default via 10.0.1.1")));
}

TEST_F(FailingExampleTest, CapturesShowTheEchoOnBothSidesOfTheNat) {
  // The client's link carries its private address, the server's the NAT's.
  EXPECT_THAT(tcpdump(run_dir() / "device.client.eth0.pcapng"),
              AllOf(HasSubstr("10.0.1.2."), HasSubstr(" > 198.18.1.2.7000: Flags [S]")));
  const std::string server_side = tcpdump(run_dir() / "device.server.eth0.pcapng");
  EXPECT_THAT(server_side, HasSubstr("198.18.2.2."));
  EXPECT_THAT(server_side, HasSubstr(" > 198.18.1.2.7000: Flags [S]"));
  EXPECT_THAT(server_side, ::testing::Not(HasSubstr("10.0.1.2")));
  EXPECT_THAT(tcpdump(run_dir() / "router.home.wan.pcapng"),
              AllOf(HasSubstr("198.18.2.2 > 198.18.1.2: ICMP echo request"),
                    HasSubstr("198.18.1.2.7000 > 198.18.2.2.")));
}

TEST_F(FailingExampleTest, KeepFlagKeepsThePassingTestsDirectoryWithoutKernelState) {
  pbtest::TempDir out("patchbay-failing-example-keep");
  pbtest::ChildResult r =
      pbtest::run_child({kExample, "--gtest_filter=*ServerSeesTheHomeRoutersAddress"},
                        {"PATCHBAY_OUTDIR=" + out.path().string(), "PATCHBAY_KEEP=1"});
  ASSERT_TRUE(r.exited_with(0)) << r.output;
  const fs::path kept = out.path() / "EchoThroughHomeNat" / "ServerSeesTheHomeRoutersAddress";
  EXPECT_TRUE(fs::exists(kept / "events.jsonl"));
  EXPECT_TRUE(fs::exists(kept / "device.client.tracing.jsonl"));
  EXPECT_FALSE(fs::exists(kept / "summary.txt")) << "failure artifacts are for failures";
}

}  // namespace
