// Traversal attempts, hostile Host headers and malformed requests: never file content from
// outside the base, never a crash.
#include <sys/socket.h>

#include <gtest/gtest.h>

#include "serve_test_support.hpp"

namespace patchbay::serve::testing {
namespace {

struct Attempt {
  const char* target;
  unsigned status;
};

class TraversalTest : public ServeTest, public ::testing::WithParamInterface<Attempt> {};

TEST_P(TraversalTest, IsRefusedWithoutContentFromOutsideTheBase) {
  const auto [target, status] = GetParam();
  const auto r = get(target);
  EXPECT_EQ(r.status, status) << target << " -> " << r.body;
  EXPECT_EQ(r.body.find(kSecret), std::string::npos) << target;
  if (status == 403) {
    EXPECT_EQ(r.json(), nlohmann::json::parse(R"({"error":"forbidden"})"));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Serve, TraversalTest,
    ::testing::Values(
        // Run names
        Attempt{"/api/runs/..%2Foutside-run/state", 403},
        Attempt{"/api/runs/%2e%2e%2Foutside-run/state", 403},
        Attempt{"/api/runs/%2E%2E%2foutside-run/events.json", 403},
        Attempt{"/api/runs/../outside-run/state", 403}, Attempt{"/api/runs/%2e%2e/state", 403},
        Attempt{"/api/runs/%2Fetc/state", 403},
        Attempt{"/api/runs/escape-run/state", 403},  // symlinked run dir outside
        Attempt{"/api/runs/escape-run/events.json", 403}, Attempt{"/api/runs/escape-run/logs", 403},
        Attempt{"/api/runs/latest%2F..%2F..%2Foutside-run/state", 403},
        Attempt{"/api/runs/sim-260502-091500%2Fping/state", 403},  // state.json links outside
        Attempt{"/api/runs/a%00b/state", 403}, Attempt{"/api/runs/%zz/state", 403},
        // Files inside a run
        Attempt{"/api/runs/sim-260502-091500%2Frelay/files/escape.log", 403},
        Attempt{"/api/runs/sim-260502-091500%2Frelay/logs/escape.log", 403},
        Attempt{"/api/runs/sim-260502-091500%2Frelay/logs/escape.log?after=0", 403},
        Attempt{"/api/runs/sim-260502-091500%2Frelay/files/escape-dir/secret.txt", 403},
        Attempt{"/api/runs/sim-260502-091500%2Frelay/files/escape-dir%2Fsecret.txt", 403},
        Attempt{"/api/runs/sim-260502-091500%2Frelay/files/../../../outside/secret.txt", 403},
        Attempt{"/api/runs/sim-260502-091500%2Frelay/files/..%2F..%2F..%2Foutside%2Fsecret.txt",
                403},
        Attempt{"/api/runs/sim-260502-091500%2Frelay/files/%2e%2e/%2e%2e/%2e%2e/outside/secret.txt",
                403},
        Attempt{"/api/runs/sim-260502-091500%2Frelay/files/%2Ftmp%2F..%2Fetc%2Fpasswd", 403},
        Attempt{"/api/runs/sim-260502-091500%2Frelay/files/.%2Fstate.json", 403},
        Attempt{"/api/runs/sim-260502-091500%2Frelay/files/a%00b", 403},
        // Decoded exactly once: "%252e%252e" names a file literally called "%2e%2e".
        Attempt{"/api/runs/sim-260502-091500%2Frelay/files/%252e%252e%252Fsecret.txt", 404},
        // Invocations
        Attempt{"/api/invocations/..%2Foutside/combined-results", 403},
        Attempt{"/api/invocations/%2e%2e/combined-results", 403},
        Attempt{"/api/invocations/%2Ftmp/combined-results", 403},
        // Static paths without a UI directory
        Attempt{"/..%2Foutside%2Fsecret.txt", 404}, Attempt{"/../outside/secret.txt", 404}));

TEST_F(ServeTest, AbsoluteRunNameOfARealRunOutsideTheBaseIsForbidden) {
  std::string encoded;
  for (char c : (fx_.tmp.path() / "outside-run").string()) {
    if (c == '/') {
      encoded += "%2F";
    } else {
      encoded += c;
    }
  }
  const auto r = get("/api/runs/" + encoded + "/events.json");
  EXPECT_EQ(r.status, 403u);
  EXPECT_EQ(r.body.find(kSecret), std::string::npos);
}

TEST_F(ServeTest, ForeignHostHeaderIsRejectedOnALoopbackServer) {
  // DNS rebinding: a page on evil.example resolving to 127.0.0.1 would send its own Host.
  const auto evil = get("/api/runs", {{"Host", "evil.example:" + std::to_string(port_)}});
  EXPECT_EQ(evil.status, 403u);
  EXPECT_EQ(evil.body.find("standalone"), std::string::npos);
  EXPECT_EQ(get("/api/runs", {{"Host", "localhost:" + std::to_string(port_)}}).status, 200u);
  EXPECT_EQ(get("/api/runs", {{"Host", "[::1]:" + std::to_string(port_)}}).status, 200u);
}

TEST_F(ServeTest, GarbageRequestGets400AndTheServerKeepsServing) {
  const auto r = raw_exchange(port_, "THIS IS NOT HTTP\r\n\r\n");
  EXPECT_EQ(r.data.substr(0, 12), "HTTP/1.1 400") << r.data;
  EXPECT_TRUE(r.closed);
  const auto binary = raw_exchange(port_, std::string("\x16\x03\x01\x00\xa5\x01\x00\x00", 8));
  EXPECT_TRUE(binary.closed);  // a TLS ClientHello
  EXPECT_EQ(get("/api/runs").status, 200u);
}

TEST_F(ServeTest, HugeHeadersGet431) {
  const std::string req =
      "GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + std::string(200 * 1024, 'a') +
      "\r\n\r\n";
  const auto r = raw_exchange(port_, req);
  EXPECT_EQ(r.data.substr(0, 12), "HTTP/1.1 431") << r.data.substr(0, 200);
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(get("/api/runs").status, 200u);
}

TEST_F(ServeTest, OtherMethodsGet405) {
  const auto r = http_request(port_, "/api/runs", {}, http::verb::post);
  EXPECT_EQ(r.status, 405u);
  EXPECT_EQ(r.header("allow"), "GET, HEAD");
  const auto del =
      http_request(port_, std::string(kRelay) + "/files/numbered.txt", {}, http::verb::delete_);
  EXPECT_EQ(del.status, 405u);
  EXPECT_TRUE(fs::exists(fx_.relay / "numbered.txt"));
}

TEST_F(ServeTest, ClientVanishingMidRequestDoesNotDisturbOthers) {
  send_and_close(port_, "GET /api/runs HTTP/1.1\r\nHost: 127.");  // the request half sent
  SseClient stream_open(port_, std::string(kRelay) + "/events");
  ASSERT_TRUE(stream_open.next());
  {
    // An SSE client that leaves without reading.
    SseClient leaver(port_, std::string(kRelay) + "/events");
  }
  EXPECT_EQ(get("/api/runs").status, 200u);
  append_file(fx_.relay / "events.jsonl", event_line(3, "link_up"));
  // The other stream is unaffected (history 1 and 2, then the new one).
  ASSERT_TRUE(stream_open.next());
  ASSERT_TRUE(stream_open.next());
  const auto m = stream_open.next();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->id, "3");
}

TEST_F(ServeTest, KeepAliveAnswersPipelinedRequestsInOrder) {
  const std::string two =
      "GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
      "GET /api/nothing HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  const auto r = raw_exchange(port_, two);
  const auto first = r.data.find("HTTP/1.1 200");
  const auto second = r.data.find("HTTP/1.1 404");
  ASSERT_NE(first, std::string::npos) << r.data;
  ASSERT_NE(second, std::string::npos) << r.data;
  EXPECT_LT(first, second);
  EXPECT_TRUE(r.closed);
}

}  // namespace
}  // namespace patchbay::serve::testing
