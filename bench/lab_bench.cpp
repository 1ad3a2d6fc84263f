// patchbay_bench: what building and tearing down labs costs.
//   CanonicalLab — {public router, home NAT router, one device behind each}, create + destroy
//   Lab100       — 10 public routers, 10 NAT routers behind them, 80 devices, create + destroy
//   RawFloor100  — the same kernel work done with bare netlink calls on one thread (no
//                  bookkeeping, no validation): Lab100 / RawFloor100 is the library's overhead.
// Each measured iteration is one create + destroy. The kernel frees namespaces asynchronously
// (cleanup_net, with RCU grace periods) after we close the last fd, and that work stalls the
// next namespace creation now and then. By default every iteration therefore starts on a settled
// kernel (a paused 300 ms wait after it), and reports the median over repetitions; the
// "/back_to_back" variants skip the wait to show the steady-state throughput a test suite sees.
#include <benchmark/benchmark.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

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

void CanonicalLab(benchmark::State& state) {
  measure(state, [&] {
    patchbay::Lab lab;
    auto dc = lab.add_router("dc").preset(RouterPreset::Public).build();
    auto home = lab.add_router("home").preset(RouterPreset::Home).build();
    (void)lab.add_device("server").iface("eth0", dc).build();
    (void)lab.add_device("laptop").iface("eth0", home).build();
    if (lab.thread_count() != 1)
      state.SkipWithError("a thread per namespace was started at build time");
  });
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
          rules.nat = patchbay::Nat::Home;
          n.nft->apply(rules);
        }
      }
    });
  });
}

}  // namespace

int main(int argc, char** argv) {
  const auto& report = patchbay::try_enter_user_namespace();
  if (!report.entered && ::geteuid() != 0) {
    std::cerr << "patchbay_bench: " << report.error << "\n";
    return 1;
  }
  register_lab_benchmark("CanonicalLab", CanonicalLab, 30, 500);
  register_lab_benchmark("Lab100", Lab100, 10, 2000);
  register_lab_benchmark("RawFloor100", RawFloor100, 10, 2000);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
