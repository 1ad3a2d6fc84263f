// `patchbay serve` watching a lab that is still running: the server streams what the lab
// writes as it happens — topology changes, user events, the stop — with no event lost or sent
// twice, and the run list notices a lab that starts after the page subscribed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "../serve/serve_test_support.hpp"
#include "patchbay/gtest.hpp"
#include "patchbay/patchbay.hpp"

namespace {

namespace st = patchbay::serve::testing;
using nlohmann::json;
using patchbay::Device;
using patchbay::Lab;
using patchbay::LabOptions;
using patchbay::Router;
using patchbay::RouterPreset;

class ServeLiveLabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto reason = patchbay::testing::lab_unavailable_reason()) GTEST_SKIP() << *reason;
    server_.emplace(st::fast_options(tmp_.path()));
    server_->start();
  }
  void TearDown() override {
    if (server_) server_->stop();
  }

  LabOptions options(const std::string& run) {
    LabOptions o;
    o.label = "live-" + run;
    o.outdir = tmp_.path() / run;
    return o;
  }

  // Reads events from `sse` until one of `kind` arrives; checks opids stay consecutive.
  json next_event_of_kind(st::SseClient& sse, const std::string& kind) {
    while (auto m = sse.next()) {
      json e = json::parse(m->data);
      EXPECT_EQ(e["opid"], next_opid_) << e.dump();
      EXPECT_EQ(m->id, std::to_string(next_opid_));
      next_opid_ = e["opid"].get<int>() + 1;
      if (e["kind"] == kind) return e;
    }
    ADD_FAILURE() << "no " << kind << " event within " << st::kDeadline.count() << " s";
    return {};
  }

  pbtest::TempDir tmp_;
  std::optional<patchbay::serve::Server> server_;
  int next_opid_ = 0;
};

TEST_F(ServeLiveLabTest, EventStreamDeliversEachChangeWhileTheLabRuns) {
  std::optional<Lab> lab(std::in_place, options("run1"));
  Router dc = lab->add_router("dc").preset(RouterPreset::Public).build();

  st::SseClient sse(server_->port(), "/api/runs/run1/events?after=0");
  ASSERT_EQ(sse.status(), 200u);
  EXPECT_EQ(next_event_of_kind(sse, "lab_created")["label"], "live-run1");
  EXPECT_EQ(next_event_of_kind(sse, "router_added")["name"], "dc");

  // Each step below happens after the stream is open: it can only arrive as a live update.
  Device laptop = lab->add_device("laptop").iface("eth0", dc).build();
  json added = next_event_of_kind(sse, "device_added");
  EXPECT_EQ(added["name"], "laptop");
  EXPECT_EQ(added["interfaces"][0]["router"], "dc");

  laptop.event("PathValidated", {{"path", "direct"}});
  json user = next_event_of_kind(sse, "user_event");
  EXPECT_EQ(user["name"], "PathValidated");

  dc.set_nat(patchbay::Nat::Home);
  EXPECT_EQ(next_event_of_kind(sse, "nat_changed")["router"], "dc");

  lab.reset();
  next_event_of_kind(sse, "lab_stopped");
  st::HttpResult state = st::http_get(server_->port(), "/api/runs/run1/state");
  ASSERT_EQ(state.status, 200u);
  EXPECT_EQ(json::parse(state.body)["status"], "stopped");
}

TEST_F(ServeLiveLabTest, RunListAnnouncesALabThatStartsLater) {
  st::SseClient runs(server_->port(), "/api/runs/subscribe");
  ASSERT_EQ(runs.status(), 200u);
  ASSERT_TRUE(runs.next_block()) << "the subscription opens with a comment";

  Lab lab(options("late"));
  std::optional<st::SseClient::Message> update = runs.next();
  ASSERT_TRUE(update);
  EXPECT_EQ(update->data, "update");
  st::HttpResult list = st::http_get(server_->port(), "/api/runs");
  ASSERT_EQ(list.status, 200u);
  EXPECT_THAT(list.body, ::testing::HasSubstr("\"label\":\"live-late\""));
}

}  // namespace
