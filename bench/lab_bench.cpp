// patchbay_bench: what building and tearing down labs costs.
//   CanonicalLab — {public router, home NAT router, one device behind each}, create + destroy
//   CanonicalLabWithOutput — the same with an output directory (events.jsonl, live state.json)
//   Lab100       — 10 public routers, 10 NAT routers behind them, 80 devices, create + destroy
//   RawFloor100  — the same kernel work done with bare netlink calls on one thread (no
//                  bookkeeping, no validation): Lab100 / RawFloor100 is the library's overhead.
//   NatApply      — NftSocket::install of a Home NAT ruleset into a fresh router namespace
//   NatModeSwitch — NftSocket::apply switching a live router between Home and Corporate NAT
//   LinkTcp/*     — TCP throughput over a plain link and through the link emulator
//                   (link_bench.cpp)
// Each measured iteration of the lab benchmarks is one create + destroy. The kernel frees
// namespaces asynchronously (cleanup_net, with RCU grace periods) after we close the last fd, and
// that work stalls the next namespace creation now and then. By default every iteration
// therefore starts on a settled kernel (a paused wait after it), and reports the median over
// repetitions; the "/back_to_back" variants skip the wait to show the steady-state throughput a
// test suite sees.
// The Nat* benchmarks time only the nftables call (manual timing, on the thread inside the
// namespace); namespaces are made and dropped outside the timed region. Besides the mean wall
// time they report the median wall and CPU time of each repetition's calls (docs/performance.md).
#include <benchmark/benchmark.h>
#include <time.h>
#include <unistd.h>

#include <filesystem>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "link_bench.hpp"
#include "netns.hpp"
#include "nft_ruleset.hpp"
#include "patchbay/patchbay.hpp"
#include "route_socket.hpp"
#include "sysctl.hpp"
#include "worker_thread.hpp"

namespace {

using patchbay::RouterPreset;

// Runs one create + destroy per iteration; then, unless back to back, waits (untimed) for
// state.range(0) ms so the kernel's asynchronous namespace cleanup is done before the next one.
template <class F>
void measure(benchmark::State& state, F create_and_destroy) {
  for (auto _ : state) {
    create_and_destroy();
    if (state.range(0) > 0) {
      state.PauseTiming();
      std::this_thread::sleep_for(std::chrono::milliseconds(state.range(0)));
      state.ResumeTiming();
    }
  }
}

// Registers `fn` twice: settled (waiting `settle_ms` between iterations) and back to back.
void register_lab_benchmark(const char* name, void (*fn)(benchmark::State&), int repetitions,
                            int settle_ms) {
  benchmark::RegisterBenchmark(name, fn)
      ->Arg(settle_ms)
      ->ArgName("settle_ms")
      ->Iterations(1)
      ->Repetitions(repetitions)
      ->ReportAggregatesOnly(true)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark((std::string(name) + "/back_to_back").c_str(), fn)
      ->Arg(0)
      ->Iterations(1)
      ->Repetitions(repetitions)
      ->ReportAggregatesOnly(true)
      ->Unit(benchmark::kMillisecond);
}

void build_canonical_lab(benchmark::State& state, patchbay::LabOptions options) {
  measure(state, [&] {
    patchbay::Lab lab(options);
    auto dc = lab.add_router("dc").preset(RouterPreset::Public).build();
    auto home = lab.add_router("home").preset(RouterPreset::Home).build();
    (void)lab.add_device("server").iface("eth0", dc).build();
    (void)lab.add_device("laptop").iface("eth0", home).build();
    if (lab.thread_count() != 1)
      state.SkipWithError("a thread per namespace was started at build time");
  });
}

void CanonicalLab(benchmark::State& state) { build_canonical_lab(state, {}); }

// The same with an output directory: events.jsonl and state.json written on every event.
void CanonicalLabWithOutput(benchmark::State& state) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("patchbay-bench-out-" + std::to_string(::getpid()));
  build_canonical_lab(state, patchbay::LabOptions{.outdir = dir});
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

void Lab100(benchmark::State& state) {
  measure(state, [&] {
    patchbay::Lab lab;
    std::vector<patchbay::Router> edges;
    for (int i = 0; i < 10; ++i) {
      auto pub = lab.add_router("pub" + std::to_string(i)).preset(RouterPreset::Public).build();
      edges.push_back(pub);
      edges.push_back(lab.add_router("nat" + std::to_string(i))
                          .preset(RouterPreset::Home)
                          .upstream(pub)
                          .build());
    }
    for (int d = 0; d < 80; ++d) {
      (void)lab.add_device("dev" + std::to_string(d))
          .iface("eth0", edges[d % edges.size()])
          .build();
    }
  });
}

// Bare kernel work for the Lab100 shape: 101 namespaces, 100 veth pairs created in place,
// IPv4 + IPv6 addresses and default routes, DAD/forwarding sysctls, a bridge per router, one
// NAT batch per NAT router.
void RawFloor100(benchmark::State& state) {
  using namespace patchbay::internal;
  measure(state, [&] {
    patchbay::internal::UniqueFd root;
    WorkerThread worker("rawfloor", [&] { root = create_netns_on_this_thread("root"); });
    worker.call([&] {
      struct Ns {
        UniqueFd fd;
        std::unique_ptr<RouteSocket> rs;
        std::unique_ptr<NftSocket> nft;
      };
      auto make = [&](const std::string& name, bool router) {
        Ns ns;
        ns.fd = create_netns_on_this_thread(name);
        for (const char* key :
             {"net/ipv6/conf/all/accept_dad", "net/ipv6/conf/default/accept_dad"}) {
          write_sysctl(key, "0", name);
        }
        if (router) {
          write_sysctl("net/ipv4/ip_forward", "1", name);
          write_sysctl("net/ipv6/conf/all/forwarding", "1", name);
        }
        ns.rs = std::make_unique<RouteSocket>(RouteSocket::open_in_current_netns(name));
        if (router) ns.nft = std::make_unique<NftSocket>(NftSocket::open_in_current_netns(name));
        ns.rs->set_link_up(ns.rs->link_index("lo"), true);
        return ns;
      };
      auto addr = [](const std::string& a, int len) {
        return IpPrefix{boost::asio::ip::make_address(a), static_cast<std::uint8_t>(len)};
      };
      Ns hub = make("hub", true);
      enter_netns(hub.fd.get(), "hub");
      std::vector<Ns> nodes;
      nodes.reserve(100);
      for (int i = 0; i < 100; ++i) {
        bool router = i < 20;
        nodes.push_back(make("n" + std::to_string(i), router));
        enter_netns(hub.fd.get(), "hub");
        Ns& n = nodes.back();
        hub.rs->add_veth({"h" + std::to_string(i), -1, std::nullopt, true, 0, std::nullopt},
                         {"eth0", n.fd.get(), std::nullopt, false, 0, std::nullopt});
        int hub_if = hub.rs->link_index("h" + std::to_string(i));
        std::string net = "10." + std::to_string(i / 250) + "." + std::to_string(i % 250) + ".";
        hub.rs->add_address(hub_if, addr(net + "1", 24));
        std::string net6 = "fd00:" + std::to_string(i) + "::";
        hub.rs->add_address(hub_if, addr(net6 + "1", 64));
        int ifi = n.rs->link_index("eth0");
        n.rs->set_link_up(ifi, true);
        if (router) n.rs->add_bridge("br-lan", std::nullopt, true);
        n.rs->add_address(ifi, addr(net + "2", 24));
        n.rs->add_route(addr("0.0.0.0", 0), boost::asio::ip::make_address(net + "1"), ifi);
        n.rs->add_address(ifi, addr(net6 + "2", 64));
        n.rs->add_route(addr("::", 0), boost::asio::ip::make_address(net6 + "1"), ifi);
        if (router && i % 2 == 1) {
          RouterRules rules;
          rules.wan_ifname = "eth0";
          rules.lan_ifname = "br-lan";
          rules.wan_ipv4 = boost::asio::ip::make_address_v4(net + "2");
          rules.nat = patchbay::NatConfig::preset(patchbay::Nat::Home);
          n.nft->apply(rules);
        }
      }
    });
  });
}

// The ruleset of a Home router as the lab builds it (eth0 uplink, br-lan LAN).
patchbay::internal::RouterRules nat_rules(patchbay::Nat nat) {
  patchbay::internal::RouterRules rules;
  rules.wan_ifname = "eth0";
  rules.lan_ifname = "br-lan";
  rules.wan_ipv4 = boost::asio::ip::make_address_v4("198.18.0.2");
  rules.lan_v4 = patchbay::Ipv4Net{boost::asio::ip::make_address_v4("10.0.1.0"), 24};
  rules.nat = patchbay::NatConfig::preset(nat);
  rules.firewall = patchbay::FirewallConfig::preset(patchbay::Firewall::BlockInbound);
  return rules;
}

// Wall and CPU time of one timed call, in seconds. The kernel handles an nftables batch inside
// sendmsg(), so the calling thread's CPU time covers the kernel's work as well; wall time minus
// CPU time is waiting (for other processes on a loaded machine, or for locks).
struct Sample {
  double wall = 0;
  double cpu = 0;
};

double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

template <class F>
Sample time_call(F op) {
  const double cpu_start = thread_cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  op();
  const auto end = std::chrono::steady_clock::now();
  return {std::chrono::duration<double>(end - start).count(), thread_cpu_seconds() - cpu_start};
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

// Reports each iteration's wall time as measured by `timed_op`, plus the medians of the wall and
// CPU times of the repetition's iterations and the CPU mean (counters "median_us",
// "cpu_median_us", "cpu_mean_us"; the benchmark's own time is the wall mean).
template <class F>
void measure_manually(benchmark::State& state, F timed_op) {
  std::vector<double> wall;
  std::vector<double> cpu;
  for (auto _ : state) {
    const Sample s = timed_op();
    state.SetIterationTime(s.wall);
    wall.push_back(s.wall);
    cpu.push_back(s.cpu);
  }
  state.counters["median_us"] = median(wall) * 1e6;
  state.counters["cpu_median_us"] = median(cpu) * 1e6;
  double cpu_total = 0;
  for (double c : cpu) cpu_total += c;
  state.counters["cpu_mean_us"] =
      cpu.empty() ? 0 : cpu_total / static_cast<double>(cpu.size()) * 1e6;
}

void NatApply(benchmark::State& state) {
  using namespace patchbay::internal;
  const RouterRules rules = nat_rules(patchbay::Nat::Home);
  WorkerThread worker("nat-apply");
  measure_manually(state, [&] {
    return worker.invoke([&] {
      // A fresh router namespace per iteration, like a router being built.
      UniqueFd ns = create_netns_on_this_thread("nat-apply");
      NftSocket nft = NftSocket::open_in_current_netns("nat-apply");
      return time_call([&] { nft.install(rules); });
    });
  });
}

void NatModeSwitch(benchmark::State& state) {
  using namespace patchbay::internal;
  const RouterRules home = nat_rules(patchbay::Nat::Home);
  const RouterRules corporate = nat_rules(patchbay::Nat::Corporate);
  UniqueFd ns;
  WorkerThread worker("nat-switch", [&] { ns = create_netns_on_this_thread("nat-switch"); });
  std::optional<NftSocket> nft;
  worker.call([&] {
    nft.emplace(NftSocket::open_in_current_netns("nat-switch"));
    nft->install(home);
  });
  bool to_corporate = true;
  measure_manually(state, [&] {
    const RouterRules& next = to_corporate ? corporate : home;
    to_corporate = !to_corporate;
    return worker.invoke([&] { return time_call([&] { nft->apply(next); }); });
  });
  worker.call([&] { nft.reset(); });
}

// Many iterations per repetition (each a single nft batch), timed manually.
void register_nat_benchmark(const char* name, void (*fn)(benchmark::State&), int iterations) {
  benchmark::RegisterBenchmark(name, fn)
      ->Iterations(iterations)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace

int main(int argc, char** argv) {
  const auto& report = patchbay::try_enter_user_namespace();
  if (!report.entered && ::geteuid() != 0) {
    std::cerr << "patchbay_bench: " << report.error << "\n";
    return 1;
  }
  register_lab_benchmark("CanonicalLab", CanonicalLab, 30, 500);
  register_lab_benchmark("CanonicalLabWithOutput", CanonicalLabWithOutput, 30, 500);
  register_lab_benchmark("Lab100", Lab100, 10, 2000);
  register_lab_benchmark("RawFloor100", RawFloor100, 10, 2000);
  register_nat_benchmark("NatApply", NatApply, 200);
  register_nat_benchmark("NatModeSwitch", NatModeSwitch, 200);
  register_link_benchmarks();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
