// Link conditions as qdiscs: the netlink messages (decoded here attribute by attribute, with
// expected numbers worked out by hand from tc's rules), the capability probe, and the layouts on
// a real kernel. Tests that need sch_netem skip with the reason on kernels without it; the
// rate-only layout (tbf at the root) runs everywhere.
#include "qdisc_netem.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/netem.h>
#include <netlink/route/qdisc/tbf.h>
#include <netlink/route/tc.h>
#include <netlink/socket.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "netns.hpp"
#include "patchbay/error.hpp"
#include "route_socket.hpp"
#include "scratch_netns.hpp"
#include "unique_fd.hpp"
#include "worker_thread.hpp"

extern char** environ;

namespace patchbay::internal {
namespace {

using std::chrono::duration;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr std::uint32_t kU32Max = std::numeric_limits<std::uint32_t>::max();
constexpr std::uint32_t kTicksPerMs = 15'625;  // 1 ms / 64 ns

// ---------------------------------------------------------------------------------------------
// Decoding a built message

struct Decoded {
  int type = 0;
  int flags = 0;
  tcmsg tcm{};
  std::string kind;  // "" if no TCA_KIND
  bool has_options = false;
  // netem
  tc_netem_qopt netem{};
  std::optional<tc_netem_corr> corr;
  std::optional<tc_netem_reorder> reorder;
  std::optional<tc_netem_corrupt> corrupt;
  std::optional<std::int64_t> latency64, jitter64;
  // tbf
  std::optional<tc_tbf_qopt> tbf;
  std::optional<std::uint32_t> tbf_burst;
  std::optional<std::uint64_t> tbf_rate64;
  bool tbf_has_rtab = false;
};

template <class T>
std::optional<T> struct_attr(nlattr* a) {
  if (a == nullptr || nla_len(a) < static_cast<int>(sizeof(T))) return std::nullopt;
  T out{};
  std::memcpy(&out, nla_data(a), sizeof out);
  return out;
}

Decoded decode(const QdiscRequest& r) {
  Decoded d;
  nlmsghdr* hdr = nlmsg_hdr(r.msg.get());
  d.type = hdr->nlmsg_type;
  d.flags = hdr->nlmsg_flags;
  std::memcpy(&d.tcm, nlmsg_data(hdr), sizeof d.tcm);
  nlattr* tb[TCA_MAX + 1] = {};
  EXPECT_EQ(nlmsg_parse(hdr, sizeof(tcmsg), tb, TCA_MAX, nullptr), 0);
  if (tb[TCA_KIND] != nullptr) d.kind = nla_get_string(tb[TCA_KIND]);
  nlattr* opts = tb[TCA_OPTIONS];
  d.has_options = opts != nullptr;
  if (opts == nullptr) return d;
  if (d.kind == "netem") {
    // A tc_netem_qopt, then TCA_NETEM_* attributes, all inside TCA_OPTIONS' length.
    auto qopt = struct_attr<tc_netem_qopt>(opts);
    EXPECT_TRUE(qopt.has_value());
    if (qopt) d.netem = *qopt;
    const int skip = NLA_ALIGN(sizeof(tc_netem_qopt));
    nlattr* ntb[TCA_NETEM_MAX + 1] = {};
    if (nla_len(opts) > skip) {
      EXPECT_EQ(nla_parse(ntb, TCA_NETEM_MAX,
                          reinterpret_cast<nlattr*>(static_cast<char*>(nla_data(opts)) + skip),
                          nla_len(opts) - skip, nullptr),
                0);
    }
    d.corr = struct_attr<tc_netem_corr>(ntb[TCA_NETEM_CORR]);
    d.reorder = struct_attr<tc_netem_reorder>(ntb[TCA_NETEM_REORDER]);
    d.corrupt = struct_attr<tc_netem_corrupt>(ntb[TCA_NETEM_CORRUPT]);
    d.latency64 = struct_attr<std::int64_t>(ntb[TCA_NETEM_LATENCY64]);
    d.jitter64 = struct_attr<std::int64_t>(ntb[TCA_NETEM_JITTER64]);
    // Nothing we do not set: no loss model, rate, slot, ECN or distribution.
    for (int t : {TCA_NETEM_LOSS, TCA_NETEM_RATE, TCA_NETEM_ECN, TCA_NETEM_SLOT,
                  TCA_NETEM_DELAY_DIST, TCA_NETEM_RATE64}) {
      EXPECT_EQ(ntb[t], nullptr) << "unexpected TCA_NETEM attribute " << t;
    }
  } else if (d.kind == "tbf") {
    nlattr* ttb[TCA_TBF_MAX + 1] = {};
    EXPECT_EQ(nla_parse_nested(ttb, TCA_TBF_MAX, opts, nullptr), 0);
    d.tbf = struct_attr<tc_tbf_qopt>(ttb[TCA_TBF_PARMS]);
    d.tbf_burst = struct_attr<std::uint32_t>(ttb[TCA_TBF_BURST]);
    d.tbf_rate64 = struct_attr<std::uint64_t>(ttb[TCA_TBF_RATE64]);
    d.tbf_has_rtab = ttb[TCA_TBF_RTAB] != nullptr;
  }
  return d;
}

constexpr int kReplaceFlags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
constexpr int kDeleteFlags = NLM_F_REQUEST | NLM_F_ACK;

void expect_netem_root(const Decoded& d, int ifindex) {
  EXPECT_EQ(d.type, RTM_NEWQDISC);
  EXPECT_EQ(d.flags, kReplaceFlags);  // replace in one request: no NLM_F_EXCL, no delete first
  EXPECT_EQ(d.kind, "netem");
  EXPECT_EQ(d.tcm.tcm_family, AF_UNSPEC);
  EXPECT_EQ(d.tcm.tcm_ifindex, ifindex);
  EXPECT_EQ(d.tcm.tcm_parent, TC_H_ROOT);
  EXPECT_EQ(d.tcm.tcm_handle, 0x10000u);  // 1:
  ASSERT_TRUE(d.has_options);
}

void expect_tbf(const Decoded& d, std::uint64_t rate, std::uint32_t burst, std::uint32_t limit) {
  EXPECT_EQ(d.type, RTM_NEWQDISC);
  EXPECT_EQ(d.flags, kReplaceFlags);
  EXPECT_EQ(d.kind, "tbf");
  ASSERT_TRUE(d.tbf.has_value());
  EXPECT_EQ(d.tbf->rate.rate, static_cast<std::uint32_t>(std::min<std::uint64_t>(rate, kU32Max)));
  EXPECT_EQ(d.tbf->rate.linklayer, TC_LINKLAYER_ETHERNET);  // so no rate table is needed
  EXPECT_FALSE(d.tbf_has_rtab);
  EXPECT_EQ(d.tbf->peakrate.rate, 0u);
  EXPECT_EQ(d.tbf->limit, limit);
  ASSERT_TRUE(d.tbf_burst.has_value());
  EXPECT_EQ(*d.tbf_burst, burst);
  // buffer = time to send one burst at the rate, in 64 ns ticks.
  const double buffer_ticks = static_cast<double>(burst) / static_cast<double>(rate) * 1e9 / 64;
  EXPECT_NEAR(d.tbf->buffer, std::min(buffer_ticks, static_cast<double>(kU32Max)), 1.0);
  if (rate > kU32Max) {
    ASSERT_TRUE(d.tbf_rate64.has_value());
    EXPECT_EQ(*d.tbf_rate64, rate);
  } else {
    EXPECT_FALSE(d.tbf_rate64.has_value());
  }
}

NetemParams params(std::uint32_t rate_kbit, double loss, std::uint32_t latency,
                   std::uint32_t jitter, double reorder, double duplicate, double corrupt,
                   int mtu = 1500) {
  return NetemParams{LinkLimits{rate_kbit, loss, latency, jitter, reorder, duplicate, corrupt},
                     mtu};
}

// ---------------------------------------------------------------------------------------------
// Messages

TEST(QdiscNetemMessages, WifiBadBuildsNetemRootAndTbfChildWithTcUnits) {
  // The WifiBad preset: 40 ms ± 15 ms, 2 % loss, 20 000 kbit/s.
  auto requests = build_netem_messages(7, params(20'000, 2, 40, 15, 0, 0, 0));
  ASSERT_EQ(requests.size(), 2u);

  Decoded netem = decode(requests[0]);
  expect_netem_root(netem, 7);
  EXPECT_EQ(netem.netem.latency, 40u * kTicksPerMs);  // 625000 ticks
  EXPECT_EQ(netem.netem.jitter, 15u * kTicksPerMs);
  EXPECT_EQ(netem.netem.loss, 85'899'346u);  // rint(0.02 * (2^32 - 1))
  EXPECT_EQ(netem.netem.duplicate, 0u);
  EXPECT_EQ(netem.netem.gap, 0u);
  // 2.5 MB/s x 55 ms = 137.5 kB = 92 packets: netem's default of 1000 stays.
  EXPECT_EQ(netem.netem.limit, 1000u);
  EXPECT_FALSE(netem.latency64.has_value());
  EXPECT_FALSE(netem.jitter64.has_value());

  Decoded tbf = decode(requests[1]);
  EXPECT_EQ(tbf.tcm.tcm_ifindex, 7);
  EXPECT_EQ(tbf.tcm.tcm_parent, 0x10001u);   // 1:1, netem's class
  EXPECT_EQ(tbf.tcm.tcm_handle, 0x100000u);  // 10:
  // 20 000 kbit/s = 2 500 000 B/s; burst max(2 x 1500, 5 ms x rate = 12 500);
  // limit 400 ms x rate + burst.
  expect_tbf(tbf, 2'500'000, 12'500, 1'000'000 + 12'500);
  EXPECT_NEAR(tbf.tbf->buffer, 5u * kTicksPerMs, 1.0);
  EXPECT_FALSE(requests[1].absent_ok);
}

TEST(QdiscNetemMessages, ReorderDuplicateAndCorruptAreScaledProbabilities) {
  auto requests = build_netem_messages(3, params(0, 1.5, 10, 0, 25, 0.5, 0.1));
  Decoded d = decode(requests[0]);
  expect_netem_root(d, 3);
  EXPECT_EQ(d.netem.latency, 10u * kTicksPerMs);
  EXPECT_EQ(d.netem.jitter, 0u);
  EXPECT_EQ(d.netem.loss, 64'424'509u);       // rint(0.015 * (2^32 - 1))
  EXPECT_EQ(d.netem.duplicate, 21'474'836u);  // 0.5 %
  EXPECT_EQ(d.netem.gap, 1u);                 // as tc: reordering sets gap 1
  ASSERT_TRUE(d.reorder.has_value());
  EXPECT_EQ(d.reorder->probability, 1'073'741'824u);  // 25 %
  EXPECT_EQ(d.reorder->correlation, 0u);
  ASSERT_TRUE(d.corrupt.has_value());
  EXPECT_EQ(d.corrupt->probability, 4'294'967u);  // 0.1 %
  EXPECT_EQ(d.corrupt->correlation, 0u);
  ASSERT_TRUE(d.corr.has_value());
  EXPECT_EQ(d.corr->delay_corr, 0u);
  EXPECT_EQ(d.corr->loss_corr, 0u);
  EXPECT_EQ(d.corr->dup_corr, 0u);
}

TEST(QdiscNetemMessages, AllZeroStillSendsExplicitZerosAndDropsAnyRateChild) {
  auto requests = build_netem_messages(4, params(0, 0, 0, 0, 0, 0, 0));
  ASSERT_EQ(requests.size(), 2u);
  Decoded d = decode(requests[0]);
  expect_netem_root(d, 4);
  EXPECT_EQ(d.netem.latency, 0u);
  EXPECT_EQ(d.netem.jitter, 0u);
  EXPECT_EQ(d.netem.loss, 0u);
  EXPECT_EQ(d.netem.duplicate, 0u);
  EXPECT_EQ(d.netem.gap, 0u);
  EXPECT_EQ(d.netem.limit, 1000u);
  // The kernel keeps reorder/corrupt/correlation of an existing netem when the attribute is
  // missing; a replace to "none" must carry the zeros.
  ASSERT_TRUE(d.reorder.has_value());
  EXPECT_EQ(d.reorder->probability, 0u);
  ASSERT_TRUE(d.corrupt.has_value());
  EXPECT_EQ(d.corrupt->probability, 0u);
  ASSERT_TRUE(d.corr.has_value());

  Decoded del = decode(requests[1]);
  EXPECT_EQ(del.type, RTM_DELQDISC);
  EXPECT_EQ(del.flags, kDeleteFlags);
  EXPECT_EQ(del.tcm.tcm_ifindex, 4);
  EXPECT_EQ(del.tcm.tcm_parent, 0x10001u);
  EXPECT_EQ(del.tcm.tcm_handle, 0u);  // whatever child is there
  EXPECT_EQ(del.kind, "");
  EXPECT_TRUE(requests[1].absent_ok);
}

TEST(QdiscNetemMessages, NetemLimitCoversTheBytesInFlightAtTheRate) {
  // 1 Gbit/s = 125 MB/s held 100 ms = 12.5 MB = 8333.3 packets of 1500 bytes.
  auto requests = build_netem_messages(2, params(1'000'000, 0, 100, 0, 0, 0, 0));
  EXPECT_EQ(decode(requests[0]).netem.limit, 8334u);
  // Jitter holds packets longer: 100 + 20 ms -> 15 MB = 10000 packets.
  requests = build_netem_messages(2, params(1'000'000, 0, 100, 20, 0, 0, 0));
  EXPECT_EQ(decode(requests[0]).netem.limit, 10'000u);
  // Jumbo frames: fewer, larger packets.
  requests = build_netem_messages(2, params(1'000'000, 0, 100, 0, 0, 0, 0, 9000));
  EXPECT_EQ(decode(requests[0]).netem.limit, 1389u);
  Decoded tbf = decode(requests[1]);
  expect_tbf(tbf, 125'000'000, 625'000, 50'000'000 + 625'000);
}

TEST(QdiscNetemMessages, SlowRatesGetATwoFrameBurst) {
  // 1000 kbit/s: 5 ms is 625 bytes, below one frame; the burst is 2 x MTU.
  auto requests = build_netem_messages(2, params(1000, 0, 10, 0, 0, 0, 0));
  expect_tbf(decode(requests[1]), 125'000, 3000, 50'000 + 3000);
  requests = build_netem_messages(2, params(1000, 0, 10, 0, 0, 0, 0, 9000));
  expect_tbf(decode(requests[1]), 125'000, 18'000, 50'000 + 18'000);
  // An unknown MTU (0) counts as 1500.
  requests = build_netem_messages(2, params(1000, 0, 10, 0, 0, 0, 0, 0));
  expect_tbf(decode(requests[1]), 125'000, 3000, 50'000 + 3000);
}

TEST(QdiscNetemMessages, RatesBeyond32BitsOfBytesUseRate64) {
  // 40 Gbit/s = 5e9 B/s, more than the 32-bit rate field holds.
  auto requests = build_netem_messages(2, params(40'000'000, 0, 1, 0, 0, 0, 0));
  Decoded tbf = decode(requests[1]);
  expect_tbf(tbf, 5'000'000'000, 25'000'000, 2'000'000'000 + 25'000'000);
  EXPECT_EQ(tbf.tbf->rate.rate, kU32Max);
  // The largest rate: the limit saturates instead of wrapping.
  requests = build_netem_messages(2, params(kU32Max, 0, 1, 0, 0, 0, 0));
  tbf = decode(requests[1]);
  ASSERT_TRUE(tbf.tbf_rate64.has_value());
  EXPECT_EQ(*tbf.tbf_rate64, std::uint64_t{kU32Max} * 125);
  EXPECT_EQ(tbf.tbf->limit, kU32Max);
}

TEST(QdiscNetemMessages, DelaysBeyond32BitsOfTicksUseLatency64) {
  // 300 s = 4.6875e9 ticks: the 32-bit field saturates and the exact value goes in ns.
  auto requests = build_netem_messages(2, params(0, 0, 300'000, 1000, 0, 0, 0));
  Decoded d = decode(requests[0]);
  EXPECT_EQ(d.netem.latency, kU32Max);
  ASSERT_TRUE(d.latency64.has_value());
  EXPECT_EQ(*d.latency64, 300'000'000'000);
  EXPECT_EQ(d.netem.jitter, 1000u * kTicksPerMs);
  EXPECT_FALSE(d.jitter64.has_value());
}

TEST(QdiscNetemMessages, PercentagesRoundToThreeDecimalsLikeUpstream) {
  EXPECT_EQ(netem_probability(0), 0u);
  EXPECT_EQ(netem_probability(100), kU32Max);
  EXPECT_EQ(netem_probability(50), 2'147'483'648u);     // rint(2147483647.5), ties to even
  EXPECT_EQ(netem_probability(12.3456), 530'256'662u);  // as "12.346%"
  EXPECT_EQ(netem_probability(0.0004), 0u);             // "0.000%"
  EXPECT_EQ(netem_probability(99.9999), kU32Max);       // "100.000%"
  auto requests = build_netem_messages(2, params(0, 100, 0, 0, 0, 100, 100));
  Decoded d = decode(requests[0]);
  EXPECT_EQ(d.netem.loss, kU32Max);
  EXPECT_EQ(d.netem.duplicate, kU32Max);
  EXPECT_EQ(d.corrupt->probability, kU32Max);
}

TEST(QdiscNetemMessages, RateOnlyLayoutIsOneTbfAtTheRoot) {
  auto requests = build_tbf_root_messages(9, params(8000, 0, 0, 0, 0, 0, 0));
  ASSERT_EQ(requests.size(), 1u);
  Decoded d = decode(requests[0]);
  EXPECT_EQ(d.tcm.tcm_ifindex, 9);
  EXPECT_EQ(d.tcm.tcm_parent, TC_H_ROOT);
  EXPECT_EQ(d.tcm.tcm_handle, 0x20000u);  // 2:, not netem's 1:, so switching grafts atomically
  expect_tbf(d, 1'000'000, 5000, 400'000 + 5000);
}

TEST(QdiscNetemMessages, RateOnlyLayoutRefusesConditionsItCannotCarry) {
  for (const NetemParams& p : {params(0, 0, 0, 0, 0, 0, 0), params(8000, 1, 0, 0, 0, 0, 0),
                               params(8000, 0, 5, 0, 0, 0, 0)}) {
    try {
      build_tbf_root_messages(2, p);
      ADD_FAILURE() << "no error for " << p.limits;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
    }
  }
}

TEST(QdiscNetemMessages, InvalidPercentagesAndReorderWithoutDelayAreRejected) {
  struct Case {
    NetemParams p;
    const char* field;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const Case cases[] = {
      {params(0, 101, 0, 0, 0, 0, 0), "loss_pct"},
      {params(0, -1, 0, 0, 0, 0, 0), "loss_pct"},
      {params(0, nan, 0, 0, 0, 0, 0), "loss_pct"},
      {params(0, 0, 10, 0, inf, 0, 0), "reorder_pct"},
      {params(0, 0, 0, 0, 0, 100.5, 0), "duplicate_pct"},
      {params(0, 0, 0, 0, 0, 0, -0.1), "corrupt_pct"},
      {params(0, 0, 0, 0, 10, 0, 0), "reorder_pct"},  // no delay to reorder against
  };
  for (const Case& c : cases) {
    try {
      build_netem_messages(2, c.p);
      ADD_FAILURE() << "no error for " << c.field;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
      EXPECT_EQ(e.culprit(), c.field) << e.what();
      EXPECT_NE(std::string(e.what()).find(c.field), std::string::npos) << e.what();
    }
  }
  // Jitter alone is a delay netem can reorder against.
  EXPECT_NO_THROW(build_netem_messages(2, params(0, 0, 0, 5, 10, 0, 0)));
}

TEST(QdiscNetemMessages, ConditionClassification) {
  EXPECT_TRUE(params(0, 0, 0, 0, 0, 0, 0, 9000).limits.is_empty());
  EXPECT_FALSE(params(1, 0, 0, 0, 0, 0, 0).limits.is_empty());
  EXPECT_FALSE(needs_netem(params(5000, 0, 0, 0, 0, 0, 0).limits));
  EXPECT_TRUE(needs_netem(params(5000, 0.001, 0, 0, 0, 0, 0).limits));
  EXPECT_TRUE(needs_netem(params(0, 0, 0, 1, 0, 0, 0).limits));
  EXPECT_TRUE(needs_netem(params(0, 0, 0, 0, 0, 0, 0.5).limits));
  EXPECT_TRUE(needs_netem(params(0, 0, 0, 0, 0, 3, 0).limits));
}

// ---------------------------------------------------------------------------------------------
// Kernel

// Runs argv (stdout and stderr captured) from the calling thread, so the child inherits that
// thread's network namespace. Returns {exit status or -1, output}.
std::pair<int, std::string> run_here(const std::vector<std::string>& argv) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {-1, "pipe failed"};
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  write_end.reset();
  if (rc != 0) return {-1, argv[0] + ": " + std::strerror(rc)};
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(read_end.get(), buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

bool on_path(const std::string& tool) {
  return run_here({"sh", "-c", "command -v " + tool}).first == 0;
}

// PATCHBAY_REQUIRE_NETEM=1 is set where these tests must not skip (the ctest registration that
// runs them in a VM with a netem kernel): there a missing prerequisite is a failure.
bool prerequisites_required() {
  const char* v = std::getenv("PATCHBAY_REQUIRE_NETEM");
  return v != nullptr && std::string(v) == "1";
}

// GTEST_SKIP and FAIL return from the test body, so this must be a macro.
#define SKIP_UNLESS(condition, reason)                                                  \
  do {                                                                                  \
    if (condition) break;                                                               \
    if (prerequisites_required()) FAIL() << "PATCHBAY_REQUIRE_NETEM=1, but " << reason; \
    GTEST_SKIP() << reason;                                                             \
  } while (false)

using NlSockPtr = std::unique_ptr<nl_sock, decltype(&nl_socket_free)>;

// A scratch namespace plus a bare libnl socket for the qdisc calls (which take the caller's
// nl_sock), opened in it with extended acks on.
class Namespace : public ScratchNetns {
 public:
  explicit Namespace(std::string name)
      : ScratchNetns(std::move(name)), nl_(thread().invoke([] {
          NlSockPtr s(nl_socket_alloc(), &nl_socket_free);
          if (!s || nl_connect(s.get(), NETLINK_ROUTE) < 0) throw std::runtime_error("nl socket");
          int one = 1;
          ::setsockopt(nl_socket_get_fd(s.get()), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
          return s;
        })) {}

  nl_sock* nl() { return nl_.get(); }

 private:
  NlSockPtr nl_;
};

// A qdisc as the kernel dumps it, decoded by libnl-route (a decoder independent of ours).
struct KernelQdisc {
  std::string kind;
  std::uint32_t handle = 0, parent = 0;
  std::uint64_t packets = 0;
  int tbf_rate = -1, tbf_limit = -1;
  int netem_delay_us = -1, netem_jitter_us = -1, netem_limit = -1;
  std::int64_t netem_loss = -1, netem_reorder = -1;
};

std::vector<KernelQdisc> kernel_qdiscs(nl_sock* sock, int ifindex) {
  nl_cache* cache = nullptr;
  EXPECT_EQ(rtnl_qdisc_alloc_cache(sock, &cache), 0);
  std::vector<KernelQdisc> out;
  if (cache == nullptr) return out;
  for (nl_object* o = nl_cache_get_first(cache); o != nullptr; o = nl_cache_get_next(o)) {
    auto* q = reinterpret_cast<rtnl_qdisc*>(o);
    rtnl_tc* tc = TC_CAST(q);
    if (rtnl_tc_get_ifindex(tc) != ifindex) continue;
    KernelQdisc k;
    k.kind = rtnl_tc_get_kind(tc) != nullptr ? rtnl_tc_get_kind(tc) : "";
    k.handle = rtnl_tc_get_handle(tc);
    k.parent = rtnl_tc_get_parent(tc);
    k.packets = rtnl_tc_get_stat(tc, RTNL_TC_PACKETS);
    if (k.kind == "tbf") {
      k.tbf_rate = rtnl_qdisc_tbf_get_rate(q);
      k.tbf_limit = rtnl_qdisc_tbf_get_limit(q);
    } else if (k.kind == "netem") {
      k.netem_delay_us = rtnl_netem_get_delay(q);
      k.netem_jitter_us = rtnl_netem_get_jitter(q);
      k.netem_limit = rtnl_netem_get_limit(q);
      k.netem_loss = static_cast<std::uint32_t>(rtnl_netem_get_loss(q));
      k.netem_reorder = static_cast<std::uint32_t>(rtnl_netem_get_reorder_probability(q));
    }
    out.push_back(k);
  }
  nl_cache_free(cache);
  return out;
}

std::optional<KernelQdisc> find_qdisc(const std::vector<KernelQdisc>& list, std::uint32_t handle) {
  for (const KernelQdisc& k : list) {
    if (k.handle == handle) return k;
  }
  return std::nullopt;
}

std::string describe(const std::vector<KernelQdisc>& list) {
  std::string out;
  char buf[128];
  for (const KernelQdisc& k : list) {
    std::snprintf(buf, sizeof buf, "  %s %x: parent %x:%x\n", k.kind.c_str(), k.handle >> 16,
                  k.parent >> 16, k.parent & 0xffff);
    out += buf;
  }
  return out;
}

IpPrefix prefix(const char* address, int len) {
  return IpPrefix{boost::asio::ip::make_address(address), static_cast<std::uint8_t>(len)};
}

class QdiscKernelTest : public ::testing::Test {
 protected:
  // veth "to-b" (in a, 10.0.1.1/24) <-> "to-a" (in b, 10.0.1.2/24), both up and running.
  void SetUp() override {
    ia_ = a_.sock().add_veth(VethEnd{"to-b", -1, std::nullopt, true, 0, std::nullopt},
                             VethEnd{"to-a", b_.fd(), std::nullopt, true, 0, std::nullopt});
    ib_ = b_.sock().link_index("to-a");
    a_.sock().add_address(ia_, prefix("10.0.1.1", 24));
    b_.sock().add_address(ib_, prefix("10.0.1.2", 24));
    auto deadline = steady_clock::now() + std::chrono::seconds(10);
    while (!(a_.sock().link_oper_up("to-b") && b_.sock().link_oper_up("to-a"))) {
      ASSERT_LT(steady_clock::now(), deadline) << "veth did not come up";
      std::this_thread::sleep_for(milliseconds(5));
    }
  }

  // Median ping RTT in ms from a to b over `count` pings (-1 if ping failed).
  double median_ping_ms(int count) {
    auto [rc, lines] = a_.thread().invoke([&] {
      return run_here(
          {"ping", "-n", "-c", std::to_string(count), "-i", "0.05", "-W", "5", "10.0.1.2"});
    });
    last_ping_output_ = lines;
    std::vector<double> rtts;
    // Plain string search: std::regex trips GCC 12's -Wmaybe-uninitialized under sanitizers.
    const std::string key = "time=";
    for (std::size_t pos = lines.find(key); pos != std::string::npos;
         pos = lines.find(key, pos + key.size())) {
      rtts.push_back(std::stod(lines.substr(pos + key.size())));
    }
    if (rc != 0 || rtts.empty()) return -1;
    std::sort(rtts.begin(), rtts.end());
    return rtts[rtts.size() / 2];
  }

  Namespace a_{"a"};
  Namespace b_{"b"};
  int ia_ = 0, ib_ = 0;
  std::string last_ping_output_;
};

TEST(QdiscKernel, PschedTickIs64Nanoseconds) {
  // The tick the messages assume; the kernel publishes it as /proc/net/psched's second field.
  std::ifstream in("/proc/net/psched");
  std::string us_per_tick_num, ns_per_tick;
  ASSERT_TRUE(in >> us_per_tick_num >> ns_per_tick);
  EXPECT_EQ(std::stoul(ns_per_tick, nullptr, 16), 64u);
}

TEST(QdiscKernel, ProbeAgreesWithTcInAScratchNamespace) {
  SKIP_UNLESS(on_path("tc") && on_path("unshare"), "needs tc and unshare on PATH");
  const ino_t before = netns_inode(-1);
  const QdiscSupport& support = qdisc_support();
  EXPECT_EQ(netns_inode(-1), before);     // the probe ran elsewhere
  EXPECT_EQ(&qdisc_support(), &support);  // cached per process
  EXPECT_EQ(kernel_has_netem(), support.netem);

  // An independent probe: iproute2's tc in a namespace of its own.
  auto [netem_rc, netem_out] = run_here(
      {"unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"});
  auto [tbf_rc, tbf_out] = run_here({"unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root",
                                     "tbf", "rate", "1mbit", "burst", "3000", "latency", "400ms"});
  EXPECT_EQ(support.netem, netem_rc == 0) << "tc says: " << netem_out;
  EXPECT_EQ(support.tbf, tbf_rc == 0) << "tc says: " << tbf_out;
  EXPECT_EQ(support.netem_detail.empty(), support.netem) << support.netem_detail;
  EXPECT_EQ(support.tbf_detail.empty(), support.tbf) << support.tbf_detail;
  ::testing::Test::RecordProperty("kernel_has_netem", support.netem ? "true" : "false");
  if (!support.netem) {
    // tc's wording for the same refusal.
    EXPECT_NE(netem_out.find("unknown"), std::string::npos) << netem_out;
  }
}

TEST_F(QdiscKernelTest, RateOnlyConditionPutsTbfAtTheRootWithConfiguredNumbers) {
  apply_link_condition(a_.nl(), ia_, params(8000, 0, 0, 0, 0, 0, 0), "a");
  auto list = kernel_qdiscs(a_.nl(), ia_);
  auto tbf = find_qdisc(list, 0x20000);
  ASSERT_TRUE(tbf.has_value()) << describe(list);
  EXPECT_EQ(tbf->kind, "tbf");
  EXPECT_EQ(tbf->parent, TC_H_ROOT);
  EXPECT_EQ(tbf->tbf_rate, 1'000'000);        // 8000 kbit/s in bytes/s
  EXPECT_EQ(tbf->tbf_limit, 400'000 + 5000);  // 400 ms at the rate plus the 5 ms burst
  EXPECT_FALSE(find_qdisc(list, 0x10000).has_value()) << describe(list);
  // The other end is untouched: conditions are per direction.
  for (const KernelQdisc& k : kernel_qdiscs(b_.nl(), ib_)) EXPECT_NE(k.kind, "tbf");
}

TEST_F(QdiscKernelTest, RateOnlyTbfCapsTcpThroughput) {
  constexpr std::uint32_t kRateKbit = 16'000;
  const NetemParams p = params(kRateKbit, 0, 0, 0, 0, 0, 0);
  const double rate = kRateKbit * 1000.0 / 8;  // 2 MB/s
  const double burst = std::max(2 * 1500.0, rate * 0.005);
  const std::size_t total = 1'500'000;
  apply_link_condition(a_.nl(), ia_, p, "a");

  // Generous enough for a loaded machine, derived from the configured rate.
  const auto expected = duration<double>(total / rate);
  timeval timeout{static_cast<time_t>(10 * expected.count()) + 1, 0};

  UniqueFd listener =
      b_.thread().invoke([] { return UniqueFd(::socket(AF_INET, SOCK_STREAM, 0)); });
  ASSERT_TRUE(listener.valid());
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  ::inet_pton(AF_INET, "10.0.1.2", &addr.sin_addr);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::setsockopt(listener.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);

  std::size_t received = 0;
  steady_clock::time_point last_byte{};
  std::thread server([&] {
    UniqueFd conn(::accept(listener.get(), nullptr, nullptr));
    if (!conn.valid()) return;
    ::setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    std::vector<char> buf(64 * 1024);
    for (ssize_t n; (n = ::recv(conn.get(), buf.data(), buf.size(), 0)) > 0;) {
      received += static_cast<std::size_t>(n);
      last_byte = steady_clock::now();
    }
  });

  UniqueFd client = a_.thread().invoke([] { return UniqueFd(::socket(AF_INET, SOCK_STREAM, 0)); });
  ::setsockopt(client.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  const std::vector<char> data(total, 'x');
  const auto start =
      steady_clock::now();  // every byte, handshake included, passes the tbf after this
  bool sent_all = false;
  if (::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    std::size_t off = 0;
    for (ssize_t n; off < total &&
                    (n = ::send(client.get(), data.data() + off, total - off, MSG_NOSIGNAL)) > 0;) {
      off += static_cast<std::size_t>(n);
    }
    sent_all = off == total;
    ::shutdown(client.get(), SHUT_WR);
  }
  server.join();
  ASSERT_TRUE(sent_all) << std::strerror(errno);
  ASSERT_EQ(received, total);

  const double elapsed = duration<double>(last_byte - start).count();
  // The bucket starts full, so one burst passes at once; everything else waits for tokens.
  const double floor = (static_cast<double>(total) - burst) / rate;
  EXPECT_GE(elapsed, floor) << "goodput " << total / elapsed << " B/s above the cap " << rate;
  // And the cap is a cap, not a stall: at least half the configured rate arrives.
  EXPECT_LE(elapsed, 2 * expected.count()) << "goodput " << total / elapsed << " B/s";
}

TEST_F(QdiscKernelTest, ReplacingTheRateChangesTheSameQdiscInPlace) {
  apply_link_condition(a_.nl(), ia_, params(16'000, 0, 0, 0, 0, 0, 0), "a");
  // Traffic through it, so its packet counter is non-zero.
  UniqueFd udp = a_.thread().invoke([] { return UniqueFd(::socket(AF_INET, SOCK_DGRAM, 0)); });
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  ::inet_pton(AF_INET, "10.0.1.2", &to.sin_addr);
  constexpr int kSent = 20;
  for (int i = 0; i < kSent; ++i) {
    ASSERT_EQ(::sendto(udp.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to), 1)
        << std::strerror(errno);
  }
  // The first datagram waits for ARP, so the counter catches up shortly after the sends.
  std::optional<KernelQdisc> before;
  const auto deadline = steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    before = find_qdisc(kernel_qdiscs(a_.nl(), ia_), 0x20000);
    ASSERT_TRUE(before.has_value());
    if (before->packets >= static_cast<std::uint64_t>(kSent)) break;
    ASSERT_LT(steady_clock::now(), deadline) << "only " << before->packets << " packets counted";
    std::this_thread::sleep_for(milliseconds(2));
  }

  apply_link_condition(a_.nl(), ia_, params(4000, 0, 0, 0, 0, 0, 0), "a");
  auto list = kernel_qdiscs(a_.nl(), ia_);
  auto after = find_qdisc(list, 0x20000);
  ASSERT_TRUE(after.has_value()) << describe(list);
  EXPECT_EQ(after->tbf_rate, 500'000);
  // A delete-then-add would have started a fresh qdisc with a zero counter.
  EXPECT_GE(after->packets, before->packets);
}

TEST_F(QdiscKernelTest, ClearRemovesTheRootQdiscAndIsFineWithoutOne) {
  EXPECT_NO_THROW(clear_netem(a_.nl(), ia_, "a"));  // nothing of ours there yet
  apply_link_condition(a_.nl(), ia_, params(8000, 0, 0, 0, 0, 0, 0), "a");
  ASSERT_TRUE(find_qdisc(kernel_qdiscs(a_.nl(), ia_), 0x20000).has_value());
  clear_netem(a_.nl(), ia_, "a");
  auto list = kernel_qdiscs(a_.nl(), ia_);
  for (const KernelQdisc& k : list) {
    EXPECT_EQ(k.handle, 0u) << "left behind:\n" << describe(list);  // only the default remains
  }
  EXPECT_NO_THROW(clear_netem(a_.nl(), ia_, "a"));
  // All-zero limits mean "no impairment", i.e. the same as clearing.
  apply_link_condition(a_.nl(), ia_, params(8000, 0, 0, 0, 0, 0, 0), "a");
  apply_link_condition(a_.nl(), ia_, params(0, 0, 0, 0, 0, 0, 0), "a");
  list = kernel_qdiscs(a_.nl(), ia_);
  for (const KernelQdisc& k : list) EXPECT_EQ(k.handle, 0u) << describe(list);
}

TEST_F(QdiscKernelTest, FailuresNameTheNodeTheLinkAndTheKernelsReason) {
  try {
    apply_link_condition(a_.nl(), 999, params(8000, 0, 0, 0, 0, 0, 0), "a");
    ADD_FAILURE() << "no error for a missing link";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kKernel) << e.what();
    EXPECT_EQ(e.sys_errno(), ENODEV) << e.what();
    EXPECT_EQ(e.culprit(), "a");
    EXPECT_NE(std::string(e.what()).find("'a'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("999"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tbf"), std::string::npos) << e.what();
  }
  try {
    clear_netem(a_.nl(), 999, "a");
    ADD_FAILURE() << "no error for a missing link";
  } catch (const Error& e) {
    EXPECT_EQ(e.sys_errno(), ENODEV) << e.what();
  }
}

TEST_F(QdiscKernelTest, ForeignRootQdiscWithOurHandleIsReportedNotReplaced) {
  SKIP_UNLESS(on_path("tc"), "needs tc on PATH to install a foreign qdisc");
  // Someone else's tbf at handle 1:, the handle of our netem layout. The kernel refuses to
  // change it into a netem; that refusal must reach the caller.
  auto [rc, out] = a_.thread().invoke([] {
    return run_here({"tc", "qdisc", "add", "dev", "to-b", "root", "handle", "1:", "tbf", "rate",
                     "1mbit", "burst", "3000", "latency", "100ms"});
  });
  ASSERT_EQ(rc, 0) << out;
  try {
    apply_netem(a_.nl(), ia_, params(0, 0, 5, 0, 0, 0, 0), "a");
    ADD_FAILURE() << "a foreign tbf at 1: was silently accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kKernel) << e.what();
    // The kernel compares kinds before it looks for the netem module: EINVAL on any kernel.
    EXPECT_EQ(e.sys_errno(), EINVAL) << e.what();
    EXPECT_NE(std::string(e.what()).find("'to-b'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'a'"), std::string::npos) << e.what();
  }
  auto list = kernel_qdiscs(a_.nl(), ia_);
  auto foreign = find_qdisc(list, 0x10000);
  ASSERT_TRUE(foreign.has_value()) << describe(list);
  EXPECT_EQ(foreign->kind, "tbf");
  EXPECT_EQ(foreign->tbf_rate, 125'000);
}

TEST_F(QdiscKernelTest, ConditionNeedingNetemAppliesOrFailsSayingNetemIsMissing) {
  const NetemParams p = params(0, 1, 20, 0, 0, 0, 0);
  if (kernel_has_netem()) {
    apply_link_condition(a_.nl(), ia_, p, "a");
    auto list = kernel_qdiscs(a_.nl(), ia_);
    auto netem = find_qdisc(list, 0x10000);
    ASSERT_TRUE(netem.has_value()) << describe(list);
    EXPECT_EQ(netem->kind, "netem");
    EXPECT_EQ(netem->netem_delay_us, 20'000);
    EXPECT_EQ(netem->netem_loss, netem_probability(1));
    return;
  }
  try {
    apply_link_condition(a_.nl(), ia_, p, "a");
    ADD_FAILURE() << "netem applied although the probe found none";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kKernel) << e.what();
    EXPECT_EQ(e.sys_errno(), ENOENT) << e.what();
    EXPECT_EQ(e.culprit(), "a");
    EXPECT_NE(std::string(e.what()).find("no sch_netem"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'to-b'"), std::string::npos) << e.what();
  }
  // Nothing half-applied.
  auto list = kernel_qdiscs(a_.nl(), ia_);
  for (const KernelQdisc& k : list) EXPECT_EQ(k.handle, 0u) << describe(list);
}

TEST_F(QdiscKernelTest, NetemDelayOnBothEndsRaisesPingRoundTrip) {
  // The baseline runs before the skip on purpose: it keeps the ping helper exercised on kernels
  // without netem, where the rest of this test cannot run.
  const double baseline = median_ping_ms(10);
  ASSERT_GE(baseline, 0) << last_ping_output_;
  SKIP_UNLESS(kernel_has_netem(), "this kernel has no sch_netem: " << qdisc_support().netem_detail);
  constexpr std::uint32_t kOneWayMs = 20;
  apply_link_condition(a_.nl(), ia_, params(0, 0, kOneWayMs, 0, 0, 0, 0), "a");
  apply_link_condition(b_.nl(), ib_, params(0, 0, kOneWayMs, 0, 0, 0, 0), "b");
  const double rtt = median_ping_ms(10);
  ASSERT_GE(rtt, 0) << last_ping_output_;
  EXPECT_GE(rtt, 2 * kOneWayMs) << last_ping_output_;
  EXPECT_LE(rtt, 2 * kOneWayMs + baseline + kOneWayMs) << last_ping_output_;

  // Removing it brings the round trip back below the configured delay.
  clear_netem(a_.nl(), ia_, "a");
  clear_netem(b_.nl(), ib_, "b");
  const double after = median_ping_ms(10);
  ASSERT_GE(after, 0) << last_ping_output_;
  EXPECT_LT(after, kOneWayMs) << last_ping_output_;
}

TEST_F(QdiscKernelTest, NetemLayoutSwitchesByReplaceAndClearsStaleReorder) {
  SKIP_UNLESS(kernel_has_netem(), "this kernel has no sch_netem: " << qdisc_support().netem_detail);
  // netem with a rate: netem 1: at the root, tbf 10: under 1:1.
  apply_link_condition(a_.nl(), ia_, params(8000, 0, 10, 0, 25, 0, 0), "a");
  auto list = kernel_qdiscs(a_.nl(), ia_);
  auto netem = find_qdisc(list, 0x10000);
  auto tbf = find_qdisc(list, 0x100000);
  ASSERT_TRUE(netem && tbf) << describe(list);
  EXPECT_EQ(netem->parent, TC_H_ROOT);
  EXPECT_EQ(netem->netem_reorder, netem_probability(25));
  EXPECT_EQ(tbf->parent, 0x10001u);
  EXPECT_EQ(tbf->tbf_rate, 1'000'000);

  // Same delay, no rate, no reorder: the child goes, the zero reorder takes.
  apply_link_condition(a_.nl(), ia_, params(0, 0, 10, 0, 0, 0, 0), "a");
  list = kernel_qdiscs(a_.nl(), ia_);
  netem = find_qdisc(list, 0x10000);
  ASSERT_TRUE(netem) << describe(list);
  EXPECT_EQ(netem->netem_reorder, 0);
  EXPECT_FALSE(find_qdisc(list, 0x100000)) << describe(list);

  // Rate only: tbf 2: replaces netem at the root; and back.
  apply_link_condition(a_.nl(), ia_, params(8000, 0, 0, 0, 0, 0, 0), "a");
  list = kernel_qdiscs(a_.nl(), ia_);
  EXPECT_TRUE(find_qdisc(list, 0x20000)) << describe(list);
  EXPECT_FALSE(find_qdisc(list, 0x10000)) << describe(list);
  apply_link_condition(a_.nl(), ia_, params(0, 2, 5, 0, 0, 0, 0), "a");
  list = kernel_qdiscs(a_.nl(), ia_);
  netem = find_qdisc(list, 0x10000);
  ASSERT_TRUE(netem) << describe(list);
  EXPECT_EQ(netem->netem_delay_us, 5000);
  EXPECT_EQ(netem->netem_loss, netem_probability(2));
  EXPECT_FALSE(find_qdisc(list, 0x20000)) << describe(list);
}

}  // namespace
}  // namespace patchbay::internal
