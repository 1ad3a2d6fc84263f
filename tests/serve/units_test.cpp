// The pure parts of patchbay_serve: path checks, ranges, log classification, event tailing.
#include <gtest/gtest.h>

#include "event_tail.hpp"
#include "file_serving.hpp"
#include "log_listing.hpp"
#include "path_safety.hpp"
#include "run_discovery.hpp"
#include "serve_test_support.hpp"

namespace patchbay::serve {
namespace {

using pbtest::TempDir;
using testing::append_file;
using testing::event_line;
using testing::write_file;

TEST(PathSafety, PercentDecodeRejectsMalformedEscapesAndNul) {
  EXPECT_EQ(percent_decode("a%2Fb"), "a/b");
  EXPECT_EQ(percent_decode("%2e%2E"), "..");
  EXPECT_EQ(percent_decode("%"), std::nullopt);
  EXPECT_EQ(percent_decode("%2"), std::nullopt);
  EXPECT_EQ(percent_decode("%zz"), std::nullopt);
  EXPECT_EQ(percent_decode("a%00b"), std::nullopt);
}

TEST(PathSafety, SafeComponentsRejectsEverythingThatCouldLeaveTheRoot) {
  EXPECT_EQ(safe_components("a/b.log"), (std::vector<std::string>{"a", "b.log"}));
  for (const char* bad :
       {"", "/etc/passwd", "..", "a/../b", "./a", "a/./b", "a//b", "a/", "a\\..\\b"}) {
    EXPECT_EQ(safe_components(bad), std::nullopt) << bad;
  }
}

TEST(PathSafety, SplitTargetKeepsEncodedSlashesInsideOneSegment) {
  const auto t = split_target("/api/runs/sim-1%2Frelay/logs?after=5");
  EXPECT_EQ(t.raw_segments, (std::vector<std::string>{"api", "runs", "sim-1%2Frelay", "logs"}));
  EXPECT_EQ(t.query, "after=5");
  EXPECT_EQ(query_param(t.query, "after"), "5");
  EXPECT_EQ(query_param(t.query, "before"), std::nullopt);
}

TEST(PathSafety, ResolveWithinForbidsSymlinksThatPointOutside) {
  TempDir tmp;
  write_file(tmp.path() / "root" / "in.txt", "x");
  write_file(tmp.path() / "out.txt", "secret");
  std::filesystem::create_symlink(tmp.path() / "out.txt", tmp.path() / "root" / "link");
  std::filesystem::create_symlink("in.txt", tmp.path() / "root" / "inner-link");
  std::filesystem::create_symlink(tmp.path() / "nowhere", tmp.path() / "root" / "dangling-out");
  const auto root = tmp.path() / "root";
  EXPECT_EQ(resolve_within(root, {"in.txt"}).result, Resolve::kOk);
  EXPECT_EQ(resolve_within(root, {"inner-link"}).result, Resolve::kOk);
  EXPECT_EQ(resolve_within(root, {"missing"}).result, Resolve::kNotFound);
  EXPECT_EQ(resolve_within(root, {"link"}).result, Resolve::kForbidden);
  EXPECT_EQ(resolve_within(root, {"dangling-out"}).result, Resolve::kForbidden);
}

TEST(PathSafety, IsWithinComparesWholeComponents) {
  EXPECT_TRUE(is_within("/srv/base", "/srv/base/run"));
  EXPECT_TRUE(is_within("/srv/base", "/srv/base"));
  EXPECT_FALSE(is_within("/srv/base", "/srv/base-other/run"));
  EXPECT_FALSE(is_within("/srv/base", "/srv"));
}

TEST(Range, ParsesTheThreeSingleRangeForms) {
  auto r = parse_range("bytes=10-19", 100);
  ASSERT_EQ(r.result, RangeResult::kSatisfiable);
  EXPECT_EQ(r.range.first, 10u);
  EXPECT_EQ(r.range.length, 10u);
  r = parse_range("bytes=90-", 100);
  ASSERT_EQ(r.result, RangeResult::kSatisfiable);
  EXPECT_EQ(r.range.first, 90u);
  EXPECT_EQ(r.range.length, 10u);
  r = parse_range("bytes=-262144", 100);  // the UI's tail request on a small file: all of it
  ASSERT_EQ(r.result, RangeResult::kSatisfiable);
  EXPECT_EQ(r.range.first, 0u);
  EXPECT_EQ(r.range.length, 100u);
  r = parse_range("bytes=-30", 100);
  EXPECT_EQ(r.range.first, 70u);
  r = parse_range("bytes=95-200", 100);  // end clamped to the file
  EXPECT_EQ(r.range.length, 5u);
}

TEST(Range, UnsatisfiableAndMalformedRangesAreDistinguished) {
  EXPECT_EQ(parse_range("bytes=100-", 100).result, RangeResult::kUnsatisfiable);
  EXPECT_EQ(parse_range("bytes=-0", 100).result, RangeResult::kUnsatisfiable);
  EXPECT_EQ(parse_range("bytes=-5", 0).result, RangeResult::kUnsatisfiable);
  for (const char* ignored :
       {"items=1-2", "bytes=5-1", "bytes=a-b", "bytes=1-2,4-5", "bytes=", "bytes=--1"}) {
    EXPECT_EQ(parse_range(ignored, 100).result, RangeResult::kNone) << ignored;
  }
}

TEST(LogClassification, FollowsTheRulesInOrder) {
  EXPECT_EQ(classify_log("events.jsonl", "{}\n"), "lab_events");
  EXPECT_EQ(classify_log("device.a.tracing.jsonl", "x"), "tracing_jsonl");
  EXPECT_EQ(classify_log("trace.qlog", "{}"), "qlog");
  EXPECT_EQ(classify_log("x.log",
                         "\x1e{\"file_schema\":\"urn:ietf:params:qlog:file:sequential\","
                         "\"serialization_format\":\"application/qlog+json-seq; JSON-SEQ\"}\n"),
            "qlog");
  EXPECT_EQ(
      classify_log("out.log", "\n{\"timestamp\":\"t\",\"level\":\"INFO\",\"target\":\"x\"}\n"),
      "tracing_jsonl");
  EXPECT_EQ(classify_log("device.a.events.jsonl", "{\"kind\":\"A\"}\n"), "jsonl");
  EXPECT_EQ(classify_log("records.out", "{\"a\":1}\n[2]\n"), "jsonl");
  EXPECT_EQ(classify_log("results.json", "{\n  \"a\": 1\n}\n"), "json");
  EXPECT_EQ(classify_log("out.log", "\x1b[32mINFO\x1b[0m hi\n"), "ansi_text");
  EXPECT_EQ(classify_log("out.log", "hello\n"), "text");
  EXPECT_EQ(classify_log("capture.pcapng", "\x0a\x0d\x0d\x0a\xff"), "pcap");
  EXPECT_EQ(classify_log("capture.bin", std::string("\xd4\xc3\xb2\xa1\x02\x00", 6)), "pcap");
  EXPECT_EQ(classify_log("blob.bin", "\xff\xfe\xfd"), "");
}

TEST(LogClassification, NodeIsTheSecondPartForDeviceAndRouterFiles) {
  EXPECT_EQ(node_of("device.client.tracing.jsonl"), "client");
  EXPECT_EQ(node_of("router.dc.nft.txt"), "dc");
  EXPECT_EQ(node_of("events.jsonl"), "_run");
  EXPECT_EQ(node_of("results.json"), "_run");
  EXPECT_EQ(node_of("devices.x.log"), "_run");
}

TEST(LogClassification, Utf8CheckAllowsOnlyACutLastCharacter) {
  EXPECT_TRUE(is_valid_utf8("gr\xc3\xbc\xc3\x9f", false));
  EXPECT_TRUE(is_valid_utf8("ab\xe2\x82", true));
  EXPECT_FALSE(is_valid_utf8("ab\xe2\x82", false));
  EXPECT_FALSE(is_valid_utf8("a\xc3(b", true));
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf", true));  // overlong '/'
}

TEST(EventTail, HoldsBackAHalfWrittenLineUntilItIsComplete) {
  TempDir tmp;
  const auto file = tmp.path() / "events.jsonl";
  write_file(file, event_line(0, "lab_created") + "{\"opid\":1,\"timest");
  EventFileTail tail(file, 0);
  auto got = tail.poll();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].opid, 0);
  EXPECT_TRUE(tail.poll().empty());
  append_file(file, "amp\":\"t\",\"kind\":\"ix_created\"}\n");
  got = tail.poll();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].opid, 1);
  EXPECT_EQ(got[0].json, R"({"opid":1,"timestamp":"t","kind":"ix_created"})");
}

TEST(EventTail, FiltersByOpidAtLeastMinAndDropsCorruptLines) {
  TempDir tmp;
  const auto file = tmp.path() / "events.jsonl";
  write_file(file, event_line(0, "a") + "not json\n\n" + event_line(1, "b") + event_line(2, "c"));
  EXPECT_EQ(read_events(file, 0).size(), 3u);
  const auto from1 = read_events(file, 1);
  ASSERT_EQ(from1.size(), 2u);
  EXPECT_EQ(from1[0].opid, 1);
  EXPECT_EQ(read_events(file, -1).size(), 3u);
  EXPECT_EQ(read_events(file, 3).size(), 0u);
}

TEST(EventTail, RestartsFromTheBeginningWhenTheFileIsReplaced) {
  TempDir tmp;
  const auto file = tmp.path() / "events.jsonl";
  write_file(file, event_line(0, "a") + event_line(1, "b") + event_line(2, "c"));
  EventFileTail tail(file, 2);
  ASSERT_EQ(tail.poll().size(), 1u);
  // A re-run writes a new file (new inode) whose opids start at 0 again.
  write_file(tmp.path() / "new", event_line(0, "rerun"));
  std::filesystem::rename(tmp.path() / "new", file);
  const auto got = tail.poll();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].opid, 0);
  EXPECT_TRUE(tail.replaced());
}

TEST(RunDiscovery, FindsRunsUpToThreeLevelsAndSortsDescending) {
  testing::Fixture fx;
  const auto runs = discover_runs(fx.base);
  std::vector<std::string> names;
  for (const auto& r : runs) names.push_back(r.name);
  EXPECT_EQ(names, (std::vector<std::string>{"standalone", "sim-260503-100000/group/deep",
                                             "sim-260502-091500/relay", "sim-260502-091500/ping"}));
}

TEST(RunDiscovery, ChangeDetectionSeesStatusAndReplacement) {
  RunInfo a;
  a.name = "r";
  a.status = "running";
  a.events_inode = 10;
  a.events_size = 100;
  RunInfo grown = a;
  grown.events_size = 200;  // appended events are not a list change
  EXPECT_FALSE(run_list_changed({a}, {grown}));
  RunInfo stopped = a;
  stopped.status = "stopped";
  EXPECT_TRUE(run_list_changed({a}, {stopped}));
  RunInfo replaced = a;
  replaced.events_inode = 11;
  EXPECT_TRUE(run_list_changed({a}, {replaced}));
  RunInfo truncated = a;
  truncated.events_size = 10;
  EXPECT_TRUE(run_list_changed({a}, {truncated}));
  EXPECT_TRUE(run_list_changed({a}, {}));
}

}  // namespace
}  // namespace patchbay::serve
