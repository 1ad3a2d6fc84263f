// patchbay_bench: what building and tearing down labs costs.
//   CanonicalLab — {public router, home NAT router, one device behind each}, create + destroy
//   Lab100       — 10 public routers, 10 NAT routers behind them, 80 devices, create + destroy
//   RawFloor100  — the same kernel work done with bare netlink calls on one thread (no
//                  bookkeeping, no validation): Lab100 / RawFloor100 is the library's overhead.
#include <benchmark/benchmark.h>

#include <iostream>
#include <memory>
#include <vector>

#include "netns.hpp"
#include "nft_ruleset.hpp"
#include "patchbay/patchbay.hpp"
#include "route_socket.hpp"
#include "worker_thread.hpp"

namespace {

using patchbay::RouterPreset;

void CanonicalLab(benchmark::State& state) {
  for (auto _ : state) {
    patchbay::Lab lab;
    auto dc = lab.add_router("dc").preset(RouterPreset::Public).build();
    auto home = lab.add_router("home").preset(RouterPreset::Home).build();
    (void)lab.add_device("server").iface("eth0", dc).build();
    (void)lab.add_device("laptop").iface("eth0", home).build();
    if (lab.thread_count() != 1)
      state.SkipWithError("a thread per namespace was started at build time");
  }
}
BENCHMARK(CanonicalLab)->Unit(benchmark::kMillisecond)->MinTime(2.0);

void Lab100(benchmark::State& state) {
  for (auto _ : state) {
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
  }
}
BENCHMARK(Lab100)->Unit(benchmark::kMillisecond)->MinTime(3.0);

// Bare kernel work for the Lab100 shape: 101 namespaces, 100 veth pairs created in place,
// addresses and default routes on both ends, one NAT batch per NAT router.
void RawFloor100(benchmark::State& state) {
  using namespace patchbay::internal;
  for (auto _ : state) {
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
        int ifi = n.rs->link_index("eth0");
        n.rs->set_link_up(ifi, true);
        if (router) n.rs->add_bridge("br-lan", std::nullopt, true);
        n.rs->add_address(ifi, addr(net + "2", 24));
        n.rs->add_route(addr("0.0.0.0", 0), boost::asio::ip::make_address(net + "1"), ifi);
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
  }
}
BENCHMARK(RawFloor100)->Unit(benchmark::kMillisecond)->MinTime(3.0);

}  // namespace

int main(int argc, char** argv) {
  const auto& report = patchbay::try_enter_user_namespace();
  if (!report.entered && ::geteuid() != 0) {
    std::cerr << "patchbay_bench: " << report.error << "\n";
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
