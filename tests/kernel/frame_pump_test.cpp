// FramePump against real devices: A <-veth-> [ma | pump | me <-veth-> ms on br0] <-veth-> B, the
// splice the link emulator makes on a router (link_conditioner.cpp): the router-side veth end `ma`
// is off the bridge, `ms` sits on the bridge in its place, and the pump reads `ma` and `ms`'s peer
// `me` with AF_PACKET. That needs no /dev/net/tun, so it runs for users who cannot open it; one
// test covers the TAP endpoint and skips where /dev/net/tun is closed. Pings are sent from a raw
// ICMP socket opened in A, so no process has to be started.
#include "frame_pump.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "netns.hpp"
#include "patchbay/error.hpp"
#include "route_socket.hpp"
#include "scratch_netns.hpp"
#include "unique_fd.hpp"
#include "worker_thread.hpp"

namespace patchbay::internal {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

int task_count() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n;
}

std::uint16_t icmp_checksum(const unsigned char* p, std::size_t len) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < len; i += 2) sum += (p[i] << 8) | p[i + 1];
  if (len % 2) sum += p[len - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

// Echo requests from a raw ICMP socket living in A.
class Pinger {
 public:
  Pinger(WorkerThread& in_a, const char* target) : id_(static_cast<std::uint16_t>(::getpid())) {
    fd_ = in_a.invoke([] { return UniqueFd(::socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)); });
    EXPECT_TRUE(fd_.valid()) << "raw ICMP socket: " << std::strerror(errno);
    // Room for a whole burst of replies: a drop here would be counted as link loss.
    int buf = 1 << 20;
    EXPECT_EQ(::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf), 0)
        << std::strerror(errno);
    dst_.sin_family = AF_INET;
    ::inet_pton(AF_INET, target, &dst_.sin_addr);
  }

  void send(std::uint16_t seq) {
    unsigned char pkt[64] = {};
    pkt[0] = ICMP_ECHO;
    pkt[4] = static_cast<unsigned char>(id_ >> 8);
    pkt[5] = static_cast<unsigned char>(id_);
    pkt[6] = static_cast<unsigned char>(seq >> 8);
    pkt[7] = static_cast<unsigned char>(seq);
    std::uint16_t sum = icmp_checksum(pkt, sizeof pkt);
    pkt[2] = static_cast<unsigned char>(sum >> 8);
    pkt[3] = static_cast<unsigned char>(sum);
    ASSERT_EQ(
        ::sendto(fd_.get(), pkt, sizeof pkt, 0, reinterpret_cast<sockaddr*>(&dst_), sizeof dst_),
        static_cast<ssize_t>(sizeof pkt))
        << std::strerror(errno);
  }

  // Next echo reply of ours, waiting until `deadline`; its sequence number.
  std::optional<std::uint16_t> receive(Clock::time_point deadline) {
    unsigned char buf[1500];
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left < 0ms) return std::nullopt;
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count()) + 1) <= 0) continue;
      ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
      if (n < 0) continue;
      std::size_t ihl = (buf[0] & 0x0f) * 4u;
      if (static_cast<std::size_t>(n) < ihl + 8) continue;
      const unsigned char* icmp = buf + ihl;
      if (icmp[0] != ICMP_ECHOREPLY || ((icmp[4] << 8) | icmp[5]) != id_) continue;
      return static_cast<std::uint16_t>((icmp[6] << 8) | icmp[7]);
    }
  }

  // Sequential pings; RTTs in ms of those answered within `timeout`.
  std::vector<double> rtts(int count, std::chrono::milliseconds timeout) {
    std::vector<double> out;
    for (int i = 0; i < count; ++i) {
      std::uint16_t seq = next_seq_++;
      Clock::time_point sent = Clock::now();
      send(seq);
      Clock::time_point deadline = sent + timeout;
      while (std::optional<std::uint16_t> got = receive(deadline)) {
        if (*got == seq) {
          out.push_back(std::chrono::duration<double, std::milli>(Clock::now() - sent).count());
          break;
        }
      }
    }
    return out;
  }

  std::uint16_t take_seqs(int n) {
    std::uint16_t first = next_seq_;
    next_seq_ = static_cast<std::uint16_t>(next_seq_ + n);
    return first;
  }

 private:
  UniqueFd fd_;
  std::uint16_t id_;
  std::uint16_t next_seq_ = 1;
  sockaddr_in dst_{};
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? NAN : v[v.size() / 2];
}

IpPrefix prefix(const char* address, int len) {
  return IpPrefix{boost::asio::ip::make_address(address), static_cast<std::uint8_t>(len)};
}

// AF_PACKET sockets bound to `ifindex` in the calling thread's network namespace (the Iface
// column of its packet socket table).
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

class FramePumpTest : public ::testing::Test {
 protected:
  FramePumpTest() {
    int br = m_.sock().add_bridge("br0", std::nullopt, true);
    m_.sock().add_veth(VethEnd{"ma", -1, std::nullopt, true, 0, std::nullopt},
                       VethEnd{"a0", a_.fd(), std::nullopt, true, 0, std::nullopt});
    m_.sock().add_veth(VethEnd{"mb", -1, std::nullopt, true, br, std::nullopt},
                       VethEnd{"b0", b_.fd(), std::nullopt, true, 0, std::nullopt});
    a_.sock().add_address(a_.sock().link_index("a0"), prefix("10.77.0.1", 24));
    b_.sock().add_address(b_.sock().link_index("b0"), prefix("10.77.0.2", 24));
    // A veth end drops what it is given until the kernel has attached its qdisc.
    a_.sock().wait_until_oper_up("a0");
    b_.sock().wait_until_oper_up("b0");
    m_.sock().wait_until_oper_up("ma");
    m_.sock().wait_until_oper_up("mb");
  }

  // The splice: AF_PACKET on ma (side a) and on me (side b), whose peer ms takes ma's place on
  // br0. me has no address and IPv6 off (m_ has it off for every interface), so m's own stack
  // never answers A or B from it.
  FramePump::LinkId splice(FramePump& pump, const LinkModelParams& a_to_b,
                           const LinkModelParams& b_to_a) {
    const int br = m_.sock().link_index("br0");
    m_.sock().add_veth(VethEnd{"ms", -1, std::nullopt, false, br, std::nullopt},
                       VethEnd{"me", -1, std::nullopt, false, 0, std::nullopt});
    UniqueFd a_side = m_.thread().invoke([this] { return open_packet_socket(ma(), "ma"); });
    UniqueFd b_side = m_.thread().invoke([this] { return open_packet_socket(me(), "me"); });
    m_.sock().set_link_up(me(), true);
    m_.sock().set_link_up(m_.sock().link_index("ms"), true);
    m_.sock().wait_until_oper_up("me");
    m_.sock().wait_until_oper_up("ms");
    return pump.add_link(std::move(a_side), std::move(b_side), a_to_b, b_to_a, 42);
  }

  // The TAP form: AF_PACKET on ma (side a), a TAP device tp0 on br0 (side b).
  FramePump::LinkId splice_tap(FramePump& pump) {
    UniqueFd packet = m_.thread().invoke([this] { return open_packet_socket(ma(), "ma"); });
    UniqueFd tap = m_.thread().invoke([] { return open_tap("tp0", "ma"); });
    const int tp = m_.sock().link_index("tp0");
    m_.sock().set_master(tp, m_.sock().link_index("br0"));
    // No wait for operstate UP: a TAP device reports UNKNOWN.
    m_.sock().set_link_up(tp, true);
    return pump.add_link(std::move(packet), std::move(tap), LinkModelParams{}, LinkModelParams{},
                         42);
  }

  int ma() { return m_.sock().link_index("ma"); }
  int me() { return m_.sock().link_index("me"); }
  // Packet sockets on the splice's two ends, as m's kernel lists them.
  std::pair<int, int> splice_sockets() {
    return m_.thread().invoke(
        [this] { return std::pair<int, int>(packet_sockets_on(ma()), packet_sockets_on(me())); });
  }

  ScratchNetns a_{"a", ScratchNetns::Ipv6::kOff};
  ScratchNetns b_{"b", ScratchNetns::Ipv6::kOff};
  ScratchNetns m_{"m", ScratchNetns::Ipv6::kOff};
};

constexpr auto kTimeout = 1s;

TEST_F(FramePumpTest, ZeroDelayAddsLessThanAMillisecondOfRtt) {
  FramePump pump;
  FramePump::LinkId id = splice(pump, LinkModelParams{}, LinkModelParams{});
  Pinger ping(a_.thread(), "10.77.0.2");
  std::vector<double> rtts = ping.rtts(30, kTimeout);
  ASSERT_EQ(rtts.size(), 30u);
  EXPECT_LT(median(rtts), 1.0);
  // They did cross the pump (A and B share no other path).
  EXPECT_GE(pump.stats(id).a_to_b.frames_out, 30u);
  EXPECT_GE(pump.stats(id).b_to_a.frames_out, 30u);
  std::printf("0 ms each way: median RTT %.3f ms\n", median(rtts));
}

TEST_F(FramePumpTest, TenMsEachWayGivesTwentyMsRtt) {
  const auto one_way = 10ms;
  FramePump pump;
  splice(pump, LinkModelParams{.latency = one_way}, LinkModelParams{.latency = one_way});
  Pinger ping(a_.thread(), "10.77.0.2");
  ping.rtts(1, kTimeout);  // ARP: its own round trips would skew the first sample
  std::vector<double> rtts = ping.rtts(30, kTimeout);
  ASSERT_EQ(rtts.size(), 30u);
  const double want = 2 * std::chrono::duration<double, std::milli>(one_way).count();
  EXPECT_NEAR(median(rtts), want, std::max(0.5, 0.05 * want));
  std::printf("10 ms each way: median RTT %.3f ms (min %.3f, max %.3f)\n", median(rtts),
              *std::min_element(rtts.begin(), rtts.end()),
              *std::max_element(rtts.begin(), rtts.end()));
}

TEST_F(FramePumpTest, OneWayLossDropsTheConfiguredShareOfPings) {
  const double loss_pct = 20;
  const int count = 400;
  FramePump pump;
  FramePump::LinkId id = splice(pump, LinkModelParams{}, LinkModelParams{});
  Pinger ping(a_.thread(), "10.77.0.2");
  ASSERT_EQ(ping.rtts(2, kTimeout).size(), 2u);  // ARP settled while lossless
  pump.set_params(id, LinkModelParams{.loss_pct = loss_pct}, LinkModelParams{});

  std::uint16_t first = ping.take_seqs(count);
  std::vector<bool> answered(count, false);
  int received = 0;
  // Bursts small enough for any socket buffer on the way (a drop there would look like loss),
  // each collected until every reply the pump delivered has arrived.
  const int burst = 40;
  for (int sent = 0; sent < count; sent += burst) {
    const FramePump::LinkStats before = pump.stats(id);
    const int received_before = received;
    const int n = std::min(burst, count - sent);
    for (int i = sent; i < sent + n; ++i) ping.send(static_cast<std::uint16_t>(first + i));
    const Clock::time_point deadline = Clock::now() + kTimeout;
    for (;;) {
      const FramePump::LinkStats now = pump.stats(id);
      const std::uint64_t requests_in = now.a_to_b.frames_in - before.a_to_b.frames_in;
      const std::uint64_t requests_out = now.a_to_b.frames_out - before.a_to_b.frames_out;
      const std::uint64_t replies_out = now.b_to_a.frames_out - before.b_to_a.frames_out;
      if (requests_in >= static_cast<std::uint64_t>(n) && replies_out >= requests_out &&
          static_cast<std::uint64_t>(received - received_before) >= replies_out) {
        break;  // every request crossed (or was dropped), every reply is in
      }
      std::optional<std::uint16_t> seq = ping.receive(std::min(deadline, Clock::now() + 5ms));
      if (!seq) {
        if (Clock::now() >= deadline) break;
        continue;
      }
      int i = static_cast<std::uint16_t>(*seq - first);
      if (i < count && !answered[i]) {
        answered[i] = true;
        ++received;
      }
    }
  }
  const int lost = count - received;
  const double p = loss_pct / 100;
  const double half_width = 2.576 * std::sqrt(count * p * (1 - p));  // 99 %, normal approx.
  EXPECT_GE(lost, count * p - half_width);
  EXPECT_LE(lost, count * p + half_width);
  FramePump::LinkStats s = pump.stats(id);
  EXPECT_EQ(s.b_to_a.model_drops, 0u);  // the reverse direction stays lossless
  EXPECT_GE(s.a_to_b.model_drops, static_cast<std::uint64_t>(lost));
  std::printf("20 %% one way: lost %d of %d (99 %% interval %.1f..%.1f)\n", lost, count,
              count * p - half_width, count * p + half_width);
}

TEST_F(FramePumpTest, SetParamsChangesTheDelayOfLaterPackets) {
  FramePump pump;
  FramePump::LinkId id = splice(pump, LinkModelParams{}, LinkModelParams{});
  Pinger ping(a_.thread(), "10.77.0.2");
  ping.rtts(1, kTimeout);
  std::vector<double> before = ping.rtts(10, kTimeout);
  ASSERT_EQ(before.size(), 10u);
  EXPECT_LT(median(before), 1.0);

  const auto one_way = 5ms;
  pump.set_params(id, LinkModelParams{.latency = one_way}, LinkModelParams{.latency = one_way});
  std::vector<double> after = ping.rtts(10, kTimeout);
  ASSERT_EQ(after.size(), 10u);
  const double want = 2 * std::chrono::duration<double, std::milli>(one_way).count();
  EXPECT_GE(*std::min_element(after.begin(), after.end()), want);  // every one, the first too
  EXPECT_NEAR(median(after), want, std::max(0.5, 0.05 * want));
}

TEST_F(FramePumpTest, RemoveLinkStopsForwardingAndClosesBothPacketSockets) {
  FramePump pump;
  FramePump::LinkId id = splice(pump, LinkModelParams{}, LinkModelParams{});
  EXPECT_EQ(splice_sockets(), std::make_pair(1, 1));
  Pinger ping(a_.thread(), "10.77.0.2");
  ASSERT_EQ(ping.rtts(2, kTimeout).size(), 2u);
  pump.remove_link(id);
  EXPECT_EQ(splice_sockets(), std::make_pair(0, 0));  // closed by the time remove_link returns
  EXPECT_TRUE(ping.rtts(1, 200ms).empty());
  try {
    pump.set_params(id, LinkModelParams{}, LinkModelParams{});
    ADD_FAILURE() << "set_params on a removed link did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound) << e.what();
  }
}

// UDP datagrams from A to B carry a partial checksum through the pump (veth checksum offload):
// a flipped bit must still fail B's checksum, so the pump has to complete it before corrupting.
TEST_F(FramePumpTest, CorruptedDatagramsFailTheReceiversChecksum) {
  FramePump pump;
  FramePump::LinkId id = splice(pump, LinkModelParams{}, LinkModelParams{});
  UniqueFd rx = b_.thread().invoke([] {
    UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(5000);
    ::inet_pton(AF_INET, "10.77.0.2", &addr.sin_addr);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    return fd;
  });
  UniqueFd tx = a_.thread().invoke([] {
    UniqueFd fd(::socket(AF_INET, SOCK_DGRAM, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(5000);
    ::inet_pton(AF_INET, "10.77.0.2", &addr.sin_addr);
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    return fd;
  });
  auto send = [&](char tag) {
    std::string payload(400, tag);  // most of the frame: most flipped bits land in the payload
    ASSERT_EQ(::send(tx.get(), payload.data(), payload.size(), 0),
              static_cast<ssize_t>(payload.size()));
  };
  // Datagrams B received until one tagged `last` (which arrives behind all earlier ones).
  auto receive_until = [&](char last) {
    std::vector<std::string> got;
    const Clock::time_point deadline = Clock::now() + kTimeout;
    while (Clock::now() < deadline) {
      pollfd p{rx.get(), POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      char buf[1500];
      ssize_t n = ::recv(rx.get(), buf, sizeof buf, 0);
      if (n <= 0) continue;
      got.emplace_back(buf, static_cast<std::size_t>(n));
      if (buf[0] == last) break;
    }
    return got;
  };

  send('w');  // resolves ARP while the link is clean
  ASSERT_EQ(receive_until('w'), std::vector<std::string>{std::string(400, 'w')});

  const int corrupted = 50;
  pump.set_params(id, LinkModelParams{.corrupt_pct = 100}, LinkModelParams{});
  for (int i = 0; i < corrupted; ++i) send('c');
  // The corrupted frames were delivered, not dropped: the receiver's checksum must reject them.
  Clock::time_point deadline = Clock::now() + kTimeout;
  while (pump.stats(id).a_to_b.frames_out < 1 + corrupted && Clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_GE(pump.stats(id).a_to_b.frames_out, 1u + corrupted);
  pump.set_params(id, LinkModelParams{}, LinkModelParams{});
  send('z');
  std::vector<std::string> got = receive_until('z');
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), std::string(400, 'z'));
  got.pop_back();
  // A flip in the source MAC (48 of the frame's ~3500 bits) is harmless and gets through;
  // nothing corrupted may.
  EXPECT_LE(got.size(), corrupted / 10u);
  for (const std::string& d : got) EXPECT_EQ(d, std::string(400, 'c'));
}

TEST_F(FramePumpTest, DestructorJoinsTheLoopAndDropsHeldFrames) {
  const int tasks_before = task_count();
  const auto one_way = 2s;  // longer than the test waits: frames are still held at the end
  Clock::time_point start;
  {
    FramePump pump;
    EXPECT_EQ(task_count(), tasks_before + 1);
    FramePump::LinkId id =
        splice(pump, LinkModelParams{.latency = one_way}, LinkModelParams{.latency = one_way});
    Pinger ping(a_.thread(), "10.77.0.2");
    ping.send(1);  // triggers ARP, held by the pump
    // Wait until the pump holds a frame (observable through its counters).
    Clock::time_point deadline = Clock::now() + kTimeout;
    while (pump.stats(id).a_to_b.frames_in == 0 && Clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_GT(pump.stats(id).a_to_b.frames_in, 0u);
    EXPECT_EQ(pump.stats(id).a_to_b.frames_out, 0u);
    start = Clock::now();
  }
  EXPECT_LT(Clock::now() - start, one_way);  // did not wait for held frames
  EXPECT_EQ(task_count(), tasks_before);
  EXPECT_EQ(splice_sockets(), std::make_pair(0, 0));
}

// TAP devices need /dev/net/tun, which some machines keep root-only (0600) even for a user that
// owns its namespaces; the veth splice above is what runs there.
TEST_F(FramePumpTest, TapEndpointForwardsAndItsDeviceGoesAwayWithItsFd) {
  const int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    GTEST_SKIP() << "cannot open /dev/net/tun: " << std::strerror(errno)
                 << " (TAP devices unavailable to this user)";
  }
  ::close(fd);
  FramePump pump;
  FramePump::LinkId id = splice_tap(pump);
  Pinger ping(a_.thread(), "10.77.0.2");
  ASSERT_EQ(ping.rtts(2, kTimeout).size(), 2u);
  EXPECT_GE(pump.stats(id).b_to_a.frames_out, 2u);  // the replies came out of the TAP
  pump.remove_link(id);
  EXPECT_THROW(m_.sock().link_index("tp0"), Error);  // the TAP went with its fd
  EXPECT_TRUE(ping.rtts(1, 200ms).empty());
}

}  // namespace
}  // namespace patchbay::internal
