// Measurement helpers for link-condition tests: ping RTTs and numbered UDP datagram runs
// between two nodes, plus the statistics the tests compare them with. Every wait is on an event
// (a reply, a datagram) with a deadline derived from the configured condition.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "patchbay/patchbay.hpp"
#include "udp_socket.hpp"

namespace pbtest {

struct PingResult {
  std::vector<double> rtts_ms;  // one per answered request, in sequence order
  int duplicates = 0;           // replies marked (DUP!)
  int transmitted = 0;
};

// `count` pings from `from` to `to`, `interval_s` apart (ping's -i), each waited for up to
// `wait_s`. Parses iputils' per-reply lines ("icmp_seq=3 ttl=64 time=20.3 ms").
inline PingResult ping(const patchbay::Node& from, const patchbay::Ipv4Address& to, int count,
                       double interval_s, int wait_s = 5) {
  char interval[32];
  std::snprintf(interval, sizeof interval, "%.3f", interval_s);
  const auto timeout =
      std::chrono::milliseconds(static_cast<long>((count * interval_s + wait_s) * 1000) + 10'000);
  patchbay::CommandResult r =
      from.run_command({"ping", "-n", "-c", std::to_string(count), "-i", interval, "-W",
                        std::to_string(wait_s), to.to_string()},
                       timeout);
  PingResult out;
  out.transmitted = count;
  std::size_t pos = 0;
  const std::string& text = r.stdout_text;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    std::size_t t = line.find("time=");
    if (t == std::string::npos || line.find("icmp_seq=") == std::string::npos) continue;
    if (line.find("(DUP!)") != std::string::npos) {
      ++out.duplicates;
      continue;
    }
    out.rtts_ms.push_back(std::stod(line.substr(t + 5)));
  }
  return out;
}

// Reads a file of the node's own /sys/class/net (a fresh sysfs mount in a private mount
// namespace: the process's /sys shows the namespace that mounted it, not the node's).
inline std::string node_sysfs(const patchbay::Node& node, const std::string& path) {
  patchbay::CommandResult r =
      node.run_command({"unshare", "--mount", "sh", "-c",
                        "mount -t sysfs sysfs /sys && cat /sys/class/net/" + path});
  std::string out = r.success() ? r.stdout_text : "error: " + r.stderr_text;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

inline double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// The 99 % two-sided interval of a Binomial(n, p) count (normal approximation with continuity
// correction, widened by one for small counts): the range a correct link lands in 99 times of
// 100.
inline std::pair<double, double> binomial_99(int n, double p) {
  const double mean = n * p;
  const double sd = std::sqrt(n * p * (1 - p));
  return {std::max(0.0, mean - 2.576 * sd - 1.5), mean + 2.576 * sd + 1.5};
}

// What the receiver of a numbered datagram run saw.
struct UdpRun {
  std::vector<int> arrivals;  // sequence numbers in arrival order (duplicates included)
  int sent = 0;

  int received_distinct() const {
    std::vector<int> s = arrivals;
    std::sort(s.begin(), s.end());
    return static_cast<int>(std::unique(s.begin(), s.end()) - s.begin());
  }
  int lost() const { return sent - received_distinct(); }
  int duplicates() const { return static_cast<int>(arrivals.size()) - received_distinct(); }
  // Arrivals that came before some lower sequence number that arrived later, i.e. packets that
  // overtook another.
  int overtakers() const {
    int n = 0;
    for (std::size_t i = 0; i < arrivals.size(); ++i) {
      for (std::size_t j = i + 1; j < arrivals.size(); ++j) {
        if (arrivals[j] < arrivals[i]) {
          ++n;
          break;
        }
      }
    }
    return n;
  }
  // 1 for each sequence number that arrived, 0 for each lost one.
  std::vector<bool> pattern() const {
    std::vector<bool> p(static_cast<std::size_t>(sent), false);
    for (int s : arrivals) {
      if (s >= 0 && s < sent) p[static_cast<std::size_t>(s)] = true;
    }
    return p;
  }
};

// Sends `count` datagrams numbered 0.. from `from` to `to`'s port, `gap` apart (0: as fast as
// the socket takes them), and collects what arrives on a receiver thread reading concurrently.
// Collection ends when every datagram arrived twice over or nothing came for `quiet` after the
// last send (choose it above the link's one-way delay plus jitter).
inline UdpRun udp_run(const patchbay::Node& from, const patchbay::Node& to,
                      const patchbay::Ipv4Address& to_ip, int count, std::chrono::microseconds gap,
                      std::chrono::milliseconds quiet) {
  UdpSocket rx = UdpSocket::open_in(to);
  // As much buffer as the host allows (SO_RCVBUFFORCE needs the initial namespace's
  // CAP_NET_ADMIN): the reader below keeps up, the buffer only absorbs scheduling hiccups.
  int big = 8 << 20;
  ::setsockopt(rx.fd(), SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  UdpSocket tx = UdpSocket::open_in(from);
  const Endpoint dst(boost::asio::ip::address(to_ip), rx.port());
  UdpRun run;
  run.sent = count;
  std::atomic<bool> sending{true};
  std::thread reader([&] {
    while (static_cast<int>(run.arrivals.size()) < 2 * count) {
      std::optional<Datagram> d = rx.receive(quiet);
      if (!d) {
        if (sending) continue;
        break;
      }
      run.arrivals.push_back(std::stoi(d->payload));
    }
  });
  auto next_send = std::chrono::steady_clock::now();
  for (int i = 0; i < count; ++i) {
    if (gap.count() > 0) {
      // Pacing, not waiting for an outcome: the gap is part of the traffic pattern.
      while (std::chrono::steady_clock::now() < next_send) {
      }
      next_send += gap;
    }
    try {
      tx.send_to(dst, std::to_string(i));
    } catch (const std::system_error&) {
      // Refused locally (e.g. the link is down and its routes are gone): a lost datagram.
    }
  }
  sending = false;
  reader.join();
  return run;
}

// What iperf3 -J reported: end.sum_received.bits_per_second and the sender's retransmits.
struct TcpRun {
  double bits_per_second = 0;
  long retransmits = 0;
};

// One iperf3 run from `client` to a one-shot server in `server` (`extra`: e.g. {"-t", "4"},
// or "-R" for server -> client). Waits for the server to exit, so the next run gets the port.
inline TcpRun iperf(const patchbay::Device& client, const patchbay::Device& server,
                    const std::vector<std::string>& extra) {
  using namespace std::chrono_literals;
  patchbay::Process srv = server.spawn_command({"iperf3", "-s", "-1", "-p", "5201"});
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::vector<std::string> cmd = {"iperf3", "-J", "-c", server.ip()->to_string(), "-p", "5201"};
    cmd.insert(cmd.end(), extra.begin(), extra.end());
    patchbay::CommandResult r = client.run_command(patchbay::Command(cmd), 60s);
    if (r.stdout_text.find("Connection refused") != std::string::npos) continue;  // not up yet
    EXPECT_TRUE(r.success()) << r.stdout_text << r.stderr_text;
    TcpRun out;
    auto number_after = [&](const std::string& section, const std::string& key) -> double {
      std::size_t s = r.stdout_text.find("\"" + section + "\"");
      if (s == std::string::npos) return -1;
      std::size_t k = r.stdout_text.find("\"" + key + "\"", s);
      if (k == std::string::npos) return -1;
      return std::stod(r.stdout_text.substr(r.stdout_text.find(':', k) + 1));
    };
    out.bits_per_second = number_after("sum_received", "bits_per_second");
    out.retransmits = static_cast<long>(number_after("sum_sent", "retransmits"));
    if (!srv.wait_for(10s)) srv.kill();
    return out;
  }
  ADD_FAILURE() << "iperf3 server never listened";
  return {};
}

}  // namespace pbtest
