// The JSON and file endpoints of formats.md 10.2 over real HTTP.
#include <gtest/gtest.h>

#include "serve_test_support.hpp"

namespace patchbay::serve::testing {
namespace {

using nlohmann::json;

TEST_F(ServeTest, RunListHasNestedRunsWithLabelStatusAndInvocationNewestFirst) {
  const auto r = get("/api/runs");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.header("content-type"), "application/json");
  const json expected = json::parse(R"([
    {"name":"standalone","label":null,"status":"running","invocation":null},
    {"name":"sim-260503-100000/group/deep","label":"deep-label","status":"stopped",
     "invocation":"sim-260503-100000"},
    {"name":"sim-260502-091500/relay","label":"relay-label","status":"stopped",
     "invocation":"sim-260502-091500"},
    {"name":"sim-260502-091500/ping","label":null,"status":null,
     "invocation":"sim-260502-091500"}])");
  // Not listed: too/deep/for/scan (4 levels), latest and escape-run (symlinks).
  EXPECT_EQ(r.json(), expected);
  EXPECT_EQ(r.body.find(kSecret), std::string::npos);
}

TEST(ServeSingleRun, BaseWithEventsIsTheOnlyRunNamedAfterItsDirectory) {
  Fixture fx;
  Server server(fast_options(fx.standalone));
  server.start();
  const auto runs = http_get(server.port(), "/api/runs");
  ASSERT_EQ(runs.status, 200u);
  EXPECT_EQ(runs.json(), json::parse(R"([{"name":"standalone","label":null,"status":"running",
                                           "invocation":null}])"));
  for (const char* target :
       {"/api/runs/standalone/state", "/api/runs/./state", "/api/runs/%2E/state"}) {
    const auto r = http_get(server.port(), target);
    EXPECT_EQ(r.status, 200u) << target;
    EXPECT_EQ(r.json()["status"], "running") << target;
  }
  EXPECT_EQ(http_get(server.port(), "/api/runs/other/state").status, 404u);
  server.stop();
}

TEST_F(ServeTest, StateIsTheRawStateJsonFile) {
  const auto r = get(std::string(kRelay) + "/state");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.body, read_file(fx_.relay / "state.json"));
}

TEST_F(ServeTest, MissingStateAndUnknownRunAreJson404s) {
  write_file(fx_.base / "fresh" / "events.jsonl", lab_start_events("fresh"));
  const auto missing = get("/api/runs/fresh/state");
  EXPECT_EQ(missing.status, 404u);
  EXPECT_EQ(missing.json(), json::parse(R"({"error":"state.json not found"})"));
  const auto unknown = get("/api/runs/no-such-run/state");
  EXPECT_EQ(unknown.status, 404u);
  EXPECT_EQ(unknown.json(), json::parse(R"({"error":"run not found"})"));
  EXPECT_EQ(get("/api/runs/no-such-run/events.json").status, 404u);
  EXPECT_EQ(get("/api/runs/no-such-run/logs").status, 404u);
  EXPECT_EQ(get("/api/nothing-here").status, 404u);
}

TEST_F(ServeTest, RunNamesWorkEncodedAsOneSegmentOrAsPlainPathAndThroughInBaseSymlinks) {
  for (const char* target :
       {"/api/runs/sim-260502-091500%2Frelay/state", "/api/runs/sim-260502-091500%2frelay/state",
        "/api/runs/sim-260502-091500/relay/state", "/api/runs/latest%2Frelay/state",
        "/api/runs/sim-260503-100000%2Fgroup%2Fdeep/state",
        "/api/runs/sim-260503-100000/group/deep/state"}) {
    const auto r = get(target);
    EXPECT_EQ(r.status, 200u) << target;
    EXPECT_EQ(r.json()["status"], "stopped") << target;
  }
}

TEST_F(ServeTest, EventsJsonHasEveryCompleteEventFromOpidZero) {
  // A writer caught mid-line: only the three complete lines count.
  append_file(fx_.relay / "events.jsonl", R"({"opid":3,"timestamp":"2026-05-02T09:1)");
  const auto all = get(std::string(kRelay) + "/events.json");
  ASSERT_EQ(all.status, 200u);
  const auto events = all.json();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0]["opid"], 0);
  EXPECT_EQ(events[0]["kind"], "lab_created");
  EXPECT_EQ(events[2]["opid"], 2);
  const auto after1 = get(std::string(kRelay) + "/events.json?after=1").json();
  ASSERT_EQ(after1.size(), 2u);
  EXPECT_EQ(after1[0]["opid"], 1);
  EXPECT_EQ(get(std::string(kRelay) + "/events.json?after=x").status, 400u);
}

TEST_F(ServeTest, LogListingClassifiesFilesIncludingCapturesAndSubdirectories) {
  const auto r = get(std::string(kRelay) + "/logs");
  ASSERT_EQ(r.status, 200u);
  // Sorted by node, then kind order, then path. Not listed: empty.log (empty), garbage.bin
  // (not UTF-8), escape.log and escape-dir (symlinks).
  const json expected = json::parse(R"([
    {"node":"_run","kind":"lab_events","path":"events.jsonl"},
    {"node":"_run","kind":"json","path":"results.json"},
    {"node":"_run","kind":"json","path":"state.json"},
    {"node":"_run","kind":"text","path":"certs/srv/cert.pem"},
    {"node":"_run","kind":"text","path":"files/step1/content"},
    {"node":"_run","kind":"text","path":"numbered.txt"},
    {"node":"client","kind":"tracing_jsonl","path":"device.client.tracing.jsonl"},
    {"node":"client","kind":"jsonl","path":"device.client.events.jsonl"},
    {"node":"client","kind":"ansi_text","path":"device.client.tracing.log"},
    {"node":"client","kind":"text","path":"device.client.step1.stdout.log"},
    {"node":"client","kind":"pcap","path":"device.client.eth0.pcap"},
    {"node":"dc","kind":"tracing_jsonl","path":"router.dc.tracing.jsonl"}])");
  EXPECT_EQ(r.json(), expected);
}

TEST_F(ServeTest, LogTailStartsAtTheRequestedByteOffset) {
  const std::string logs = std::string(kRelay) + "/logs/numbered.txt";
  const auto tail = get(logs + "?after=2691");  // 299 lines of 9 bytes
  ASSERT_EQ(tail.status, 200u);
  EXPECT_EQ(tail.body, "line 299\n");
  EXPECT_EQ(tail.header("content-type"), "text/plain; charset=utf-8");
  EXPECT_EQ(get(logs).body.size(), 2700u);
  const auto beyond = get(logs + "?after=99999");
  EXPECT_EQ(beyond.status, 200u);
  EXPECT_EQ(beyond.body, "");
  EXPECT_EQ(get(logs + "?after=-1").status, 400u);
  append_file(fx_.relay / "numbered.txt", "line 300\n");
  EXPECT_EQ(get(logs + "?after=2700").body, "line 300\n");
}

TEST_F(ServeTest, FilesSupportSingleByteRanges) {
  const std::string file = std::string(kRelay) + "/files/numbered.txt";
  const auto whole = get(file);
  ASSERT_EQ(whole.status, 200u);
  EXPECT_EQ(whole.body, read_file(fx_.relay / "numbered.txt"));
  EXPECT_EQ(whole.header("accept-ranges"), "bytes");

  const auto middle = get(file, {{"Range", "bytes=9-17"}});
  EXPECT_EQ(middle.status, 206u);
  EXPECT_EQ(middle.body, "line 001\n");
  EXPECT_EQ(middle.header("content-range"), "bytes 9-17/2700");

  const auto suffix = get(file, {{"Range", "bytes=-9"}});
  EXPECT_EQ(suffix.status, 206u);
  EXPECT_EQ(suffix.body, "line 299\n");
  EXPECT_EQ(suffix.header("content-range"), "bytes 2691-2699/2700");

  const auto open_ended = get(file, {{"Range", "bytes=2682-"}});
  EXPECT_EQ(open_ended.body, "line 298\nline 299\n");

  // The UI's request for the last 256 KiB of a smaller file gets all of it.
  const auto ui_tail = get(file, {{"Range", "bytes=-262144"}});
  EXPECT_EQ(ui_tail.status, 206u);
  EXPECT_EQ(ui_tail.body.size(), 2700u);

  const auto past_end = get(file, {{"Range", "bytes=5000-"}});
  EXPECT_EQ(past_end.status, 416u);
  EXPECT_EQ(past_end.header("content-range"), "bytes */2700");

  const auto multi = get(file, {{"Range", "bytes=0-1,5-6"}});  // ignored: whole file
  EXPECT_EQ(multi.status, 200u);
  EXPECT_EQ(multi.body.size(), 2700u);
}

TEST_F(ServeTest, BinaryCapturesAreServedByteExactAsOctetStream) {
  const auto r = get(std::string(kRelay) + "/files/device.client.eth0.pcap");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.header("content-type"), "application/octet-stream");
  EXPECT_EQ(r.header("x-content-type-options"), "nosniff");
  EXPECT_EQ(r.body, tiny_pcap());
  const auto bin = get(std::string(kRelay) + "/files/garbage.bin");
  EXPECT_EQ(bin.status, 200u);
  EXPECT_EQ(bin.header("content-type"), "application/octet-stream");
  const auto ranged =
      get(std::string(kRelay) + "/files/device.client.eth0.pcap", {{"Range", "bytes=0-3"}});
  EXPECT_EQ(ranged.body, tiny_pcap().substr(0, 4));
}

TEST_F(ServeTest, FilesInSubdirectoriesAreReachableWithPlainOrEncodedSlashes) {
  EXPECT_EQ(get(std::string(kRelay) + "/files/files/step1/content").body, "file content\n");
  EXPECT_EQ(get(std::string(kRelay) + "/files/files%2Fstep1%2Fcontent").body, "file content\n");
  EXPECT_EQ(get(std::string(kRelay) + "/files/files/step1").status, 404u);  // a directory
  EXPECT_EQ(get(std::string(kRelay) + "/files/nope.txt").status, 404u);
}

TEST_F(ServeTest, HeadGivesTheLengthWithoutABody) {
  const auto r =
      http_request(port_, std::string(kRelay) + "/files/numbered.txt", {}, http::verb::head);
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.header("content-length"), "2700");
  EXPECT_EQ(r.body, "");
}

TEST_F(ServeTest, CombinedResultsComeFromTheInvocationDirectory) {
  const auto r = get("/api/invocations/sim-260502-091500/combined-results");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.json()["runs"][0]["sim"], "relay");
  const auto missing = get("/api/invocations/sim-260503-100000/combined-results");
  EXPECT_EQ(missing.status, 404u);
  EXPECT_EQ(missing.json(), json::parse(R"({"runs":[]})"));
}

TEST_F(ServeTest, WithoutAUiDirectoryTheRootExplainsThatTheUiIsNotBuilt) {
  const auto r = get("/");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.header("content-type"), "text/html; charset=utf-8");
  EXPECT_NE(r.body.find("not built"), std::string::npos);
  EXPECT_EQ(get("/some/route").status, 404u);
}

TEST(ServeUi, UiDirectoryServesAssetsWithTypesAndFallsBackToIndexForRoutes) {
  Fixture fx;
  const auto ui = fx.tmp.path() / "ui";
  write_file(ui / "index.html", "<html>APP</html>");
  write_file(ui / "assets" / "app.js", "console.log(1)");
  fs::create_symlink(fx.outside / "secret.txt", ui / "leak.txt");
  auto opts = fast_options(fx.base);
  opts.ui_dir = ui;
  Server server(opts);
  server.start();
  const auto root = http_get(server.port(), "/");
  EXPECT_EQ(root.status, 200u);
  EXPECT_EQ(root.body, "<html>APP</html>");
  EXPECT_EQ(root.header("content-type"), "text/html; charset=utf-8");
  const auto js = http_get(server.port(), "/assets/app.js");
  EXPECT_EQ(js.body, "console.log(1)");
  EXPECT_EQ(js.header("content-type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(http_get(server.port(), "/run/sim-1").body, "<html>APP</html>");
  EXPECT_EQ(http_get(server.port(), "/assets/missing.js").status, 404u);
  for (const char* target : {"/leak.txt", "/..%2Foutside%2Fsecret.txt", "/../outside/secret.txt",
                             "/%2e%2e/outside/secret.txt"}) {
    const auto r = http_get(server.port(), target);
    EXPECT_EQ(r.status, 403u) << target;
    EXPECT_EQ(r.body.find(kSecret), std::string::npos) << target;
  }
  server.stop();
}

}  // namespace
}  // namespace patchbay::serve::testing
