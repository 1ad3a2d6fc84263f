// Shared pieces of the patchbay_serve tests: fixture run directories written per formats.md,
// an in-process server on an ephemeral port, and a small HTTP/SSE client with deadlines (Beast,
// in serve_test_support.cpp so that it is compiled once rather than in every test file).
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/beast/http/verb.hpp>
#include <nlohmann/json.hpp>

#include "../temp_dir.hpp"
#include "patchbay_serve/server.hpp"

namespace patchbay::serve::testing {

namespace fs = std::filesystem;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

// Generous: a loaded CI machine must not turn into flakes. Waits end as soon as the event comes.
inline constexpr auto kDeadline = 10s;

// Written into files outside the base; no response may ever contain it.
inline constexpr std::string_view kSecret = "TOP-SECRET-OUTSIDE-THE-BASE";

inline void write_file(const fs::path& p, std::string_view content) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

inline void append_file(const fs::path& p, std::string_view content) {
  std::ofstream out(p, std::ios::binary | std::ios::app);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  out.flush();
  if (!out) throw std::runtime_error("cannot append to " + p.string());
}

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// One events.jsonl record with the envelope in formats.md order: opid, timestamp, kind, payload.
inline std::string event_line(int opid, std::string_view kind, std::string_view payload = "") {
  std::string line = "{\"opid\":" + std::to_string(opid) + ",\"timestamp\":\"2026-05-02T09:15:01." +
                     std::to_string(100000000 + opid) + "Z\",\"kind\":\"" + std::string(kind) +
                     "\"";
  if (!payload.empty()) line += "," + std::string(payload);
  return line + "}\n";
}

// The first events of a lab: lab_created (opid 0), ix_created (1), router_added (2).
inline std::string lab_start_events(std::string_view label) {
  return event_line(0, "lab_created",
                    "\"lab_prefix\":\"lab-p1\",\"label\":\"" + std::string(label) + "\"") +
         event_line(
             1, "ix_created",
             R"("bridge":"br-p1-1","cidr":"198.18.0.0/24","gw":"198.18.0.1","cidr_v6":null,"gw_v6":null)") +
         event_line(2, "router_added", R"("name":"dc","ns":"lab0-r1","nat":"none","devices":[])");
}

inline std::string state_json(std::optional<std::string> label, std::string_view status,
                              int opid = 2) {
  nlohmann::json j = {{"opid", opid},
                      {"lab_prefix", "lab-p1"},
                      {"label", label ? nlohmann::json(*label) : nlohmann::json(nullptr)},
                      {"status", status},
                      {"created_at", "2026-05-02T09:15:01.100000000Z"},
                      {"ix", nullptr},
                      {"routers", nlohmann::json::object()},
                      {"devices", nlohmann::json::object()},
                      {"regions", nlohmann::json::object()},
                      {"region_links", nlohmann::json::array()}};
  return j.dump(2);
}

// A one-packet little-endian pcap (global header + record), with non-UTF-8 bytes in it.
inline std::string tiny_pcap() {
  const unsigned char bytes[] = {0xd4, 0xc3, 0xb2, 0xa1, 0x02, 0x00, 0x04, 0x00, 0,    0,
                                 0,    0,    0,    0,    0,    0,    0xff, 0xff, 0,    0,
                                 0x01, 0,    0,    0,  // linktype ethernet
                                 0x10, 0,    0,    0,    0,    0,    0,    0,    0x04, 0,
                                 0,    0,    0x04, 0,    0,    0,    0xde, 0xad, 0xbe, 0xef};
  return {reinterpret_cast<const char*>(bytes), sizeof(bytes)};
}

// The standard fixture: nested runs, logs of every kind, and links that try to leave the base.
//   <tmp>/base/standalone/                         run, depth 1, status running
//   <tmp>/base/sim-260502-091500/relay/            run, depth 2, full set of log files
//   <tmp>/base/sim-260502-091500/ping/             run whose state.json links outside
//   <tmp>/base/sim-260502-091500/combined-results.json
//   <tmp>/base/sim-260503-100000/group/deep/       run, depth 3
//   <tmp>/base/too/deep/for/scan/                  depth 4: not discovered
//   <tmp>/base/latest -> sim-260502-091500         symlink: skipped by discovery
//   <tmp>/base/escape-run -> <tmp>/outside-run     symlinked run outside the base
//   <tmp>/outside/secret.txt, <tmp>/outside-run/{events.jsonl,state.json}
struct Fixture {
  pbtest::TempDir tmp{"patchbay-serve-test"};
  fs::path base = tmp.path() / "base";
  fs::path relay = base / "sim-260502-091500" / "relay";
  fs::path ping = base / "sim-260502-091500" / "ping";
  fs::path deep = base / "sim-260503-100000" / "group" / "deep";
  fs::path standalone = base / "standalone";
  fs::path outside = tmp.path() / "outside";

  Fixture() {
    const std::string secret(kSecret);
    write_file(outside / "secret.txt", secret + "\n");
    write_file(outside / "state.json",
               R"({"label":")" + secret + R"(","status":")" + secret + R"("})");
    write_file(tmp.path() / "outside-run" / "events.jsonl",
               event_line(0, "lab_created", "\"label\":\"" + secret + "\""));
    write_file(tmp.path() / "outside-run" / "state.json", state_json(secret, "stopped"));

    write_file(relay / "events.jsonl", lab_start_events("relay-label"));
    write_file(relay / "state.json", state_json("relay-label", "stopped"));
    write_file(
        relay / "device.client.tracing.jsonl",
        R"({"fields":{"message":"handshake done","rtt_ms":41},"level":"INFO","target":"app::conn","timestamp":"2026-05-02T09:15:05.120331Z"})"
        "\n");
    write_file(relay / "device.client.tracing.log",
               "\x1b[2m2026-05-02T09:15:05.120331Z\x1b[0m \x1b[32m INFO\x1b[0m app::conn: "
               "handshake done\n");
    write_file(
        relay / "device.client.events.jsonl",
        R"({"kind":"PathValidated","path":"direct","timestamp":"2026-05-02T09:15:05.300112Z"})"
        "\n");
    write_file(
        relay / "router.dc.tracing.jsonl",
        R"({"fields":{"message":"ra sent"},"level":"DEBUG","target":"patchbay::ra","timestamp":"2026-05-02T09:15:05.000001Z"})"
        "\n");
    write_file(relay / "device.client.eth0.pcap", tiny_pcap());
    write_file(relay / "results.json", "{\n  \"sim\": \"relay\",\n  \"steps\": []\n}\n");
    write_file(relay / "device.client.step1.stdout.log", "plain output line\n");
    write_file(relay / "empty.log", "");
    write_file(relay / "garbage.bin", std::string("\xff\xfe\x00\x81 not text", 13));
    write_file(relay / "files" / "step1" / "content", "file content\n");
    write_file(relay / "certs" / "srv" / "cert.pem", "-----BEGIN CERTIFICATE-----\n");
    // 300 numbered lines for range requests: "line 000\n" .. "line 299\n", 9 bytes each.
    std::string numbered;
    for (int i = 0; i < 300; ++i) {
      const std::string digits = std::to_string(i);
      numbered += "line " + std::string(3 - digits.size(), '0') + digits + "\n";
    }
    write_file(relay / "numbered.txt", numbered);
    fs::create_symlink(outside / "secret.txt", relay / "escape.log");
    fs::create_symlink(outside, relay / "escape-dir");

    write_file(ping / "events.jsonl", lab_start_events("ping-label"));
    fs::create_symlink(outside / "state.json", ping / "state.json");

    write_file(deep / "events.jsonl", lab_start_events("deep-label"));
    write_file(deep / "state.json", state_json("deep-label", "stopped"));

    write_file(standalone / "events.jsonl", lab_start_events("standalone"));
    write_file(standalone / "state.json", state_json(std::nullopt, "running"));

    write_file(base / "too" / "deep" / "for" / "scan" / "events.jsonl", lab_start_events("x"));
    write_file(
        base / "sim-260502-091500" / "combined-results.json",
        R"({"runs":[{"run":"sim-260502-091500","sim_dir":"relay","sim":"relay","steps":[]}]})");
    fs::create_symlink("sim-260502-091500", base / "latest");
    fs::create_symlink(tmp.path() / "outside-run", base / "escape-run");
  }
};

inline ServerOptions fast_options(const fs::path& base) {
  ServerOptions o;
  o.base_dir = base;
  o.port = 0;
  // Short intervals keep the tests fast; the waits below are on observable effects.
  o.rescan_interval = 50ms;
  o.events_poll_interval = 20ms;
  return o;
}

struct HttpResult {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
  nlohmann::json json() const { return nlohmann::json::parse(body); }
};

// Whether a TCP connection to 127.0.0.1:`port` succeeds within the deadline.
bool can_connect(std::uint16_t port);

// Connects, sends `bytes` and closes without reading: a client that leaves mid-request.
void send_and_close(std::uint16_t port, std::string_view bytes);

// One HTTP/1.1 request with a Host header for 127.0.0.1:`port`; throws on a transport error.
HttpResult http_request(std::uint16_t port, const std::string& target,
                        const std::map<std::string, std::string>& headers = {},
                        boost::beast::http::verb method = boost::beast::http::verb::get);

inline HttpResult http_get(std::uint16_t port, const std::string& target,
                           const std::map<std::string, std::string>& headers = {}) {
  return http_request(port, target, headers);
}

// Sends raw bytes and collects everything the server sends until it closes the connection (or
// the deadline passes, in which case `closed` is false).
struct RawResult {
  std::string data;
  bool closed = false;
};

RawResult raw_exchange(std::uint16_t port, std::string_view bytes,
                       std::chrono::steady_clock::duration timeout = kDeadline);

// A server-sent-events client reading one stream with deadlines.
class SseClient {
 public:
  struct Message {
    std::optional<std::string> id;
    std::string data;
    std::vector<std::string> comments;
    bool has_data = false;
  };

  SseClient(std::uint16_t port, const std::string& target,
            const std::map<std::string, std::string>& headers = {});
  ~SseClient();
  SseClient(const SseClient&) = delete;
  SseClient& operator=(const SseClient&) = delete;

  const std::string& head() const { return head_; }
  unsigned status() const { return static_cast<unsigned>(std::stoi(head_.substr(9, 3))); }

  // The next block ("...\n\n"), comments included; nullopt at the deadline or on close.
  std::optional<Message> next_block(std::chrono::steady_clock::duration timeout = kDeadline);

  // The next message that carries data (skipping keep-alives, retry and comments).
  std::optional<Message> next(std::chrono::steady_clock::duration timeout = kDeadline);

  // True once the server closed the connection (within the deadline).
  bool wait_closed(std::chrono::steady_clock::duration timeout = kDeadline);

  bool eof() const { return eof_; }

 private:
  struct Connection;  // Beast's stream, kept out of this header: it is compiled once.

  bool read_some(std::chrono::steady_clock::time_point deadline);

  std::unique_ptr<Connection> connection_;
  std::string head_;
  std::string buf_;
  bool eof_ = false;
};

// Counts entries of a /proc/self directory (fd or task) to detect leaks.
inline std::size_t count_entries(const char* dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

// Waits for `pred` with a deadline. Only for /proc counters, which have no event to wait on: a
// joined thread's /proc/self/task entry can disappear a moment after join() returns.
template <typename Pred>
bool eventually(Pred pred, std::chrono::steady_clock::duration timeout = kDeadline) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

}  // namespace patchbay::serve::testing

namespace patchbay::serve::testing {

// A started server on the standard fixture.
class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override { start(fast_options(fx_.base)); }
  void TearDown() override {
    if (server_) server_->stop();
  }
  void start(const ServerOptions& options) {
    if (server_) server_->stop();
    server_ = std::make_unique<Server>(options);
    server_->start();
    port_ = server_->port();
  }
  HttpResult get(const std::string& target, const std::map<std::string, std::string>& h = {}) {
    return http_get(port_, target, h);
  }

  static constexpr const char* kRelay = "/api/runs/sim-260502-091500%2Frelay";

  Fixture fx_;
  std::unique_ptr<Server> server_;
  std::uint16_t port_ = 0;
};

}  // namespace patchbay::serve::testing
