// LinkTcp benchmarks: TCP throughput (iperf3, one stream, device a -> device b through a public
// router) over
//   veth          — a plain lab link, no condition: the kernel's own path;
//   emulator/0ms  — the same link spliced through the userspace emulator with no impairment;
//   emulator/10ms — the emulator adding 10 ms each way (20 ms RTT).
// The emulator runs on one thread of this process, so the process's CPU time during the
// transfer is the emulator's cost: reported as `emulator_cores` (CPU seconds per second) and
// `emulator_cores_per_Gbps`. `system_cores` is the whole machine's busy time (iperf3, the
// kernel's softirqs, the emulator) from /proc/stat. Each iteration is one 4 s iperf3 run
// (the first second omitted: slow start); sockets may grow to 256 MiB so a 20 ms RTT is not
// window-limited.
#include "link_bench.hpp"

#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "patchbay/patchbay.hpp"

namespace {

double process_cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Busy and total jiffies of all CPUs.
std::pair<double, double> system_jiffies() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  in >> cpu;
  std::vector<double> v;
  double x = 0;
  for (int i = 0; i < 8 && in >> x; ++i) v.push_back(x);
  const double total = std::accumulate(v.begin(), v.end(), 0.0);
  const double idle = v.size() > 4 ? v[3] + v[4] : 0;  // idle + iowait
  return {total - idle, total};
}

void grow_tcp_buffers(const patchbay::Device& d) {
  for (const char* key :
       {"net.ipv4.tcp_rmem=4096 131072 268435456", "net.ipv4.tcp_wmem=4096 65536 268435456"}) {
    patchbay::CommandResult r = d.run_command({"sysctl", "-q", "-w", key});
    if (!r.success()) throw std::runtime_error("sysctl " + std::string(key) + ": " + r.stderr_text);
  }
}

// One iperf3 run a -> b; the server (-1) serves one client and exits.
struct Run {
  double gbps = 0;
  double wall = 0;  // seconds, the omitted first one included
  double emulator_cpu = 0;
  double system_busy_share = 0;  // of all CPUs
  double retransmits = 0;
};

Run iperf_once(const patchbay::Device& a, const patchbay::Device& b) {
  patchbay::Process server = b.spawn_command({"iperf3", "-s", "-1", "-p", "5201"});
  std::string last;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const double cpu0 = process_cpu_seconds();
    const auto sys0 = system_jiffies();
    patchbay::CommandResult r = a.run_command(
        {"iperf3", "-J", "-c", b.ip()->to_string(), "-p", "5201", "-t", "4", "-O", "1"},
        std::chrono::seconds(30));
    last = r.stdout_text + r.stderr_text + server.stderr_text();
    if (r.stdout_text.find("Connection refused") != std::string::npos ||
        r.stdout_text.find("busy") != std::string::npos) {
      continue;  // the server is not listening yet, or the previous run's is still finishing
    }
    if (!r.success()) throw std::runtime_error("iperf3 failed: " + r.stdout_text + r.stderr_text);
    const auto sys1 = system_jiffies();
    nlohmann::json j = nlohmann::json::parse(r.stdout_text);
    if (j.contains("error")) throw std::runtime_error("iperf3: " + j["error"].dump());
    Run run;
    run.gbps = j["end"]["sum_received"]["bits_per_second"].get<double>() / 1e9;
    run.wall = j["end"]["sum_sent"]["seconds"].get<double>() + 1.0;
    run.retransmits = j["end"]["sum_sent"].value("retransmits", 0.0);
    run.emulator_cpu = process_cpu_seconds() - cpu0;
    run.system_busy_share = (sys1.first - sys0.first) / std::max(1.0, sys1.second - sys0.second);
    // The next run's server needs the port: this one must be gone first.
    if (!server.wait_for(std::chrono::seconds(10))) server.kill();
    return run;
  }
  throw std::runtime_error("iperf3 server in b never listened: " + last);
}

void LinkTcp(benchmark::State& state, std::optional<patchbay::LinkConditions> condition) {
  patchbay::Lab lab;
  patchbay::Router dc = lab.add_router("dc").build();
  patchbay::Device a = lab.add_device("a").iface("eth0", dc).build();
  patchbay::Device b = lab.add_device("b").iface("eth0", dc).build();
  grow_tcp_buffers(a);
  grow_tcp_buffers(b);
  if (condition) a.set_link_condition("eth0", *condition);
  double gbps = 0;
  double wall = 0;
  double emulator_cpu = 0;
  double busy = 0;
  double retransmits = 0;
  int runs = 0;
  for (auto _ : state) {
    try {
      Run r = iperf_once(a, b);
      gbps += r.gbps;
      wall += r.wall;
      emulator_cpu += r.emulator_cpu;
      busy += r.system_busy_share;
      retransmits += r.retransmits;
      ++runs;
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      return;
    }
  }
  const double mean = gbps / std::max(1, runs);
  const double cores = emulator_cpu / std::max(1e-9, wall);
  state.counters["Gbps"] = mean;
  state.counters["emulator_cores"] = cores;
  state.counters["emulator_cores_per_Gbps"] = mean > 0 ? cores / mean : 0;
  state.counters["retransmits"] = retransmits / std::max(1, runs);
  state.counters["system_cores"] = busy / std::max(1, runs) * std::thread::hardware_concurrency();
}

}  // namespace

void register_link_benchmarks() {
  using patchbay::LinkCondition;
  using patchbay::LinkConditions;
  auto reg = [](const char* name, std::optional<LinkConditions> c) {
    benchmark::RegisterBenchmark(name, [c](benchmark::State& s) { LinkTcp(s, c); })
        ->Iterations(3)
        ->Unit(benchmark::kSecond);
  };
  reg("LinkTcp/veth", std::nullopt);
  reg("LinkTcp/emulator/0ms", LinkConditions(LinkCondition::manual({})));
  reg("LinkTcp/emulator/10ms", LinkConditions(LinkCondition::manual({.latency_ms = 10})));
}
