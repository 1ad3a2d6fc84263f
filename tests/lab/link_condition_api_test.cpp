// The link-condition API seen from a lab: conditions given at build time, router uplinks,
// Lab::set_link_condition's link lookup and its errors, seeds, backends, and what the userspace
// emulator leaves behind. Every effect is measured with real traffic; tolerances come from the
// configured values (see link_condition_test.cpp for the per-impairment measurements).
#include <dirent.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iterator>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "link_probe.hpp"
#include "patchbay/gtest.hpp"
#include "patchbay/patchbay.hpp"

namespace {

using namespace std::chrono_literals;
using patchbay::Device;
using patchbay::ErrorKind;
using patchbay::Lab;
using patchbay::LabOptions;
using patchbay::LinkBackend;
using patchbay::LinkCondition;
using patchbay::LinkConditions;
using patchbay::Router;
using pbtest::median;

LinkCondition latency(std::uint32_t ms) { return LinkCondition::manual({.latency_ms = ms}); }

// The tolerance of a median RTT against its configured value: scheduling and the emulator's
// wake-ups add a little to every round trip.
double tolerance(double want_ms) { return std::max(0.5, 0.05 * want_ms); }

// Median RTT from -> to over `count` pings, all of which must arrive (the links under test are
// lossless).
double median_rtt(const patchbay::Node& from, const patchbay::Ipv4Address& to, int count = 15,
                  double interval_s = 0.02) {
  pbtest::PingResult r = pbtest::ping(from, to, count, interval_s);
  EXPECT_EQ(static_cast<int>(r.rtts_ms.size()), count)
      << "pings from '" << from.name() << "' lost on a lossless path";
  return median(r.rtts_ms);
}

// Neighbour discovery first: its own round trips would otherwise delay the first probe.
void warm_up(const patchbay::Node& from, const patchbay::Ipv4Address& to) {
  ASSERT_EQ(pbtest::ping(from, to, 1, 0.2).rtts_ms.size(), 1u)
      << "'" << from.name() << "' cannot reach " << to.to_string();
}

// Sets an environment variable for one scope and puts the previous value back.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// Expects `fn` to throw patchbay::Error of `kind` whose message contains every one of `words`.
template <class F>
void expect_error(F&& fn, ErrorKind kind, const std::vector<std::string>& words) {
  try {
    fn();
    ADD_FAILURE() << "expected an error of kind " << patchbay::to_string(kind);
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    for (const std::string& w : words) {
      EXPECT_NE(std::string(e.what()).find(w), std::string::npos)
          << "message does not name '" << w << "': " << e.what();
    }
  }
}

// Interface names in a node (`ip -o link`), without the "@peer" suffix.
std::set<std::string> link_names(const patchbay::Node& node) {
  patchbay::CommandResult r = node.run_command({"ip", "-o", "link", "show"});
  EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
  std::set<std::string> names;
  std::istringstream in(r.stdout_text);
  std::string line;
  while (std::getline(in, line)) {
    // "7: v3e@v3s: <BROADCAST,...> ..."
    std::size_t colon = line.find(": ");
    if (colon == std::string::npos) continue;
    std::size_t end = line.find(':', colon + 2);
    std::string name = line.substr(colon + 2, end - colon - 2);
    names.insert(name.substr(0, name.find('@')));
  }
  return names;
}

std::set<std::string> minus(const std::set<std::string>& a, const std::set<std::string>& b) {
  std::set<std::string> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::inserter(out, out.end()));
  return out;
}

std::size_t process_threads() {
  std::size_t n = 0;
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return 0;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n;
}

class LinkConditionApiTest : public patchbay::testing::LabTest {};

TEST_F(LinkConditionApiTest, BuildTimeDeviceConditionAppliesFromTheFirstPacketAndIsReported) {
  constexpr std::uint32_t kUp = 10;
  constexpr std::uint32_t kDown = 6;
  const LinkConditions cond = LinkConditions::asymmetric(latency(kUp), latency(kDown));
  Router dc = lab().add_router("dc").build();
  Device a = lab().add_device("a").iface("eth0", dc, cond).build();
  Device b = lab().add_device("b").iface("eth0", dc).build();

  EXPECT_EQ(a.link_condition("eth0"), cond);
  EXPECT_EQ(a.iface("eth0").condition, cond);
  EXPECT_TRUE(b.iface("eth0").condition.empty());

  // The first echo request waits for ARP, whose request and reply cross the same link: the
  // first round trip carries the delay twice over, so nothing slipped through unimpaired.
  pbtest::PingResult first = pbtest::ping(a, *b.ip(), 1, 0.2);
  ASSERT_EQ(first.rtts_ms.size(), 1u);
  EXPECT_GE(first.rtts_ms[0], 2 * (kUp + kDown) - tolerance(2 * (kUp + kDown)));
  EXPECT_NEAR(median_rtt(a, *b.ip(), 20), kUp + kDown, tolerance(kUp + kDown));

  const nlohmann::json state = nlohmann::json::parse(lab().state_json());
  bool seen_a = false;
  bool seen_b = false;
  for (const auto& dev : state.at("devices")) {
    const auto& lc = dev.at("interfaces").at(0).at("link_condition");
    if (dev.at("name") == "a") {
      seen_a = true;
      EXPECT_EQ(lc.at("egress"), nlohmann::json::parse(patchbay::to_json(latency(kUp)))) << lc;
      EXPECT_EQ(lc.at("ingress"), nlohmann::json::parse(patchbay::to_json(latency(kDown)))) << lc;
    } else if (dev.at("name") == "b") {
      seen_b = true;
      EXPECT_TRUE(lc.at("egress").is_null()) << lc;
      EXPECT_TRUE(lc.at("ingress").is_null()) << lc;
    }
  }
  EXPECT_TRUE(seen_a && seen_b) << state.dump(2);
}

TEST_F(LinkConditionApiTest, RouterUplinkConditionDelaysTrafficLeavingThroughIt) {
  constexpr std::uint32_t kHome = 8;
  constexpr std::uint32_t kIsp = 5;
  Router dc = lab().add_router("dc").build();
  Router isp = lab().add_router("isp").build();
  Router home = lab().add_router("home").upstream(isp).uplink_condition(latency(kHome)).build();
  Device server = lab().add_device("server").iface("eth0", dc).build();
  Device laptop = lab().add_device("laptop").iface("eth0", home).build();
  warm_up(laptop, *server.ip());

  EXPECT_EQ(home.uplink_condition(), LinkConditions(latency(kHome)));
  EXPECT_TRUE(isp.uplink_condition().empty());
  EXPECT_NEAR(median_rtt(laptop, *server.ip()), 2 * kHome, tolerance(2 * kHome));

  // A router on the IX, changed at runtime: both uplinks now add their delay.
  isp.set_uplink_condition(latency(kIsp));
  EXPECT_EQ(isp.uplink_condition(), LinkConditions(latency(kIsp)));
  EXPECT_NEAR(median_rtt(laptop, *server.ip()), 2 * (kHome + kIsp), tolerance(2 * (kHome + kIsp)));

  home.set_uplink_condition({});
  EXPECT_TRUE(home.uplink_condition().empty());
  EXPECT_NEAR(median_rtt(laptop, *server.ip()), 2 * kIsp, tolerance(2 * kIsp));

  isp.set_uplink_condition({});
  EXPECT_TRUE(isp.uplink_condition().empty());
  EXPECT_LT(median_rtt(laptop, *server.ip()), 1.0);
}

// dc and isp on the IX, home below isp; server on dc, laptop on home.
class LabLinkLookupTest : public patchbay::testing::LabTest {
 protected:
  void SetUp() override {
    LabTest::SetUp();
    if (IsSkipped()) return;
    dc_ = lab().add_router("dc").build();
    isp_ = lab().add_router("isp").build();
    home_ = lab().add_router("home").upstream(*isp_).build();
    server_ = lab().add_device("server").iface("eth0", *dc_).build();
    laptop_ = lab().add_device("laptop").iface("eth0", *home_).build();
    warm_up(*laptop_, *server_->ip());
  }

  bool nothing_impaired() {
    return laptop_->link_condition("eth0").empty() && server_->link_condition("eth0").empty() &&
           dc_->uplink_condition().empty() && isp_->uplink_condition().empty() &&
           home_->uplink_condition().empty();
  }

  std::optional<Router> dc_;
  std::optional<Router> isp_;
  std::optional<Router> home_;
  std::optional<Device> server_;
  std::optional<Device> laptop_;
};

TEST_F(LabLinkLookupTest, DeviceAndGatewayInEitherOrderNameTheDevicesInterface) {
  constexpr std::uint32_t kUp = 6;
  const LinkConditions up_only = LinkConditions::egress_only(latency(kUp));
  lab().set_link_condition(*laptop_, *home_, up_only);
  EXPECT_EQ(laptop_->link_condition("eth0"), up_only) << "egress is the device's upload";
  EXPECT_TRUE(home_->uplink_condition().empty());
  EXPECT_NEAR(median_rtt(*laptop_, *server_->ip()), kUp, tolerance(kUp));

  lab().set_link_condition(*home_, *laptop_, {});
  EXPECT_TRUE(nothing_impaired());
  EXPECT_LT(median_rtt(*laptop_, *server_->ip()), 1.0);

  // The other argument order, with the direction still seen from the device.
  const LinkConditions down_only = LinkConditions::ingress_only(latency(kUp));
  lab().set_link_condition(*home_, *laptop_, down_only);
  EXPECT_EQ(laptop_->link_condition("eth0"), down_only);
  EXPECT_NEAR(median_rtt(*laptop_, *server_->ip()), kUp, tolerance(kUp));
}

TEST_F(LabLinkLookupTest, RouterAndUpstreamInEitherOrderNameTheLowerRoutersUplink) {
  constexpr std::uint32_t kLatency = 4;
  lab().set_link_condition(*isp_, *home_, latency(kLatency));
  EXPECT_EQ(home_->uplink_condition(), LinkConditions(latency(kLatency)));
  EXPECT_TRUE(isp_->uplink_condition().empty()) << "isp's own uplink is another link";
  EXPECT_TRUE(laptop_->link_condition("eth0").empty());
  EXPECT_NEAR(median_rtt(*laptop_, *server_->ip()), 2 * kLatency, tolerance(2 * kLatency));

  lab().set_link_condition(*home_, *isp_, {});
  EXPECT_TRUE(nothing_impaired());
  EXPECT_LT(median_rtt(*laptop_, *server_->ip()), 1.0);
}

TEST_F(LabLinkLookupTest, PairsThatShareNoLinkAreRejectedNamingBothNodes) {
  const LinkConditions wifi = patchbay::LinkPreset::Wifi;
  // laptop hangs below home, which hangs below isp: no direct link to isp or dc.
  expect_error([&] { lab().set_link_condition(*laptop_, *isp_, wifi); }, ErrorKind::kNotFound,
               {"laptop", "isp"});
  expect_error([&] { lab().set_link_condition(*dc_, *laptop_, wifi); }, ErrorKind::kNotFound,
               {"laptop", "dc"});
  // Routers that meet only through the IX or through a third router.
  expect_error([&] { lab().set_link_condition(*dc_, *isp_, wifi); }, ErrorKind::kNotFound,
               {"dc", "isp"});
  expect_error([&] { lab().set_link_condition(*home_, *dc_, wifi); }, ErrorKind::kNotFound,
               {"home", "dc"});
  expect_error([&] { lab().set_link_condition(*laptop_, *server_, wifi); }, ErrorKind::kNotFound,
               {"laptop", "server"});
  EXPECT_TRUE(nothing_impaired());
  EXPECT_LT(median_rtt(*laptop_, *server_->ip()), 1.0);
}

// Which datagrams of a paced run survive 30 % upload loss on a fresh two-device lab.
std::vector<bool> loss_pattern(Lab& lab) {
  constexpr int kCount = 300;
  constexpr double kLoss = 30;
  // The seed fixes the draws, not which frames take them: the link must carry only the run.
  // IPv4 only, and the device's interface without IPv6 at all (the kernel gives it a
  // link-local address even on a v4-only LAN, and its MLD reports and router solicitations
  // would take draws at times that vary between runs).
  Router dc = lab.add_router("dc").ip_support(patchbay::IpSupport::V4Only).build();
  Device a = lab.add_device("a").iface("eth0", dc).build();
  Device b = lab.add_device("b").iface("eth0", dc).build();
  EXPECT_EQ(
      a.run_command({"sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6"}).exit_code,
      0);
  // ARP is settled while the link is clean, so the emulator sees only the run's datagrams.
  EXPECT_EQ(pbtest::ping(a, *b.ip(), 1, 0.2).rtts_ms.size(), 1u);
  // /proc/net/dev is the node's own (sysfs would show the namespace it was mounted in).
  auto tx_packets = [&] {
    std::istringstream in(a.run_command({"cat", "/proc/net/dev"}).stdout_text);
    std::string line;
    while (std::getline(in, line)) {
      std::size_t colon = line.find(':');
      if (colon == std::string::npos || line.substr(0, colon).find("eth0") == std::string::npos) {
        continue;
      }
      // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets ...
      std::istringstream fields(line.substr(colon + 1));
      long v = 0;
      for (int i = 0; i < 10; ++i) fields >> v;
      return v;
    }
    ADD_FAILURE() << "no eth0 in /proc/net/dev of 'a'";
    return -1L;
  };
  const long tx_before = tx_packets();
  a.set_link_condition("eth0",
                       LinkConditions::egress_only(LinkCondition::manual({.loss_pct = kLoss})));
  // Paced, so the datagrams reach the emulator one at a time and in order.
  pbtest::UdpRun run = pbtest::udp_run(a, b, *b.ip(), kCount, 200us, 200ms);
  EXPECT_EQ(tx_packets() - tx_before, kCount) << "other frames took draws during the run";
  auto [lo, hi] = pbtest::binomial_99(kCount, kLoss / 100);
  EXPECT_GE(run.lost(), lo);
  EXPECT_LE(run.lost(), hi);
  EXPECT_EQ(run.duplicates(), 0);
  return run.pattern();
}

class SeedTest : public patchbay::testing::LabTest {
 protected:
  static constexpr std::uint64_t kSeed = 42;
  LabOptions lab_options() override {
    LabOptions o;
    o.seed = kSeed;
    return o;
  }
};

TEST_F(SeedTest, SameSeedGivesTheSameLossPatternAndAnotherSeedAnother) {
  ASSERT_EQ(lab().seed(), kSeed);
  const std::vector<bool> first = loss_pattern(lab());

  Lab again({.label = "seed-again", .seed = kSeed});
  const std::vector<bool> second = loss_pattern(again);
  EXPECT_EQ(first, second) << "seed " << kSeed << " did not reproduce the loss pattern";

  Lab other({.label = "seed-other", .seed = kSeed + 1});
  const std::vector<bool> third = loss_pattern(other);
  EXPECT_NE(first, third) << "seeds " << kSeed << " and " << kSeed + 1
                          << " gave the same 300-datagram pattern";
}

TEST_F(SeedTest, SeedComesFromTheOptionElsePatchbaySeed) {
  EXPECT_EQ(lab().seed(), kSeed);
  EXPECT_EQ(nlohmann::json::parse(lab().state_json()).at("seed"), kSeed);
  {
    ScopedEnv env("PATCHBAY_SEED", "777");
    EXPECT_EQ(Lab({.label = "seed-env"}).seed(), 777u);
    EXPECT_EQ(Lab({.label = "seed-option", .seed = 5}).seed(), 5u) << "the option wins";
  }
  {
    ScopedEnv env("PATCHBAY_SEED", "not-a-number");
    expect_error([] { Lab lab({.label = "seed-bad"}); }, ErrorKind::kInvalidArgument,
                 {"PATCHBAY_SEED", "not-a-number"});
  }
}

TEST_F(LinkConditionApiTest, AutoBackendIsUserspaceExactlyWhereTheKernelCannotApplyNetem) {
  // The fixture's lab and the ones below must see Auto, not a backend chosen from outside.
  ScopedEnv env("PATCHBAY_LINK_BACKEND", nullptr);
  EXPECT_EQ(
      Lab({.label = "forced-userspace", .link_backend = LinkBackend::Userspace}).link_backend(),
      LinkBackend::Userspace);
  const LinkBackend autodetected = lab().link_backend();
  ASSERT_TRUE(autodetected == LinkBackend::Kernel || autodetected == LinkBackend::Userspace)
      << "Auto must resolve, got " << autodetected;
  if (autodetected == LinkBackend::Kernel) {
    GTEST_SKIP() << "this kernel has sch_netem, so Auto rightly picks it; the netem-less path "
                    "cannot be exercised here";
  }

  Lab kernel({.label = "forced-kernel", .link_backend = LinkBackend::Kernel});
  EXPECT_EQ(kernel.link_backend(), LinkBackend::Kernel);
  Router dc = kernel.add_router("dc").build();
  Device a = kernel.add_device("a").iface("eth0", dc).build();
  Device b = kernel.add_device("b").iface("eth0", dc).build();
  warm_up(a, *b.ip());
  expect_error([&] { a.set_link_condition("eth0", latency(10)); }, ErrorKind::kKernel,
               {"netem", "'a'"});
  EXPECT_TRUE(a.link_condition("eth0").empty()) << "a failed change must not be recorded";
  EXPECT_LT(median_rtt(a, *b.ip()), 1.0) << "a failed change must leave the link as it was";
}

class UserspaceEmulatorTest : public patchbay::testing::LabTest {
 protected:
  LabOptions lab_options() override {
    LabOptions o;
    o.link_backend = LinkBackend::Userspace;
    return o;
  }
};

TEST_F(UserspaceEmulatorTest, RemovingAnEmulatedDeviceTakesItsSpliceWithIt) {
  constexpr std::uint32_t kLatency = 5;
  Router dc = lab().add_router("dc").build();
  Device a = lab().add_device("a").iface("eth0", dc).build();
  Device b = lab().add_device("b").iface("eth0", dc).build();
  Device c = lab().add_device("c").iface("eth0", dc).build();
  warm_up(b, *c.ip());

  const std::set<std::string> plain = link_names(dc);
  a.set_link_condition("eth0", latency(kLatency));
  const std::set<std::string> a_splice = minus(link_names(dc), plain);
  b.set_link_condition("eth0", latency(kLatency));
  const std::set<std::string> with_both = link_names(dc);
  const std::set<std::string> both_splices = minus(with_both, plain);
  // Each splice is one veth pair in the router: <port>e towards the emulator, <port>s on the
  // bridge.
  ASSERT_EQ(a_splice.size(), 2u);
  for (const std::string& n : a_splice) {
    EXPECT_TRUE(n.back() == 'e' || n.back() == 's') << n;
  }
  ASSERT_EQ(both_splices.size(), 4u);

  lab().remove_device(a);
  std::set<std::string> gone = minus(with_both, link_names(dc));
  for (const std::string& n : a_splice) {
    EXPECT_EQ(gone.count(n), 1u) << "splice interface '" << n << "' outlived device 'a'";
  }
  // a's own port goes with a's namespace, which the kernel dismantles in the background.
  const std::string a_port = a_splice.begin()->substr(0, a_splice.begin()->size() - 1);
  gone.erase(a_port);
  EXPECT_EQ(gone, a_splice) << "only a's splice may go: b's stays";
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (link_names(dc).count(a_port) != 0 && std::chrono::steady_clock::now() < deadline) {
  }
  EXPECT_EQ(link_names(dc).count(a_port), 0u) << "a's port '" << a_port << "' stayed behind";
  // b's splice still carries b's condition.
  EXPECT_NEAR(median_rtt(b, *c.ip()), 2 * kLatency, tolerance(2 * kLatency));
}

TEST_F(UserspaceEmulatorTest, OneEmulatorThreadServesAllLinksAndDiesWithTheLab) {
  const std::size_t before = process_threads();
  {
    Lab lab({.label = "threads", .link_backend = LinkBackend::Userspace});
    Router dc = lab.add_router("dc").build();
    Device a = lab.add_device("a").iface("eth0", dc).build();
    Device b = lab.add_device("b").iface("eth0", dc).build();
    // Both devices' workers run before counting, so only the emulator can add a thread.
    warm_up(a, *b.ip());
    warm_up(b, *a.ip());
    const std::size_t clean = lab.thread_count();
    a.set_link_condition("eth0", latency(2));
    EXPECT_EQ(lab.thread_count(), clean + 1) << "the first emulated link starts the emulator";
    b.set_link_condition("eth0", latency(2));
    EXPECT_EQ(lab.thread_count(), clean + 1) << "a second link shares the emulator";
    EXPECT_NEAR(median_rtt(a, *b.ip()), 8, tolerance(8));
  }
  // A joined thread leaves /proc/self/task a moment after join() returns (the kernel wakes the
  // joiner before it reaps the task), so wait for the count rather than reading it once.
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (process_threads() != before && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(process_threads(), before) << "the lab left threads behind";
}

TEST_F(LinkConditionApiTest, InvalidConditionIsRejectedAndTheLinkKeepsItsCondition) {
  constexpr std::uint32_t kLatency = 5;
  Router dc = lab().add_router("dc").build();
  Device a = lab().add_device("a").iface("eth0", dc).build();
  Device b = lab().add_device("b").iface("eth0", dc).build();
  warm_up(a, *b.ip());
  a.set_link_condition("eth0", latency(kLatency));

  // A LinkCondition is valid by construction, so an out-of-range loss is stopped where the
  // LinkConditions is made, by hand or from JSON, before any link could see it.
  expect_error(
      [&] {
        LinkConditions bad;
        bad.egress = LinkCondition::manual({.loss_pct = 150, .latency_ms = 1});
        a.set_link_condition("eth0", bad);
      },
      ErrorKind::kInvalidArgument, {"loss_pct", "150"});
  expect_error(
      [&] {
        a.set_link_condition("eth0", patchbay::link_condition_from_json(R"({"loss_pct":150})"));
      },
      ErrorKind::kInvalidArgument, {"loss_pct", "150"});

  EXPECT_EQ(a.link_condition("eth0"), LinkConditions(latency(kLatency)));
  EXPECT_NEAR(median_rtt(a, *b.ip(), 20), 2 * kLatency, tolerance(2 * kLatency));
}

}  // namespace
