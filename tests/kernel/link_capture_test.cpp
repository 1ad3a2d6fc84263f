// LinkCapture on a real veth pair between two scratch namespaces, A (a0, 10.78.0.1) and
// B (b0, 10.78.0.2), both with IPv6 off so only the test's own traffic (and ARP) crosses. What it
// writes is read back twice: by tcpdump, as a user of the artifacts would, and by read_pcapng for
// what tcpdump does not print (direction flags, original lengths, timestamps).
#include "link_capture.hpp"
#include "../temp_dir.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "capture_ring.hpp"
#include "patchbay/error.hpp"
#include "pcapng_writer.hpp"
#include "route_socket.hpp"
#include "scratch_netns.hpp"
#include "unique_fd.hpp"

namespace patchbay::internal {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kTimeout = 5s;
constexpr std::uint16_t kPortA = 40001;
constexpr std::uint16_t kPortB = 40002;
// Ethernet (14) + IPv4 (20) + UDP (8) in front of every datagram's payload.
constexpr std::size_t kUdpOverhead = 42;

int task_count() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n;
}

std::int64_t realtime_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Output (stdout and stderr) of a shell command run by the calling thread, so in its namespace.
std::string run(const std::string& command) {
  std::string out;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return "popen failed";
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  ::pclose(p);
  return out;
}

int count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (std::size_t pos = text.find(needle); pos != std::string::npos;
       pos = text.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

std::string tcpdump(const std::string& path, const std::string& flags = "") {
  // As root (here: of the test's user namespace) tcpdump switches to its own user after opening
  // the file, which this namespace does not map; in a nested user namespace it is nobody and
  // stays (it warns that it cannot drop set-uid rights it does not have).
  return run("unshare --user tcpdump -r " + path + " -n " + flags);
}

// AF_PACKET sockets bound to `ifindex` in the calling thread's network namespace.
int packet_sockets_on(int ifindex) {
  std::ifstream in("/proc/thread-self/net/packet");
  std::string line;
  std::getline(in, line);  // header
  int n = 0;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string sk, refcnt, type, proto;
    int iface = -1;
    if (fields >> sk >> refcnt >> type >> proto >> iface && iface == ifindex) ++n;
  }
  return n;
}

sockaddr_in inet(const char* ip, std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

// A UDP or TCP socket opened in `ns`, bound to ip:port.
UniqueFd bound_socket(ScratchNetns& ns, int type, const char* ip, std::uint16_t port) {
  return ns.thread().invoke([&] {
    UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
    int buf = 4 << 20;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a = inet(ip, port);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0)
        << std::strerror(errno);
    return fd;
  });
}

void send_to(const UniqueFd& fd, const std::string& payload, const char* ip, std::uint16_t port) {
  sockaddr_in a = inet(ip, port);
  ASSERT_EQ(::sendto(fd.get(), payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&a),
                     sizeof a),
            static_cast<ssize_t>(payload.size()))
      << std::strerror(errno);
}

std::optional<std::string> receive(const UniqueFd& fd, std::chrono::milliseconds timeout) {
  pollfd p{fd.get(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
  char buf[65536];
  ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
  if (n < 0) return std::nullopt;
  return std::string(buf, static_cast<std::size_t>(n));
}

// Datagram `seq` of `len` bytes: "seq=000042 " then filler, so every one is recognisable.
std::string numbered(int seq, std::size_t len) {
  char head[32];
  std::snprintf(head, sizeof head, "seq=%06d ", seq);
  std::string s(head);
  s.resize(len, 'x');
  return s;
}

// The sequence number of a captured frame carrying numbered(), or -1.
int seq_of(const PcapngRecord& p) {
  if (p.data.size() < kUdpOverhead + 10) return -1;
  const std::string head(reinterpret_cast<const char*>(p.data.data()) + kUdpOverhead, 10);
  if (head.compare(0, 4, "seq=") != 0) return -1;
  return std::atoi(head.c_str() + 4);
}

bool is_udp_between_a_and_b(const PcapngRecord& p) {
  if (p.data.size() < kUdpOverhead) return false;
  const unsigned char* d = p.data.data();
  return d[12] == 0x08 && d[13] == 0x00 && d[23] == 17 &&
         ((d[34] << 8 | d[35]) == kPortA || (d[34] << 8 | d[35]) == kPortB);
}

std::uint32_t direction(const PcapngRecord& p) { return p.flags & 3; }
constexpr std::uint32_t kInbound = 1, kOutbound = 2;

using pbtest::TempDir;

class LinkCaptureTest : public ::testing::Test {
 protected:
  LinkCaptureTest() {
    a_.sock().add_veth(VethEnd{"a0", -1, std::nullopt, true, 0, std::nullopt},
                       VethEnd{"b0", b_.fd(), std::nullopt, true, 0, std::nullopt});
    a_.sock().add_address(a_.sock().link_index("a0"), prefix("10.78.0.1"));
    b_.sock().add_address(b_.sock().link_index("b0"), prefix("10.78.0.2"));
    // A veth end drops what it is given until the kernel has attached its qdisc.
    a_.sock().wait_until_oper_up("a0");
    b_.sock().wait_until_oper_up("b0");
  }

  static IpPrefix prefix(const char* address) {
    return IpPrefix{boost::asio::ip::make_address(address), 24};
  }

  UniqueFd socket_on(ScratchNetns& ns, const std::string& ifname) {
    const int ifindex = ns.sock().link_index(ifname);
    return ns.thread().invoke(
        [&] { return open_capture_socket(ifindex, ns.name() + "/" + ifname); });
  }
  int sockets_on_a0() {
    const int ifindex = a_.sock().link_index("a0");
    return a_.thread().invoke([&] { return packet_sockets_on(ifindex); });
  }

  // Waits until the capture has read at least `packets` frames.
  static void wait_for_packets(LinkCapture& cap, const std::string& key, std::uint64_t packets) {
    const Clock::time_point deadline = Clock::now() + kTimeout;
    while (cap.stats(key).packets < packets && Clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_GE(cap.stats(key).packets, packets) << "capture of " << key << " fell behind";
  }

  // `n` datagrams A -> B, each answered B -> A, each waited for: both directions on the wire.
  void exchange(int n, const std::string& tag) {
    for (int i = 0; i < n; ++i) {
      send_to(udp_a_, "pbcap-req-" + tag + std::to_string(i), "10.78.0.2", kPortB);
      std::optional<std::string> req = receive(udp_b_, kTimeout);
      ASSERT_TRUE(req) << "request " << i << " did not arrive";
      send_to(udp_b_, "pbcap-rep-" + tag + std::to_string(i), "10.78.0.1", kPortA);
      ASSERT_TRUE(receive(udp_a_, kTimeout)) << "reply " << i << " did not arrive";
    }
  }

  ScratchNetns a_{"a", ScratchNetns::Ipv6::kOff};
  ScratchNetns b_{"b", ScratchNetns::Ipv6::kOff};
  UniqueFd udp_a_ = bound_socket(a_, SOCK_DGRAM, "10.78.0.1", kPortA);
  UniqueFd udp_b_ = bound_socket(b_, SOCK_DGRAM, "10.78.0.2", kPortB);
  TempDir dir_;
};

TEST_F(LinkCaptureTest, UdpAndPingShowInTcpdumpInBothDirections) {
  LinkCapture cap;
  cap.add("a.a0", socket_on(a_, "a0"),
          {.ring_bytes = 4 << 20, .interface_name = "a0", .interface_description = "scratch a"});
  const std::int64_t t0 = realtime_ns();
  exchange(5, "");
  const std::string ping =
      a_.thread().invoke([] { return run("ping -n -c 3 -i 0.2 -W 2 10.78.0.2"); });
  ASSERT_NE(ping.find("3 received"), std::string::npos) << ping;
  const std::string path = dir_.file("a.a0.pcap");
  cap.flush("a.a0", path);
  const std::int64_t t1 = realtime_ns();

  const std::string out = tcpdump(path, "-A");
  EXPECT_EQ(count(out, "IP 10.78.0.1.40001 > 10.78.0.2.40002: UDP, length 11"), 5) << out;
  EXPECT_EQ(count(out, "IP 10.78.0.2.40002 > 10.78.0.1.40001: UDP, length 11"), 5) << out;
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(count(out, "pbcap-req-" + std::to_string(i)), 1) << out;
    EXPECT_EQ(count(out, "pbcap-rep-" + std::to_string(i)), 1) << out;
  }
  EXPECT_EQ(count(out, "IP 10.78.0.1 > 10.78.0.2: ICMP echo request"), 3) << out;
  EXPECT_EQ(count(out, "IP 10.78.0.2 > 10.78.0.1: ICMP echo reply"), 3) << out;

  const PcapngFile f = read_pcapng(path);
  ASSERT_EQ(f.interfaces.size(), 1u);
  EXPECT_EQ(f.interfaces[0].name, "a0");
  EXPECT_EQ(f.interfaces[0].description, "scratch a");
  int out_udp = 0, in_udp = 0;
  for (const PcapngRecord& p : f.packets) {
    // The kernel's receive time, on the wall clock, for both directions.
    EXPECT_GE(p.timestamp_ns, t0);
    EXPECT_LE(p.timestamp_ns, t1);
    EXPECT_EQ(p.original_length, p.data.size());
    if (!is_udp_between_a_and_b(p)) continue;
    const std::string payload(reinterpret_cast<const char*>(p.data.data()) + kUdpOverhead, 10);
    if (payload == "pbcap-req-") {
      EXPECT_EQ(direction(p), kOutbound);  // A sent it out of a0
      ++out_udp;
    } else if (payload == "pbcap-rep-") {
      EXPECT_EQ(direction(p), kInbound);
      ++in_udp;
    }
  }
  EXPECT_EQ(out_udp, 5);
  EXPECT_EQ(in_udp, 5);

  const CaptureStats st = cap.stats("a.a0");
  EXPECT_GE(st.packets, 16u);  // 10 datagrams, 6 ICMP, ARP
  EXPECT_EQ(st.held_packets, f.packets.size());
  EXPECT_EQ(st.budget_drops, 0u);
  EXPECT_EQ(st.kernel_drops, 0u);
  ASSERT_EQ(f.statistics.size(), 1u);
  EXPECT_EQ(f.statistics[0].user_delivered, f.packets.size());
  EXPECT_EQ(f.statistics[0].os_drop, 0u);
}

TEST_F(LinkCaptureTest, OneThreadCapturesEveryLinkAndGoesWithTheObject) {
  const int tasks_before = task_count();
  {
    LinkCapture cap;
    EXPECT_FALSE(cap.running());
    EXPECT_EQ(task_count(), tasks_before);  // no thread until something is captured
    cap.add("a.a0", socket_on(a_, "a0"), {});
    EXPECT_TRUE(cap.running());
    EXPECT_EQ(task_count(), tasks_before + 1);
    cap.add("b.b0", socket_on(b_, "b0"), {});
    EXPECT_EQ(task_count(), tasks_before + 1);  // the second link shares it

    exchange(3, "");
    cap.flush("a.a0", dir_.file("a.pcap"));
    cap.flush("b.b0", dir_.file("b.pcap"));
    for (const char* side : {"a", "b"}) {
      const std::string out = tcpdump(dir_.file(std::string(side) + ".pcap"));
      EXPECT_EQ(count(out, "IP 10.78.0.1.40001 > 10.78.0.2.40002: UDP, length 11"), 3)
          << side << ":\n"
          << out;
      EXPECT_EQ(count(out, "IP 10.78.0.2.40002 > 10.78.0.1.40001: UDP, length 11"), 3)
          << side << ":\n"
          << out;
    }
    // What left a0 arrived at b0, and the other way round.
    int requests = 0, replies = 0;
    for (const PcapngRecord& p : read_pcapng(dir_.file("b.pcap")).packets) {
      if (!is_udp_between_a_and_b(p)) continue;
      const std::string payload(reinterpret_cast<const char*>(p.data.data()) + kUdpOverhead, 10);
      if (payload == "pbcap-req-") {
        EXPECT_EQ(direction(p), kInbound);
        ++requests;
      } else if (payload == "pbcap-rep-") {
        EXPECT_EQ(direction(p), kOutbound);
        ++replies;
      }
    }
    EXPECT_EQ(requests, 3);
    EXPECT_EQ(replies, 3);
  }
  EXPECT_EQ(task_count(), tasks_before);
  EXPECT_EQ(sockets_on_a0(), 0);
}

TEST_F(LinkCaptureTest, RemoveClosesTheSocketAndForgetsTheLink) {
  LinkCapture cap;
  cap.add("a.a0", socket_on(a_, "a0"), {});
  EXPECT_EQ(sockets_on_a0(), 1);
  EXPECT_EQ(cap.keys(), std::vector<std::string>{"a.a0"});
  cap.remove("a.a0");
  EXPECT_EQ(sockets_on_a0(), 0);  // closed by the time remove() returns
  EXPECT_TRUE(cap.keys().empty());
  try {
    cap.stats("a.a0");
    ADD_FAILURE() << "stats of a removed capture did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    EXPECT_EQ(e.culprit(), "a.a0");
  }
  EXPECT_THROW(cap.flush("a.a0", dir_.file("x.pcap")), Error);
  EXPECT_THROW(cap.remove("a.a0"), Error);
  // The key is free again.
  cap.add("a.a0", socket_on(a_, "a0"), {});
  EXPECT_EQ(sockets_on_a0(), 1);
}

TEST_F(LinkCaptureTest, FlushHoldsEverythingSeenBeforeItAndCaptureGoesOn) {
  LinkCapture cap;
  cap.add("a.a0", socket_on(a_, "a0"), {});
  // Each reply was read by A, so the kernel had handed it to the capture socket first: flush()
  // must contain it without any waiting.
  exchange(1, "first");
  cap.flush("a.a0", dir_.file("1.pcap"));
  exchange(1, "second");
  cap.flush("a.a0", dir_.file("2.pcap"));
  const std::string first = tcpdump(dir_.file("1.pcap"), "-A");
  const std::string second = tcpdump(dir_.file("2.pcap"), "-A");
  EXPECT_EQ(count(first, "pbcap-rep-first0"), 1) << first;
  EXPECT_EQ(count(first, "pbcap-req-second0"), 0) << first;
  EXPECT_EQ(count(second, "pbcap-rep-first0"), 1) << second;
  EXPECT_EQ(count(second, "pbcap-rep-second0"), 1) << second;
}

TEST_F(LinkCaptureTest, RingKeepsOnlyTheLastBudgetBytesOfALongerRun) {
  const std::size_t budget = 1 << 20;
  const std::size_t payload = 1000;
  const int datagrams = 3000;  // ~3 MiB of frames: three times the budget
  LinkCapture cap;
  cap.add("a.a0", socket_on(a_, "a0"), {.ring_bytes = budget});
  exchange(1, "");  // ARP done before the run
  const std::uint64_t before = cap.stats("a.a0").packets;
  // In bursts the socket buffers on the way can hold, so the kernel drops nothing.
  for (int sent = 0; sent < datagrams;) {
    for (int k = 0; k < 100; ++k, ++sent) {
      send_to(udp_a_, numbered(sent, payload), "10.78.0.2", kPortB);
    }
    wait_for_packets(cap, "a.a0", before + sent);
  }
  const std::string path = dir_.file("ring.pcap");
  cap.flush("a.a0", path);
  const CaptureStats st = cap.stats("a.a0");
  ASSERT_EQ(st.kernel_drops, 0u);

  const PcapngFile f = read_pcapng(path);
  std::size_t bytes = 0;
  for (const PcapngRecord& p : f.packets) bytes += p.data.size();
  const std::size_t frame = payload + kUdpOverhead;
  EXPECT_LE(bytes, budget);
  EXPECT_GT(bytes, budget - frame);  // one more would not have fitted
  EXPECT_EQ(bytes, st.held_bytes);
  EXPECT_EQ(f.packets.size(), st.held_packets);
  EXPECT_EQ(st.budget_drops, st.packets - st.held_packets);
  // The newest ones, without a gap, ending with the last one sent.
  ASSERT_FALSE(f.packets.empty());
  const int last = datagrams - 1;
  const int first = last - static_cast<int>(f.packets.size()) + 1;
  for (std::size_t k = 0; k < f.packets.size(); ++k) {
    ASSERT_EQ(seq_of(f.packets[k]), first + static_cast<int>(k)) << "packet " << k;
  }
  ASSERT_EQ(f.statistics.size(), 1u);
  EXPECT_NE(f.statistics[0].comment.find(std::to_string(st.budget_drops) + " older packets"),
            std::string::npos)
      << f.statistics[0].comment;
  // tcpdump agrees on the count.
  EXPECT_EQ(count(tcpdump(path), "UDP, length 1000"), static_cast<int>(f.packets.size()));
}

TEST_F(LinkCaptureTest, StreamingWritesPacketsAsTheyComeUntilTheCap) {
  const std::string path = dir_.file("stream.pcap");
  const std::uint64_t cap_bytes = 64 << 10;
  const std::size_t payload = 1000;
  const int datagrams = 100;  // ~100 KiB: past the cap
  LinkCapture cap;
  cap.add("a.a0", socket_on(a_, "a0"), {.file = path, .max_file_bytes = cap_bytes});
  exchange(1, "");
  const std::uint64_t before = cap.stats("a.a0").packets;
  for (int i = 0; i < datagrams; ++i) send_to(udp_a_, numbered(i, payload), "10.78.0.2", kPortB);
  wait_for_packets(cap, "a.a0", before + datagrams);

  // Brought up to date in place while the capture stays open; and copied elsewhere.
  cap.flush("a.a0", "");
  cap.flush("a.a0", dir_.file("copy.pcap"));
  CaptureStats st = cap.stats("a.a0");
  EXPECT_EQ(st.file_bytes, std::filesystem::file_size(path));
  EXPECT_EQ(std::filesystem::file_size(dir_.file("copy.pcap")), st.file_bytes);
  EXPECT_LE(st.file_bytes, cap_bytes);
  EXPECT_GT(st.budget_drops, 0u);
  EXPECT_EQ(st.held_packets + st.budget_drops, st.packets);
  const PcapngFile open = read_pcapng(path);
  EXPECT_EQ(open.packets.size(), st.held_packets);
  EXPECT_TRUE(open.statistics.empty());  // not closed yet

  cap.remove("a.a0");
  const PcapngFile f = read_pcapng(path);
  EXPECT_LE(std::filesystem::file_size(path), cap_bytes);
  EXPECT_EQ(f.packets.size(), st.held_packets);
  ASSERT_EQ(f.statistics.size(), 1u);  // written on close
  EXPECT_EQ(f.statistics[0].user_delivered, st.held_packets);
  // The start of the run, without a gap.
  int next = 0;
  for (const PcapngRecord& p : f.packets) {
    if (const int seq = seq_of(p); seq >= 0) {
      EXPECT_EQ(seq, next++);
    }
  }
  EXPECT_GT(next, 0);
  EXPECT_LT(next, datagrams);
  EXPECT_EQ(count(tcpdump(path), "UDP, length 1000"), next);
}

TEST_F(LinkCaptureTest, DestructionCompletesStreamedFiles) {
  const std::string path = dir_.file("stream.pcap");
  {
    LinkCapture cap;
    cap.add("a.a0", socket_on(a_, "a0"), {.file = path});
    exchange(2, "");
  }
  EXPECT_EQ(sockets_on_a0(), 0);
  const PcapngFile f = read_pcapng(path);
  ASSERT_EQ(f.statistics.size(), 1u);
  EXPECT_EQ(f.statistics[0].user_delivered, f.packets.size());
  const std::string out = tcpdump(path);
  EXPECT_EQ(count(out, "IP 10.78.0.1.40001 > 10.78.0.2.40002: UDP, length 11"), 2) << out;
  EXPECT_EQ(count(out, "IP 10.78.0.2.40002 > 10.78.0.1.40001: UDP, length 11"), 2) << out;
}

TEST_F(LinkCaptureTest, SnaplenCutsFramesButKeepsTheirOriginalLength) {
  LinkCapture cap;
  cap.add("a.a0", socket_on(a_, "a0"), {.snaplen = 100});
  exchange(1, "");
  send_to(udp_a_, numbered(7, 1000), "10.78.0.2", kPortB);
  ASSERT_TRUE(receive(udp_b_, kTimeout));
  const std::string path = dir_.file("snap.pcap");
  cap.flush("a.a0", path);
  const PcapngFile f = read_pcapng(path);
  ASSERT_EQ(f.interfaces[0].snaplen, 100u);
  int found = 0;
  for (const PcapngRecord& p : f.packets) {
    EXPECT_LE(p.data.size(), 100u);
    if (seq_of(p) == 7) {
      ++found;
      EXPECT_EQ(p.data.size(), 100u);
      EXPECT_EQ(p.original_length, 1000 + kUdpOverhead);
    }
  }
  EXPECT_EQ(found, 1);
  const std::string out = tcpdump(path);
  EXPECT_EQ(count(out, "IP 10.78.0.1.40001 > 10.78.0.2.40002: UDP, length 1000"), 1) << out;
}

TEST_F(LinkCaptureTest, GsoSuperpacketsAreRecordedWholeWithTheirRealLength) {
  constexpr std::uint16_t kPort = 40100;
  const std::size_t total = 4 << 20;
  LinkCapture cap;
  cap.add("a.a0", socket_on(a_, "a0"), {.ring_bytes = 32 << 20});
  UniqueFd listener = bound_socket(b_, SOCK_STREAM, "10.78.0.2", kPort);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  UniqueFd client = a_.thread().invoke([] { return UniqueFd(::socket(AF_INET, SOCK_STREAM, 0)); });
  sockaddr_in to = inet("10.78.0.2", kPort);
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&to), sizeof to), 0)
      << std::strerror(errno);
  UniqueFd server(::accept(listener.get(), nullptr, nullptr));
  ASSERT_TRUE(server.valid());
  const std::int64_t t0 = realtime_ns();
  std::size_t received = 0;
  std::thread reader([&] {
    std::vector<char> buf(1 << 20);
    while (received < total) {
      ssize_t n = ::recv(server.get(), buf.data(), buf.size(), 0);
      if (n <= 0) break;
      received += static_cast<std::size_t>(n);
    }
  });
  const std::string chunk(1 << 16, 'g');
  for (std::size_t sent = 0; sent < total; sent += chunk.size()) {
    ASSERT_EQ(::send(client.get(), chunk.data(), chunk.size(), 0),
              static_cast<ssize_t>(chunk.size()));
  }
  reader.join();
  ASSERT_EQ(received, total);
  const std::string path = dir_.file("tcp.pcap");
  cap.flush("a.a0", path);
  const std::int64_t t1 = realtime_ns();

  const PcapngFile f = read_pcapng(path);
  std::uint32_t largest = 0;
  std::uint64_t data_bytes = 0;
  for (const PcapngRecord& p : f.packets) {
    // Whole: the default snap length keeps a 64 KiB superpacket.
    EXPECT_EQ(p.data.size(), p.original_length);
    // TCP stamps departure times on the monotonic clock; a capture shows wall-clock times.
    EXPECT_GE(p.timestamp_ns, t0 - 1'000'000'000);
    EXPECT_LE(p.timestamp_ns, t1);
    largest = std::max(largest, p.original_length);
    if (direction(p) == kOutbound) data_bytes += p.original_length;
  }
  EXPECT_GT(largest, 1514u) << "no superpacket: were GSO/TSO off on the veth?";
  EXPECT_GE(data_bytes, total);
  EXPECT_EQ(cap.stats("a.a0").kernel_drops, 0u);
}

TEST_F(LinkCaptureTest, FramesTheKernelDroppedAreCountedAndRecordedInTheFile) {
  exchange(1, "");  // ARP settled: from here on only the datagrams below cross a0
  // The socket queues from the moment it is bound, whether or not anyone reads it: with a
  // receive buffer of the kernel's minimum and nobody reading yet, all but the first frame or
  // two of a burst are dropped, deterministically.
  UniqueFd s = socket_on(a_, "a0");
  int tiny = 1;
  ASSERT_EQ(::setsockopt(s.get(), SOL_SOCKET, SO_RCVBUF, &tiny, sizeof tiny), 0);
  const int datagrams = 50;
  for (int i = 0; i < datagrams; ++i) send_to(udp_a_, numbered(i, 1000), "10.78.0.2", kPortB);
  LinkCapture cap;
  cap.add("a.a0", std::move(s), {});
  const std::string path = dir_.file("drops.pcap");
  cap.flush("a.a0", path);
  const CaptureStats st = cap.stats("a.a0");
  EXPECT_EQ(st.packets + st.kernel_drops, static_cast<std::uint64_t>(datagrams));
  EXPECT_GE(st.kernel_drops, static_cast<std::uint64_t>(datagrams) - 4);
  const PcapngFile f = read_pcapng(path);
  EXPECT_EQ(f.packets.size(), st.packets);
  ASSERT_EQ(f.statistics.size(), 1u);
  EXPECT_EQ(f.statistics[0].os_drop, st.kernel_drops);
  EXPECT_EQ(f.statistics[0].filter_accept, st.packets);
}

TEST_F(LinkCaptureTest, BadAddsAreErrorsNamingTheLink) {
  LinkCapture cap;
  try {
    cap.add("a.a0", socket_on(a_, "a0"), {.ring_bytes = 0});
    ADD_FAILURE() << "ring_bytes 0 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_EQ(e.culprit(), "a.a0");
  }
  EXPECT_FALSE(cap.running());  // refused before any thread was started

  cap.add("a.a0", socket_on(a_, "a0"), {});
  try {
    cap.add("a.a0", socket_on(a_, "a0"), {});
    ADD_FAILURE() << "duplicate key accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kAlreadyExists);
    EXPECT_EQ(e.culprit(), "a.a0");
  }
  EXPECT_EQ(sockets_on_a0(), 1);  // the refused socket was closed
  try {
    cap.add("a.other", socket_on(a_, "a0"), {.file = "/nonexistent-dir/x.pcap"});
    ADD_FAILURE() << "uncreatable file accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kKernel);
    EXPECT_EQ(e.culprit(), "a.other");
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/x.pcap"), std::string::npos);
  }
  EXPECT_EQ(cap.keys(), std::vector<std::string>{"a.a0"});
  EXPECT_EQ(sockets_on_a0(), 1);
}

TEST_F(LinkCaptureTest, CaptureSocketOnAMissingInterfaceIsAnErrorNamingIt) {
  try {
    a_.thread().invoke([] { return open_capture_socket(9999, "a/ghost0"); });
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kKernel);
    EXPECT_EQ(e.culprit(), "a/ghost0");
    EXPECT_EQ(e.sys_errno(), ENODEV);
  }
}

}  // namespace
}  // namespace patchbay::internal
