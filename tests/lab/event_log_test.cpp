// events.jsonl and the live state.json of a lab with an output directory: every line follows the
// envelope (opid from 0 without gaps, RFC 3339 UTC timestamp, kind), each operation leaves its
// event with the documented payload keys, commands are evented with their exit codes, and
// state.json follows the events.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "../temp_dir.hpp"
#include "patchbay/patchbay.hpp"

namespace {

using nlohmann::json;
using patchbay::Device;
using patchbay::Lab;
using patchbay::LabOptions;
using patchbay::LinkCondition;
using patchbay::Router;

using pbtest::TempDir;

std::vector<json> read_events(const std::filesystem::path& file) {
  std::vector<json> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line));
  return out;
}

// RFC 3339, UTC, nanoseconds: 2026-11-25T07:01:02.123456789Z.
bool is_rfc3339_utc(const std::string& s) {
  if (s.size() != 30 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
      s[16] != ':' || s[19] != '.' || s.back() != 'Z') {
    return false;
  }
  for (std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18}) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

const json* find_kind(const std::vector<json>& events, const std::string& kind,
                      std::size_t nth = 0) {
  for (const json& e : events) {
    if (e["kind"] == kind && nth-- == 0) return &e;
  }
  return nullptr;
}

TEST(EventLogTest, EveryOperationLeavesAnEventWithTheEnvelopeAndItsPayload) {
  TempDir dir;
  {
    Lab lab(LabOptions{.label = "events", .outdir = dir.path()});
    Router home = lab.add_router("home").preset(patchbay::RouterPreset::Home).build();
    Router dc = lab.add_router("dc").build();
    Device laptop = lab.add_device("laptop").iface("eth0", home).build();
    laptop.set_link_condition("eth0", LinkCondition::manual({.latency_ms = 1}));
    home.set_downlink_condition(LinkCondition::manual({.latency_ms = 1}));
    home.set_nat(patchbay::Nat::Corporate);
    home.flush_nat_state();
    laptop.link_down("eth0");
    laptop.link_up("eth0");
    laptop.replug_iface("eth0", dc);
    patchbay::CommandResult r = laptop.run_command({"sh", "-c", "exit 3"});
    ASSERT_EQ(r.exit_code, 3);
    lab.remove_device(laptop);
  }
  const std::vector<json> events = read_events(dir.path() / "events.jsonl");
  ASSERT_GE(events.size(), 10u);
  for (std::size_t i = 0; i < events.size(); ++i) {
    const json& e = events[i];
    EXPECT_EQ(e["opid"], i) << e.dump();
    EXPECT_TRUE(is_rfc3339_utc(e["timestamp"].get<std::string>())) << e.dump();
  }
  EXPECT_EQ(events.front()["kind"], "lab_created");
  EXPECT_EQ(events.front()["label"], "events");
  EXPECT_EQ(events[1]["kind"], "ix_created");
  EXPECT_EQ(events.back()["kind"], "lab_stopped");

  const json* router = find_kind(events, "router_added");
  ASSERT_NE(router, nullptr);
  EXPECT_EQ((*router)["name"], "home");
  EXPECT_EQ((*router)["nat"], "home");
  EXPECT_TRUE((*router)["lan"]["cidr"].is_string());

  const json* device = find_kind(events, "device_added");
  ASSERT_NE(device, nullptr);
  EXPECT_EQ((*device)["name"], "laptop");
  EXPECT_EQ((*device)["interfaces"][0]["router"], "home");

  const json* cond = find_kind(events, "link_condition_changed");
  ASSERT_NE(cond, nullptr);
  EXPECT_EQ((*cond)["device"], "laptop");
  EXPECT_EQ((*cond)["iface"], "eth0");
  EXPECT_EQ((*cond)["condition"]["egress"]["latency_ms"], 1);

  const json* downlink = find_kind(events, "downlink_condition_changed");
  ASSERT_NE(downlink, nullptr);
  EXPECT_EQ((*downlink)["router"], "home");
  EXPECT_EQ((*downlink)["condition"]["latency_ms"], 1);

  const json* nat = find_kind(events, "nat_changed");
  ASSERT_NE(nat, nullptr);
  EXPECT_EQ((*nat)["nat"], "corporate");
  EXPECT_NE(find_kind(events, "nat_state_flushed"), nullptr);
  ASSERT_NE(find_kind(events, "link_down"), nullptr);
  EXPECT_EQ((*find_kind(events, "link_down"))["iface"], "eth0");
  EXPECT_NE(find_kind(events, "link_up"), nullptr);

  const json* replug = find_kind(events, "interface_replugged");
  ASSERT_NE(replug, nullptr);
  EXPECT_EQ((*replug)["from_router"], "home");
  EXPECT_EQ((*replug)["to_router"], "dc");
  EXPECT_TRUE((*replug)["new_ip"].is_string());

  const json* spawned = find_kind(events, "command_spawned");
  ASSERT_NE(spawned, nullptr);
  EXPECT_EQ((*spawned)["node"], "laptop");
  EXPECT_EQ((*spawned)["cmd"], "sh -c exit 3");
  const json* exited = find_kind(events, "command_exited");
  ASSERT_NE(exited, nullptr);
  EXPECT_EQ((*exited)["pid"], (*spawned)["pid"]);
  EXPECT_EQ((*exited)["exit_code"], 3);
  EXPECT_LT((*spawned)["opid"], (*exited)["opid"]);

  const json* removed = find_kind(events, "device_removed");
  ASSERT_NE(removed, nullptr);
  EXPECT_EQ((*removed)["name"], "laptop");
}

TEST(EventLogTest, LinesKeepTheEnvelopeKeyOrder) {
  TempDir dir;
  { Lab lab(LabOptions{.outdir = dir.path()}); }
  std::ifstream in(dir.path() / "events.jsonl");
  std::string first;
  ASSERT_TRUE(std::getline(in, first));
  EXPECT_EQ(first.rfind("{\"opid\":0,\"timestamp\":\"", 0), 0u) << first;
  EXPECT_NE(first.find("\",\"kind\":\"lab_created\""), std::string::npos) << first;
}

TEST(EventLogTest, StateJsonFollowsEveryEvent) {
  TempDir dir;
  Lab lab(LabOptions{.outdir = dir.path()});
  auto state_on_disk = [&] {
    std::ifstream in(dir.path() / "state.json");
    return json::parse(in);
  };
  EXPECT_EQ(state_on_disk()["status"], "running");
  Router dc = lab.add_router("dc").build();
  json s = state_on_disk();
  ASSERT_EQ(s["routers"].size(), 1u);
  EXPECT_EQ(s["routers"][0]["name"], "dc");
  EXPECT_EQ(s["opid"], read_events(dir.path() / "events.jsonl").back()["opid"]);
  dc.set_downlink_condition(LinkCondition::manual({.latency_ms = 2}));
  EXPECT_EQ(state_on_disk()["routers"][0]["lan"]["downlink_condition"]["latency_ms"], 2);
  EXPECT_EQ(state_on_disk(), json::parse(lab.state_json()));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "state.json.tmp"));
}

TEST(EventLogTest, ClosedLabLeavesItsLastTopologyMarkedStopped) {
  TempDir dir;
  {
    Lab lab(LabOptions{.outdir = dir.path()});
    Router dc = lab.add_router("dc").build();
    Device srv = lab.add_device("srv").iface("eth0", dc).build();
  }
  std::ifstream in(dir.path() / "state.json");
  json s = json::parse(in);
  EXPECT_EQ(s["status"], "stopped");
  EXPECT_EQ(s["routers"].size(), 1u);  // the nodes as they were, not an emptied lab
  EXPECT_EQ(s["devices"].size(), 1u);
}

TEST(EventLogTest, UserEventsGoToTheNodesFileAndTheLabsTimeline) {
  TempDir dir;
  {
    Lab lab(LabOptions{.outdir = dir.path()});
    Router dc = lab.add_router("dc").build();
    Device laptop = lab.add_device("laptop").iface("eth0", dc).build();
    laptop.event("ConnectionEstablished", {{"peer", "198.18.0.10:4433"}, {"rtt_ms", "21"}});
    // From the node's own thread too.
    laptop.run([&laptop] { laptop.event("Handshake"); });
    EXPECT_THROW(laptop.event(""), patchbay::Error);
    EXPECT_THROW(laptop.event("X", {{"kind", "y"}}), patchbay::Error);
  }
  const std::vector<json> mine = read_events(dir.path() / "device.laptop.events.jsonl");
  ASSERT_EQ(mine.size(), 2u);
  EXPECT_EQ(mine[0]["kind"], "ConnectionEstablished");
  EXPECT_EQ(mine[0]["peer"], "198.18.0.10:4433");
  EXPECT_EQ(mine[0]["rtt_ms"], "21");
  EXPECT_TRUE(is_rfc3339_utc(mine[0]["timestamp"].get<std::string>()));
  EXPECT_EQ(mine[0].size(), 4u);
  EXPECT_EQ(mine[1]["kind"], "Handshake");
  EXPECT_EQ(mine[1].size(), 2u);
  const std::vector<json> lab_events = read_events(dir.path() / "events.jsonl");
  const json* user = find_kind(lab_events, "user_event");
  ASSERT_NE(user, nullptr);
  EXPECT_EQ((*user)["node"], "laptop");
  EXPECT_EQ((*user)["fields"]["rtt_ms"], "21");
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "router.dc.events.jsonl"));
}

TEST(NodeLogTest, NodeLoggerWritesJsonAndTextLinesWithTheLibrarysOwn) {
  TempDir dir;
  {
    Lab lab(LabOptions{.outdir = dir.path()});
    Router dc = lab.add_router("dc").build();
    Device laptop = lab.add_device("laptop").iface("eth0", dc).build();
    laptop.logger()->info("handshake done with {}", "198.18.0.10");
    laptop.run([&laptop] { laptop.logger()->clone("quicapp::conn")->warn("path validated"); });
    laptop.logger()->debug("below the default level");
    laptop.set_link_condition("eth0", LinkCondition::manual({.latency_ms = 1}));
  }
  const std::vector<json> lines = read_events(dir.path() / "device.laptop.tracing.jsonl");
  std::vector<json> mine;
  bool library_line = false;
  for (const json& l : lines) {
    // formats.md §4.2: exactly these keys, fields.message, an upper-case level, µs timestamp.
    EXPECT_EQ(l.size(), 4u) << l.dump();
    EXPECT_TRUE(l["fields"].contains("message")) << l.dump();
    const std::string ts = l["timestamp"];
    EXPECT_EQ(ts.size(), 27u) << ts;
    EXPECT_EQ(ts.back(), 'Z');
    if (l["target"] == "patchbay") {
      library_line |=
          l["fields"]["message"].get<std::string>().rfind("link_condition_changed", 0) == 0;
    } else {
      mine.push_back(l);
    }
  }
  ASSERT_EQ(mine.size(), 2u);
  EXPECT_EQ(mine[0]["target"], "laptop");
  EXPECT_EQ(mine[0]["level"], "INFO");
  EXPECT_EQ(mine[0]["fields"]["message"], "handshake done with 198.18.0.10");
  EXPECT_EQ(mine[1]["target"], "quicapp::conn");
  EXPECT_EQ(mine[1]["level"], "WARN");
  EXPECT_TRUE(library_line) << "the library logs the node's condition change";

  std::ifstream text(dir.path() / "device.laptop.tracing.log");
  std::string all((std::istreambuf_iterator<char>(text)), std::istreambuf_iterator<char>());
  EXPECT_NE(all.find(" INFO\x1b[0m \x1b[2mlaptop:\x1b[0m handshake done with 198.18.0.10"),
            std::string::npos)
      << all;
  const std::vector<json> router_lines = read_events(dir.path() / "router.dc.tracing.jsonl");
  ASSERT_FALSE(router_lines.empty());
  EXPECT_EQ(router_lines[0]["fields"]["message"].get<std::string>().rfind("router_added", 0), 0u);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "ix.ix.tracing.jsonl"))
      << "the lab root's story is events.jsonl";
}

TEST(EventLogTest, LabWithoutOutputDirectoryWritesNoEvents) {
  Lab lab;
  Router dc = lab.add_router("dc").build();
  dc.logger()->info("discarded");
  EXPECT_FALSE(std::filesystem::exists(lab.outdir() / "router.dc.tracing.jsonl"));
  EXPECT_FALSE(std::filesystem::exists(lab.outdir() / "events.jsonl"));
  EXPECT_FALSE(std::filesystem::exists(lab.outdir() / "state.json"));
}

}  // namespace
