// The two event streams: /api/runs/{run}/events and /api/runs/subscribe.
#include <gtest/gtest.h>

#include "serve_test_support.hpp"

namespace patchbay::serve::testing {
namespace {

using nlohmann::json;

class EventStreamTest : public ServeTest {
 protected:
  std::string events_target(const std::string& query = "") {
    return std::string(kRelay) + "/events" + query;
  }
  // Reads `n` data messages and returns their ids.
  static std::vector<std::string> ids(SseClient& c, int n) {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) {
      auto m = c.next();
      if (!m) break;
      out.push_back(m->id.value_or("<none>"));
    }
    return out;
  }
};

TEST_F(EventStreamTest, HistoryStartsAtOpidZeroWithOpidsAsEventIds) {
  SseClient c(port_, events_target("?after=0"));
  EXPECT_EQ(c.status(), 200u);
  EXPECT_NE(c.head().find("Content-Type: text/event-stream"), std::string::npos);
  auto first = c.next();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->id, "0");
  EXPECT_EQ(json::parse(first->data)["kind"], "lab_created");
  EXPECT_EQ(ids(c, 2), (std::vector<std::string>{"1", "2"}));
}

TEST_F(EventStreamTest, WithoutAfterEveryEventIsSent) {
  SseClient c(port_, events_target());
  EXPECT_EQ(ids(c, 3), (std::vector<std::string>{"0", "1", "2"}));
}

TEST_F(EventStreamTest, AfterSelectsOpidsAtLeastN) {
  SseClient from2(port_, events_target("?after=2"));
  EXPECT_EQ(ids(from2, 1), (std::vector<std::string>{"2"}));
  SseClient minus1(port_, events_target("?after=-1"));
  EXPECT_EQ(ids(minus1, 1), (std::vector<std::string>{"0"}));
  SseClient bad(port_, events_target("?after=abc"));
  EXPECT_EQ(bad.status(), 400u);
}

TEST_F(EventStreamTest, LastEventIdResumesAfterTheLastSeenOpid) {
  // A reconnecting EventSource repeats its URL (after=0) and adds Last-Event-ID.
  SseClient c(port_, events_target("?after=0"), {{"Last-Event-ID", "1"}});
  EXPECT_EQ(ids(c, 1), (std::vector<std::string>{"2"}));
  append_file(fx_.relay / "events.jsonl", event_line(3, "nat_changed", R"("router":"dc")"));
  EXPECT_EQ(ids(c, 1), (std::vector<std::string>{"3"}));
}

TEST_F(EventStreamTest, EventsAppendedWhileTheStreamIsOpenArrive) {
  SseClient c(port_, events_target("?after=0"));
  ASSERT_EQ(ids(c, 3).size(), 3u);
  const auto line = event_line(3, "link_down", R"("device":"client","iface":"eth0")");
  append_file(fx_.relay / "events.jsonl", line);
  auto m = c.next();
  ASSERT_TRUE(m) << "appended event not delivered within the deadline";
  EXPECT_EQ(m->id, "3");
  EXPECT_EQ(m->data + "\n", line);
  append_file(fx_.relay / "events.jsonl", event_line(4, "link_up") + event_line(5, "link_down"));
  EXPECT_EQ(ids(c, 2), (std::vector<std::string>{"4", "5"}));
}

TEST_F(EventStreamTest, HalfWrittenLineIsSentOnlyOnceComplete) {
  auto opts = fast_options(fx_.base);
  // Keep-alives double as a clock that the stream's own timers drive: after two of them the
  // 20 ms tail poll has run several times over the half-written line.
  opts.keepalive_interval = 60ms;
  start(opts);
  SseClient c(port_, events_target());
  ASSERT_EQ(ids(c, 3).size(), 3u);
  const auto line = event_line(3, "device_added", R"("name":"tablet","interfaces":[])");
  const auto cut = line.size() / 2;
  append_file(fx_.relay / "events.jsonl", line.substr(0, cut));
  int keepalives = 0;
  while (keepalives < 2) {
    auto block = c.next_block();
    ASSERT_TRUE(block) << "stream stalled";
    ASSERT_FALSE(block->has_data) << "sent before the line was complete: " << block->data;
    for (const auto& comment : block->comments) keepalives += comment == " keep-alive";
  }
  append_file(fx_.relay / "events.jsonl", line.substr(cut));
  auto m = c.next();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->data + "\n", line);
}

TEST_F(EventStreamTest, SeveralStreamsAtOnceEachGetTheAppendedEvent) {
  std::vector<std::unique_ptr<SseClient>> clients;
  for (int i = 0; i < 5; ++i) {
    clients.push_back(std::make_unique<SseClient>(port_, events_target()));
    ASSERT_EQ(ids(*clients.back(), 3).size(), 3u);
  }
  SseClient runs(port_, "/api/runs/subscribe");
  append_file(fx_.relay / "events.jsonl", event_line(3, "nat_state_flushed", R"("router":"dc")"));
  for (auto& c : clients) EXPECT_EQ(ids(*c, 1), (std::vector<std::string>{"3"}));
  // The server still answers plain requests while streams are open.
  EXPECT_EQ(get("/api/runs").status, 200u);
}

TEST_F(EventStreamTest, UnknownRunOrTraversalGivesAnErrorNotAStream) {
  SseClient unknown(port_, "/api/runs/nope/events");
  EXPECT_EQ(unknown.status(), 404u);
  SseClient traversal(port_, "/api/runs/%2e%2e%2Foutside-run/events");
  EXPECT_EQ(traversal.status(), 403u);
}

class RunSubscribeTest : public ServeTest {
 protected:
  // The ": subscribed" comment arrives after registration: changes from now on are notified.
  std::unique_ptr<SseClient> subscribe() {
    auto c = std::make_unique<SseClient>(port_, "/api/runs/subscribe");
    EXPECT_EQ(c->status(), 200u);
    auto first = c->next_block();
    EXPECT_TRUE(first && !first->comments.empty() && first->comments[0] == " subscribed");
    return c;
  }
  std::optional<json> run_named(const std::string& name) {
    for (const auto& r : get("/api/runs").json()) {
      if (r["name"] == name) return r;
    }
    return std::nullopt;
  }
};

TEST_F(RunSubscribeTest, NewRunTriggersAnUpdate) {
  auto c = subscribe();
  write_file(fx_.base / "sim-260504-000000" / "fresh" / "events.jsonl", lab_start_events("f"));
  auto m = c->next();
  ASSERT_TRUE(m) << "no update for a new run";
  EXPECT_EQ(m->data, "update");
  EXPECT_TRUE(run_named("sim-260504-000000/fresh"));
}

TEST_F(RunSubscribeTest, StatusChangeTriggersAnUpdate) {
  auto c = subscribe();
  write_file(fx_.standalone / "state.json.tmp", state_json(std::nullopt, "stopped"));
  fs::rename(fx_.standalone / "state.json.tmp", fx_.standalone / "state.json");
  auto m = c->next();
  ASSERT_TRUE(m) << "no update for a status change";
  EXPECT_EQ(m->data, "update");
  EXPECT_EQ((*run_named("standalone"))["status"], "stopped");
}

TEST_F(RunSubscribeTest, ReplacedRunTriggersAnUpdate) {
  auto c = subscribe();
  // Same name, same status, same size: only the file identity changes (a re-run).
  const auto events = fx_.relay / "events.jsonl";
  write_file(fx_.relay / "events.jsonl.new", read_file(events));
  fs::rename(fx_.relay / "events.jsonl.new", events);
  auto m = c->next();
  ASSERT_TRUE(m) << "no update for a replaced run";
  EXPECT_EQ(m->data, "update");
}

TEST_F(RunSubscribeTest, RemovedRunTriggersAnUpdate) {
  auto c = subscribe();
  fs::remove_all(fx_.deep);
  auto m = c->next();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->data, "update");
  EXPECT_FALSE(run_named("sim-260503-100000/group/deep"));
}

}  // namespace
}  // namespace patchbay::serve::testing
