#include "lab_core.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <spdlog/logger.h>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "conntrack.hpp"
#include "names.hpp"
#include "netns.hpp"
#include "patchbay/error.hpp"
#include "sysctl.hpp"

namespace patchbay::internal {
namespace {

std::atomic<unsigned> g_lab_sequence{0};

constexpr const char* kLanBridge = "br-lan";
constexpr const char* kIxBridge = "br-ix";

// Roles mixed into deterministic MACs, so the two ends of one link never collide.
enum MacRole : std::uint8_t { kMacIxBridge = 1, kMacWan = 2, kMacLan = 3, kMacDevice = 4 };

IpPrefix prefix(const Ipv4Net& n) { return {n.address, n.prefix_len}; }
IpPrefix prefix(const Ipv6Net& n) { return {n.address, n.prefix_len}; }
IpPrefix host_prefix(const Ipv6Address& a, std::uint8_t len) { return {a, len}; }

std::string kind_name(NodeKind kind) {
  switch (kind) {
    case NodeKind::Ix:
      return "ix";
    case NodeKind::Router:
      return "router";
    case NodeKind::Device:
      return "device";
  }
  return "node";
}

void disable_dad_sysctls(const std::string& node) {
  // Must happen before interfaces exist: accept_dad copies from "default" at creation.
  for (const char* key :
       {"net/ipv6/conf/all/accept_dad", "net/ipv6/conf/default/accept_dad",
        "net/ipv6/conf/all/dad_transmits", "net/ipv6/conf/default/dad_transmits"}) {
    write_sysctl(key, "0", node);
  }
}

// The interface `name` of device `dev`; throws Error(kNotFound) with `message` otherwise.
std::vector<DeviceIfaceRecord>::iterator find_iface(NodeRecord& dev, const std::string& name,
                                                    const std::string& message) {
  auto& ifaces = dev.device->ifaces;
  auto it =
      std::find_if(ifaces.begin(), ifaces.end(), [&](const auto& i) { return i.name == name; });
  if (it == ifaces.end()) throw Error(ErrorKind::kNotFound, dev.name + "/" + name, message);
  return it;
}

// Private lab directories are named patchbay-lab-<pid namespace inode>-<pid>-XXXXXX, so a lab
// can recognise directories left by a test process that died without running destructors (for
// example by SIGKILL) and remove them: same PID namespace, and that PID no longer exists.
std::string temp_dir_prefix(pid_t pid) {
  struct stat st {};
  ino_t pidns = ::stat("/proc/self/ns/pid", &st) == 0 ? st.st_ino : 0;
  return "patchbay-lab-" + std::to_string(pidns) + "-" + std::to_string(pid) + "-";
}

void sweep_dead_labs_temp_dirs() {
  std::error_code ec;
  const std::string ours = temp_dir_prefix(0);                    // "patchbay-lab-<ns>-0-"
  const std::string ns_prefix = ours.substr(0, ours.size() - 2);  // "patchbay-lab-<ns>-"
  for (const auto& entry :
       std::filesystem::directory_iterator(std::filesystem::temp_directory_path(), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(ns_prefix, 0) != 0) continue;
    const std::string rest = name.substr(ns_prefix.size());
    const auto dash = rest.find('-');
    if (dash == std::string::npos || rest.find_first_not_of("0123456789") != dash) continue;
    const pid_t owner = static_cast<pid_t>(std::stol(rest.substr(0, dash)));
    if (owner <= 0 || owner == ::getpid()) continue;
    if (::kill(owner, 0) == -1 && errno == ESRCH) {
      std::error_code ignored;
      std::filesystem::remove_all(entry.path(), ignored);
    }
  }
}

// The behaviour a NAT choice stands for: nullopt for None, the given config for Custom.
std::optional<NatConfig> resolve_nat(Nat nat, const std::optional<NatConfig>& custom,
                                     const std::string& node) {
  if (nat == Nat::None) return std::nullopt;
  if (nat != Nat::Custom) return NatConfig::preset(nat);
  if (!custom) {
    throw Error(ErrorKind::kInvalidArgument, node,
                "router '" + node + "': Nat::Custom needs a NatConfig (pass one to nat())");
  }
  auto check = [&](std::chrono::seconds value, const char* field) {
    if (value.count() < 1 || value.count() > 365L * 24 * 3600) {
      throw Error(ErrorKind::kInvalidArgument, node,
                  "router '" + node + "': NAT timeout " + field + " = " +
                      std::to_string(value.count()) + " s is outside 1 s .. 1 year");
    }
  };
  check(custom->timeouts.udp, "udp");
  check(custom->timeouts.udp_stream, "udp_stream");
  check(custom->timeouts.tcp_established, "tcp_established");
  return custom;
}

std::optional<FirewallConfig> resolve_firewall(Firewall firewall,
                                               const std::optional<FirewallConfig>& custom,
                                               const std::string& node) {
  if (firewall == Firewall::None) return std::nullopt;
  if (firewall != Firewall::Custom) return FirewallConfig::preset(firewall);
  if (!custom) {
    throw Error(
        ErrorKind::kInvalidArgument, node,
        "router '" + node + "': Firewall::Custom needs a FirewallConfig (pass one to firewall())");
  }
  // Before any kernel change, so a bad hand-made config leaves the router as it was.
  try {
    custom->validate();
  } catch (const Error& e) {
    throw Error(ErrorKind::kInvalidArgument, node, "router '" + node + "': " + e.what());
  }
  return custom;
}

RouterRules rules_for(const RouterData& d) {
  RouterRules rules;
  rules.wan_ifname = d.wan_name;
  rules.lan_ifname = kLanBridge;
  if (d.wan_v4) rules.wan_ipv4 = d.wan_v4->address;
  rules.lan_v4 = d.lan_v4;
  rules.nat = d.nat_config;
  rules.firewall = d.firewall_config;
  rules.nat6.mode = d.nat_v6;
  rules.nat6.lan = d.lan_v6;
  rules.nat6.external = d.nptv6_prefix;
  rules.block_icmp_frag_needed = d.block_icmp_frag_needed;
  return rules;
}

// IPv6 translation needs a LAN prefix to translate and an uplink address to translate to.
// `asked` is the ip_support the user chose (a router below a v4-only one ends up v4-only).
void require_ipv6_for_nat_v6(const RouterData& d, const std::string& node, IpSupport asked,
                             const std::string& upstream) {
  if (d.nat_v6 == NatV6Mode::None || (d.wan_v6 && d.lan_v6)) return;
  const std::string why = has_v6(asked) && !upstream.empty()
                              ? "upstream router '" + upstream + "' has no IPv6"
                              : "ip_support is " + std::string(to_string(asked));
  throw Error(ErrorKind::kInvalidArgument, node,
              "router '" + node + "': nat_v6 " + std::string(to_string(d.nat_v6)) +
                  " needs IPv6 on the uplink and the LAN (" + why + ")");
}

// The prefix by which the rest of the lab reaches this router's IPv6 LAN, if any: the LAN itself
// when it is routed unchanged, the outside prefix with NPTv6. Behind NAT66 masquerade the LAN
// is hidden; replies come back to the uplink address through conntrack.
std::optional<IpPrefix> routed_v6_prefix(const RouterData& d) {
  if (!d.lan_v6 || !d.wan_v6) return std::nullopt;
  switch (d.nat_v6) {
    case NatV6Mode::None:
      return prefix(*d.lan_v6);
    case NatV6Mode::Nptv6:
      if (d.nptv6_prefix) return prefix(*d.nptv6_prefix);
      return std::nullopt;
    case NatV6Mode::Masquerade:
      return std::nullopt;
  }
  return std::nullopt;
}

bool same_prefix(const std::optional<IpPrefix>& a, const std::optional<IpPrefix>& b) {
  if (!a || !b) return !a && !b;
  return a->address == b->address && a->prefix_len == b->prefix_len;
}

// The return routes for `dst`, a prefix behind the router described by `d`: one in every
// ancestor namespace up to and including the lab root, each via the uplink address of the next
// router down the path (sub-routers' parents are routers, whose own parents need the route
// too). The walk ends at an ancestor that has no uplink address of the family.
template <class Lookup>
std::vector<RouterData::ForeignRoute> return_path(const RouterData& d, const IpPrefix& dst, bool v6,
                                                  Lookup&& record) {
  std::vector<RouterData::ForeignRoute> out;
  std::optional<NodeId> ancestor = d.upstream;
  boost::asio::ip::address via = v6 ? boost::asio::ip::address(d.wan_v6->address)
                                    : boost::asio::ip::address(d.wan_v4->address);
  for (;;) {
    NodeRecord& owner = record(ancestor.value_or(kIxId));
    out.push_back({owner.id, dst, via});
    if (!ancestor) break;
    const RouterData& a = *owner.router;
    if (v6 ? !a.wan_v6 : !a.wan_v4) break;
    via = v6 ? boost::asio::ip::address(a.wan_v6->address)
             : boost::asio::ip::address(a.wan_v4->address);
    ancestor = a.upstream;
  }
  return out;
}

// Best effort: a route may already be gone with its interface, and nothing depends on it.
template <class Lookup>
void delete_routes_quietly(const std::vector<RouterData::ForeignRoute>& routes, Lookup&& record) {
  for (const auto& r : routes) {
    try {
      record(r.ns_owner).rtnl->delete_route(r.dst, r.via);
    } catch (...) {
    }
  }
}

// All of `routes` or, if one fails, none of them (the error is rethrown).
template <class Lookup>
void add_routes_or_none(const std::vector<RouterData::ForeignRoute>& routes, Lookup&& record) {
  std::vector<RouterData::ForeignRoute> added;
  try {
    for (const auto& r : routes) {
      record(r.ns_owner).rtnl->add_route(r.dst, r.via);
      added.push_back(r);
    }
  } catch (...) {
    delete_routes_quietly(added, record);
    throw;
  }
}

// Conntrack timeouts are per network namespace, i.e. per router: the NAT's, or the kernel's
// defaults once the router has no NAT.
void write_conntrack_timeouts(int root_netns, int router_netns, const std::string& node,
                              const std::optional<NatConfig>& nat) {
  using std::chrono::seconds;
  const NatTimeouts t =
      nat ? nat->timeouts : NatTimeouts{seconds(30), seconds(120), seconds(432000)};
  ReturnToRoot home(root_netns);
  enter_netns(router_netns, node);
  write_sysctl("net/netfilter/nf_conntrack_udp_timeout", std::to_string(t.udp.count()), node);
  write_sysctl("net/netfilter/nf_conntrack_udp_timeout_stream",
               std::to_string(t.udp_stream.count()), node);
  write_sysctl("net/netfilter/nf_conntrack_tcp_timeout_established",
               std::to_string(t.tcp_established.count()), node);
}

// LabOptions::link_backend, with PATCHBAY_LINK_BACKEND overriding Auto.
LinkBackend requested_backend(const LabOptions& options) {
  if (options.link_backend != LinkBackend::Auto) return options.link_backend;
  const char* env = std::getenv("PATCHBAY_LINK_BACKEND");
  if (env == nullptr || *env == '\0') return LinkBackend::Auto;
  try {
    return parse_link_backend(env);
  } catch (const Error& e) {
    throw Error(ErrorKind::kInvalidArgument, "PATCHBAY_LINK_BACKEND",
                std::string("environment variable PATCHBAY_LINK_BACKEND: ") + e.what());
  }
}

// LabOptions::seed, else PATCHBAY_SEED, else a fixed default: runs are reproducible unless
// asked otherwise.
std::uint64_t lab_seed(const LabOptions& options) {
  if (options.seed) return *options.seed;
  const char* env = std::getenv("PATCHBAY_SEED");
  if (env == nullptr || *env == '\0') return 1;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(env, &end, 0);
  if (errno != 0 || end == env || *end != '\0') {
    throw Error(
        ErrorKind::kInvalidArgument, "PATCHBAY_SEED",
        std::string("environment variable PATCHBAY_SEED='") + env + "' is not an unsigned integer");
  }
  return v;
}

nlohmann::json conditions_json(const LinkConditions& c) {
  auto one = [](const std::optional<LinkCondition>& x) {
    return x ? nlohmann::json::parse(to_json(*x)) : nlohmann::json(nullptr);
  };
  return {{"egress", one(c.egress)}, {"ingress", one(c.ingress)}};
}

}  // namespace

LabCore::LabCore(LabOptions options) : options_(std::move(options)) {
  unsigned seq = g_lab_sequence++;
  const LinkBackend backend = requested_backend(options_);
  seed_ = lab_seed(options_);
  if (options_.outdir.empty()) {
    sweep_dead_labs_temp_dirs();
    std::string tmpl =
        (std::filesystem::temp_directory_path() / (temp_dir_prefix(::getpid()) + "XXXXXX"))
            .string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      throw Error(ErrorKind::kKernel, "outdir", "cannot create a temporary lab directory", errno);
    }
    outdir_ = tmpl;
    owns_outdir_ = true;
  } else {
    outdir_ = options_.outdir;
    std::error_code ec;
    std::filesystem::create_directories(outdir_, ec);
    if (ec) {
      throw Error(ErrorKind::kInvalidArgument, outdir_.string(),
                  "cannot create lab output directory '" + outdir_.string() + "': " + ec.message());
    }
  }

  auto root = std::make_unique<NodeRecord>();
  root->id = kIxId;
  root->name = "ix";
  root->kind = NodeKind::Ix;
  NodeRecord* rootp = root.get();
  std::string root_label = "lab" + std::to_string(seq) + "-root";
  // The control thread is born into the lab root namespace and lives as long as the lab.
  control_ = std::make_unique<WorkerThread>(
      "lab" + std::to_string(seq) + ":ctl",
      [rootp, root_label] { rootp->netns = create_netns_on_this_thread(root_label); });
  try {
    control_->call([&] {
      const std::string node = "lab root";
      rootp->netns_inode = netns_inode(rootp->netns.get());
      write_sysctl("net/ipv4/ip_forward", "1", node);
      write_sysctl("net/ipv6/conf/all/forwarding", "1", node);
      if (!options_.ipv6_dad) disable_dad_sysctls(node);
      rootp->rtnl = std::make_unique<RouteSocket>(RouteSocket::open_in_current_netns(node));
      rootp->rtnl->set_link_up(rootp->rtnl->link_index("lo"), true);
      ix_bridge_ifindex_ =
          rootp->rtnl->add_bridge(kIxBridge, deterministic_mac(kIxId, kMacIxBridge), true);
      rootp->rtnl->add_address(ix_bridge_ifindex_,
                               {AddressPlan::ix_gateway_v4(), AddressPlan::ix_v4().prefix_len});
      rootp->rtnl->add_address(ix_bridge_ifindex_,
                               {AddressPlan::ix_gateway_v6(), AddressPlan::ix_v6().prefix_len});
    });
  } catch (...) {
    // Closing fds works from any thread; the control thread may never have started properly.
    root.reset();
    control_.reset();
    if (owns_outdir_) {
      std::error_code ec;
      std::filesystem::remove_all(outdir_, ec);
    }
    throw;
  }
  capture_ring_bytes_ = options_.capture_ring_bytes;
  if (capture_ring_bytes_ == 0) {
    if (const char* env = std::getenv("PATCHBAY_CAPTURE_MIB"); env != nullptr && *env != '\0') {
      char* end = nullptr;
      const unsigned long mib = std::strtoul(env, &end, 10);
      if (end == env || *end != '\0' || mib > (1ul << 20)) {
        throw Error(ErrorKind::kInvalidArgument, "PATCHBAY_CAPTURE_MIB",
                    std::string("PATCHBAY_CAPTURE_MIB='") + env +
                        "' is not a number of MiB (0 to 1048576)");
      }
      capture_ring_bytes_ = static_cast<std::size_t>(mib) << 20;
    }
  }
  // Events only where the user asked for output: a temporary directory goes away unread.
  events_ = owns_outdir_ ? std::make_shared<EventLog>()
                         : std::make_shared<EventLog>(outdir_ / "events.jsonl");
  nodes_.emplace(kIxId, std::move(root));
  nodes_.at(kIxId)->runtime = make_runtime(*nodes_.at(kIxId), "ix");
  conditioner_ = std::make_unique<LinkConditioner>(backend, seed_, rootp->netns.get());
  emit_event("lab_created", {{"lab_prefix", root_label.substr(0, root_label.size() - 5)},
                             {"label", options_.label}});
  emit_event("ix_created", {{"bridge", kIxBridge},
                            {"cidr", AddressPlan::ix_v4().to_string()},
                            {"gw", AddressPlan::ix_gateway_v4().to_string()},
                            {"cidr_v6", AddressPlan::ix_v6().to_string()},
                            {"gw_v6", AddressPlan::ix_gateway_v6().to_string()}});
}

void LabCore::emit_event(std::string_view kind, const EventLog::Payload& payload) {
  std::lock_guard lock(mu_);
  emit_event_locked(kind, payload);
}

std::string LabCore::capture_key(const NodeRecord& rec, const std::string& iface) const {
  return kind_name(rec.kind) + "." + rec.name + "." + iface;
}

void LabCore::start_ring_capture_locked(NodeRecord& rec, const std::string& iface) {
  if (capture_ring_bytes_ == 0) return;
  const std::string key = capture_key(rec, iface);
  try {
    if (!capture_) capture_ = std::make_unique<LinkCapture>();
    UniqueFd socket;
    {
      ReturnToRoot home(record(kIxId).netns.get());
      enter_netns(rec.netns.get(), rec.name);
      socket = open_capture_socket(rec.rtnl->link_index(iface), key);
    }
    capture_->add(key, std::move(socket),
                  CaptureOptions{.ring_bytes = capture_ring_bytes_,
                                 .interface_name = iface,
                                 .interface_description = kind_name(rec.kind) + " '" + rec.name +
                                                          "' interface '" + iface + "'"});
  } catch (const std::exception& e) {
    // Capture is for diagnosis: a node without it is still a working node.
    if (rec.lib_log) rec.lib_log->warn("no packet capture on {}: {}", iface, e.what());
  }
}

void LabCore::stop_captures_locked(const NodeRecord& rec) noexcept {
  if (!capture_) return;
  try {
    const std::string prefix = kind_name(rec.kind) + "." + rec.name + ".";
    for (const std::string& key : capture_->keys()) {
      if (key.rfind(prefix, 0) == 0 || key.rfind("stream:" + prefix, 0) == 0) {
        try {
          capture_->remove(key);
        } catch (const std::exception&) {
          // A streamed file that could not be completed; the node goes away regardless.
        }
      }
    }
  } catch (const std::exception&) {
  }
}

void LabCore::start_capture(NodeId node, const std::string& iface,
                            const std::filesystem::path& path, std::uint64_t max_bytes) {
  control_->call([&] {
    std::lock_guard lock(mu_);
    NodeRecord& rec = record(node);
    const std::string key = "stream:" + capture_key(rec, iface);
    const std::string who = kind_name(rec.kind) + " '" + rec.name + "'";
    int ifindex = 0;
    try {
      ifindex = rec.rtnl->link_index(iface);
    } catch (const Error&) {
      throw Error(ErrorKind::kNotFound, rec.name + "/" + iface,
                  who + " has no interface '" + iface + "' to capture");
    }
    if (!capture_) capture_ = std::make_unique<LinkCapture>();
    for (const std::string& k : capture_->keys()) {
      if (k == key) {
        throw Error(ErrorKind::kAlreadyExists, rec.name + "/" + iface,
                    "interface '" + iface + "' of " + who + " is already being captured");
      }
    }
    UniqueFd socket;
    {
      ReturnToRoot home(record(kIxId).netns.get());
      enter_netns(rec.netns.get(), rec.name);
      socket = open_capture_socket(ifindex, key);
    }
    capture_->add(key, std::move(socket),
                  CaptureOptions{.file = path.string(),
                                 .max_file_bytes = max_bytes,
                                 .interface_name = iface,
                                 .interface_description = who + " interface '" + iface + "'"});
    emit_event_locked("capture_started",
                      {{"node", rec.name}, {"iface", iface}, {"file", path.string()}});
  });
}

void LabCore::stop_capture(NodeId node, const std::string& iface) {
  control_->call([&] {
    std::lock_guard lock(mu_);
    NodeRecord& rec = record(node);
    const std::string key = "stream:" + capture_key(rec, iface);
    bool found = false;
    if (capture_) {
      for (const std::string& k : capture_->keys()) found |= k == key;
    }
    if (!found) {
      throw Error(ErrorKind::kNotFound, rec.name + "/" + iface,
                  "interface '" + iface + "' of " + kind_name(rec.kind) + " '" + rec.name +
                      "' is not being captured");
    }
    capture_->remove(key);
    emit_event_locked("capture_stopped", {{"node", rec.name}, {"iface", iface}});
  });
}

void LabCore::user_event(NodeId node, const std::string& name,
                         const std::vector<std::pair<std::string, std::string>>& fields) {
  if (name.empty()) {
    throw Error(ErrorKind::kInvalidArgument, "event", "an event needs a name");
  }
  for (const auto& [key, value] : fields) {
    if (key == "kind" || key == "timestamp") {
      throw Error(ErrorKind::kInvalidArgument, key,
                  "event '" + name + "': field '" + key + "' is reserved for the envelope");
    }
  }
  std::lock_guard lock(mu_);
  const NodeRecord& rec = record(node);
  if (!events_ || !events_->enabled()) return;
  EventLog::Payload field_json = EventLog::Payload::object();
  for (const auto& [key, value] : fields) field_json[key] = value;
  // The node's file has formats.md's extracted-event form: kind, the fields, timestamp.
  EventLog::Payload line = {{"kind", name}};
  for (const auto& [key, value] : fields) line[key] = value;
  line["timestamp"] = rfc3339_now();
  // One file per node, appended line by line (O_APPEND: whole lines even from several threads).
  const std::filesystem::path file =
      outdir_ / (kind_name(rec.kind) + "." + rec.name + ".events.jsonl");
  std::ofstream out(file, std::ios::app);
  out << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  out.close();
  events_->emit("user_event", {{"node", rec.name}, {"name", name}, {"fields", field_json}});
}

void LabCore::emit_event_locked(std::string_view kind, const EventLog::Payload& payload) {
  if (!events_ || !events_->enabled()) return;
  events_->emit(kind, payload);
  // The library's own line in the node's log, so a node's file tells its story on its own.
  for (const char* key : {"router", "device", "node", "name"}) {
    auto it = payload.find(key);
    if (it == payload.end() || !it->is_string()) continue;
    if (auto id = find(it->get<std::string>(), NodeKind::Router)) {
      if (auto& log = record(*id).lib_log) log->info("{} {}", kind, payload.dump());
    } else if (auto dev = find(it->get<std::string>(), NodeKind::Device)) {
      if (auto& log = record(*dev).lib_log) log->info("{} {}", kind, payload.dump());
    }
    break;
  }
  // After close the nodes are going away; the state written at close stays the last word.
  if (closed_ && kind != "lab_stopped") return;
  // state.json follows every event, replaced whole (write, then rename), so a reader never
  // sees a half-written file.
  const std::filesystem::path tmp = outdir_ / "state.json.tmp";
  {
    std::ofstream out(tmp);
    out << state_json_locked() << "\n";
  }
  std::error_code ec;
  std::filesystem::rename(tmp, outdir_ / "state.json", ec);
}

LabCore::~LabCore() { close(); }

bool LabCore::called_from_lab_thread() const {
  if (control_ && control_->on_worker_thread()) return true;
  std::lock_guard lock(mu_);
  for (const auto& [id, rec] : nodes_) {
    if (rec->runtime && rec->runtime->owns_current_thread()) return true;
  }
  return false;
}

bool LabCore::mark_closed() {
  std::lock_guard lock(mu_);
  if (std::exchange(closed_, true)) return false;  // from here on nodes are dead to handles
  // The last state with every node still in it, marked "stopped".
  emit_event_locked("lab_stopped", {});
  return true;
}

void LabCore::teardown() {
  std::vector<std::shared_ptr<NodeRuntime>> runtimes;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, rec] : nodes_) {
      if (rec->runtime) runtimes.push_back(rec->runtime);
    }
  }
  // Every node stops before any is joined: a thread of one node may be waiting for a process
  // or a coroutine of another.
  for (auto& rt : runtimes) rt->begin_shutdown();
  {
    // Whatever the nodes' own kills missed (daemons that left their process group) dies with
    // the PID namespace.
    std::lock_guard lock(mu_);
    pidns_.reset();
  }
  for (auto& rt : runtimes) rt->finish_shutdown();
  control_->call([&] {
    std::lock_guard lock(mu_);
    // Captures and the emulator first: they hold sockets on interfaces of every namespace.
    // Streamed capture files are completed here.
    capture_.reset();
    conditioner_.reset();
    // Devices before routers before the root, so veth ends vanish top-down.
    for (NodeKind kind : {NodeKind::Device, NodeKind::Router, NodeKind::Ix}) {
      std::erase_if(nodes_, [kind](const auto& entry) { return entry.second->kind == kind; });
    }
  });
  control_.reset();
  if (owns_outdir_) {
    std::error_code ec;
    std::filesystem::remove_all(outdir_, ec);
  }
}

NodeRecord& LabCore::record(NodeId id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) throw Error(ErrorKind::kRemoved, std::to_string(id), "node was removed");
  return *it->second;
}

const NodeRecord& LabCore::record(NodeId id) const {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) throw Error(ErrorKind::kRemoved, std::to_string(id), "node was removed");
  return *it->second;
}

void LabCore::check_name_free(const std::string& name, std::string_view kind) const {
  if (name == "ix") {
    throw Error(ErrorKind::kInvalidArgument, name,
                "the name 'ix' is reserved for the lab's internet exchange");
  }
  for (const auto& [id, rec] : nodes_) {
    if (rec->kind == NodeKind::Ix || rec->name != name) continue;
    if (kind_name(rec->kind) == kind) {
      throw Error(ErrorKind::kAlreadyExists, name,
                  std::string(kind) + " '" + name + "' already exists");
    }
    throw Error(
        ErrorKind::kAlreadyExists, name,
        "name '" + name + "' is already used by " + kind_name(rec->kind) + " '" + name + "'");
  }
}

std::shared_ptr<spdlog::logger> LabCore::logger(NodeId id) const {
  std::lock_guard lock(mu_);
  return record(id).user_log;
}

std::shared_ptr<NodeRuntime> LabCore::make_runtime(NodeRecord& rec, std::string_view kind) {
  // The lab root has no files of its own (its events are the lab's).
  const bool files = events_ && events_->enabled() && rec.kind != NodeKind::Ix;
  NodeLogFiles logs =
      NodeLogFiles::create(files ? outdir_ : std::filesystem::path(), std::string(kind), rec.name);
  rec.user_log = logs.logger(rec.name);
  rec.lib_log = logs.logger("patchbay");
  NodeRuntimeConfig cfg;
  cfg.node_name = rec.name;
  cfg.kind = std::string(kind);
  cfg.netns_fd = rec.netns.get();
  cfg.outdir = outdir_;
  cfg.pid_namespace_fd = [this] { return pid_namespace_fd(); };
  if (events_ && events_->enabled()) {
    // Commands change no topology: events.jsonl only, state.json stays as it is.
    cfg.on_event = [events = events_](std::string_view kind, const EventLog::Payload& payload) {
      events->emit(kind, payload);
    };
  }
  return std::make_shared<NodeRuntime>(std::move(cfg));
}

int LabCore::pid_namespace_fd() {
  // Started from the control thread: the init's PR_SET_PDEATHSIG follows that thread.
  return control_->invoke([this] {
    if (!pidns_) pidns_.emplace(PidNamespace::start());
    return pidns_->ns_fd();
  });
}

void LabCore::create_node_namespace(NodeRecord& rec, bool forwarding_v4, bool forwarding_v6,
                                    bool ipv6) {
  NodeRecord& root = record(kIxId);
  // Whatever happens next, the control thread goes back home to the lab root.
  ReturnToRoot home(root.netns.get());
  rec.netns = create_netns_on_this_thread(rec.name);
  rec.netns_inode = netns_inode(rec.netns.get());
  if (!options_.ipv6_dad) disable_dad_sysctls(rec.name);
  // IPv6 addresses must survive link_down/link_up like IPv4 ones do.
  write_sysctl("net/ipv6/conf/default/keep_addr_on_down", "1", rec.name);
  write_sysctl("net/ipv6/conf/all/keep_addr_on_down", "1", rec.name);
  if (forwarding_v4) write_sysctl("net/ipv4/ip_forward", "1", rec.name);
  if (forwarding_v6) write_sysctl("net/ipv6/conf/all/forwarding", "1", rec.name);
  if (!ipv6) {
    // A node without IPv6 addresses sends no IPv6 either: no link-local, router solicitations
    // or MLD reports of its own. Such chatter would also be packets on emulated links, shifting
    // a seeded loss pattern by the timing of the kernel's timers.
    write_sysctl("net/ipv6/conf/default/disable_ipv6", "1", rec.name);
    write_sysctl("net/ipv6/conf/all/disable_ipv6", "1", rec.name);
  }
  rec.rtnl = std::make_unique<RouteSocket>(RouteSocket::open_in_current_netns(rec.name));
  if (rec.kind == NodeKind::Router) {
    rec.nft = std::make_unique<NftSocket>(NftSocket::open_in_current_netns(rec.name));
  }
  rec.rtnl->set_link_up(rec.rtnl->link_index("lo"), true);
}

Router LabCore::build_router(const RouterBuilder::Spec& spec, bool region_router) {
  return control_->invoke([&]() -> Router {
    std::lock_guard lock(mu_);
    if (closed_) throw Error(ErrorKind::kRemoved, spec.name, "the lab was destroyed");
    if (!region_router) validate_node_name("router", spec.name);
    check_name_free(spec.name, "router");

    PresetValues base{Nat::None, Firewall::None, IpSupport::V4Only, LanPool::Public};
    if (spec.preset) base = preset_values(*spec.preset);
    RouterData data;
    data.nat = spec.nat.value_or(base.nat);
    data.nat_config = resolve_nat(data.nat, spec.nat_config, spec.name);
    data.nat_v6 = spec.nat_v6.value_or(NatV6Mode::None);
    data.firewall = spec.firewall.value_or(base.firewall);
    data.firewall_config = resolve_firewall(data.firewall, spec.firewall_config, spec.name);
    data.block_icmp_frag_needed = spec.block_icmp_frag_needed;
    data.ip_support = spec.ip_support.value_or(base.ip_support);
    if (spec.pool) {
      data.pool = *spec.pool;
    } else if (spec.preset) {
      data.pool = base.pool;
    } else {
      data.pool = data.nat == Nat::None    ? LanPool::Public
                  : data.nat == Nat::Cgnat ? LanPool::Carrier
                                           : LanPool::Private;
    }
    if (spec.mtu) {
      int min_mtu = has_v6(data.ip_support) ? 1280 : 576;
      if (*spec.mtu < min_mtu || *spec.mtu > 65535) {
        throw Error(ErrorKind::kInvalidArgument, spec.name,
                    "router '" + spec.name + "': mtu " + std::to_string(*spec.mtu) +
                        " is outside " + std::to_string(min_mtu) + "..65535");
      }
      data.mtu = spec.mtu;
    }
    NodeRecord* parent = nullptr;
    RegionRecord* region = nullptr;
    std::optional<std::string> upstream_name = spec.upstream;
    if (spec.region) {
      if (spec.upstream) {
        throw Error(ErrorKind::kInvalidArgument, spec.name,
                    "router '" + spec.name + "': region and upstream both given");
      }
      region = &region_record(*spec.region);
      upstream_name = record(region->router).name;
      data.region = region->name;
    }
    if (upstream_name) {
      if (*upstream_name == spec.name) {
        throw Error(ErrorKind::kInvalidArgument, spec.name,
                    "router '" + spec.name + "' cannot be its own upstream (upstream cycle)");
      }
      auto pid = find(*upstream_name, NodeKind::Router);
      if (!pid) {
        throw Error(
            ErrorKind::kNotFound, *upstream_name,
            "unknown upstream router '" + *upstream_name + "' for router '" + spec.name + "'");
      }
      parent = &record(*pid);
      check_attachable(*parent);
      data.upstream = *pid;
      if (!data.region) data.region = parent->router->region;
    }
    std::optional<Ipv4Net> explicit_lan;
    if (spec.lan_cidr) {
      explicit_lan = parse_ipv4_net(*spec.lan_cidr);
      if (explicit_lan->prefix_len > 30) {
        throw Error(
            ErrorKind::kInvalidArgument, spec.name,
            "router '" + spec.name + "': lan_cidr " + *spec.lan_cidr + " is narrower than /30");
      }
      Ipv4Net ix = AddressPlan::ix_v4();
      if (ix.contains(explicit_lan->address) || explicit_lan->contains(ix.address)) {
        throw Error(ErrorKind::kInvalidArgument, spec.name,
                    "router '" + spec.name + "': lan_cidr " + *spec.lan_cidr +
                        " overlaps the IX (" + ix.to_string() + ")");
      }
      for (const auto& [id, rec] : nodes_) {
        if (rec->router && rec->router->lan_v4 &&
            (rec->router->lan_v4->contains(explicit_lan->address) ||
             explicit_lan->contains(rec->router->lan_v4->address))) {
          throw Error(ErrorKind::kInvalidArgument, spec.name,
                      "router '" + spec.name + "': lan_cidr " + *spec.lan_cidr +
                          " overlaps the LAN of router '" + rec->name + "'");
        }
      }
    }

    int region_lan = 0;  // the region's /24 this router takes, committed on success
    if (region && !explicit_lan && data.pool == LanPool::Public && has_v4(data.ip_support)) {
      region_lan = region->next_lan;
      if (region_lan > 15) {
        throw Error(ErrorKind::kInvalidArgument, spec.name,
                    "region '" + region->name + "' public downstream pool exhausted (max 15 /24s)");
      }
      explicit_lan = Ipv4Net{
          Ipv4Address({198, 18, static_cast<unsigned char>(16 * region->index + region_lan), 0}),
          24};
    }
    // Allocate on copies; they replace the lab's allocators only when the build succeeds.
    AddressPlan plan = plan_;
    std::optional<LanHosts> parent_v4 = parent ? parent->router->hosts_v4 : std::nullopt;
    std::optional<LanHosts> parent_v6 = parent ? parent->router->hosts_v6 : std::nullopt;
    NodeId id = next_id_;
    NodeId lan_switch = next_id_ + 1;

    bool want_v4 = has_v4(data.ip_support);
    bool want_v6 = has_v6(data.ip_support);
    if (parent) {
      if (want_v4 && !parent_v4) want_v4 = false;
      if (want_v6 && !parent_v6) want_v6 = false;
      if (!want_v4 && !want_v6) {
        throw Error(ErrorKind::kInvalidArgument, spec.name,
                    "router '" + spec.name + "' shares no IP family with its upstream '" +
                        parent->name + "'");
      }
    }
    // Report what the router really has: a dual-stack router below a v4-only one is v4-only.
    data.ip_support = want_v4 && want_v6 ? IpSupport::DualStack
                      : want_v4          ? IpSupport::V4Only
                                         : IpSupport::V6Only;
    if (want_v4) {
      data.wan_v4 = parent ? Ipv4Net{parent_v4->next_v4(), parent->router->lan_v4->prefix_len}
                           : Ipv4Net{plan.next_ix_v4(), AddressPlan::ix_v4().prefix_len};
      data.lan_v4 = explicit_lan
                        ? Ipv4Net{Ipv4Address(explicit_lan->address.to_uint() &
                                              (explicit_lan->prefix_len == 0
                                                   ? 0u
                                                   : ~0u << (32 - explicit_lan->prefix_len))),
                                  explicit_lan->prefix_len}
                        : plan.next_lan_v4(data.pool);
      // Pool prefixes skip LANs that were given explicitly.
      while (!explicit_lan && lan_overlaps(*data.lan_v4)) data.lan_v4 = plan.next_lan_v4(data.pool);
      data.hosts_v4.emplace(spec.name, *data.lan_v4);
    }
    if (want_v6) {
      data.wan_v6 = parent ? Ipv6Net{parent_v6->next_v6(), 64} : Ipv6Net{plan.next_ix_v6(), 64};
      data.lan_v6 = plan.next_lan_v6(data.pool);
      data.hosts_v6.emplace(spec.name, *data.lan_v6);
    }
    require_ipv6_for_nat_v6(data, spec.name, spec.ip_support.value_or(base.ip_support),
                            parent ? parent->name : "");
    if (data.nat_v6 == NatV6Mode::Nptv6) data.nptv6_prefix = plan.next_nptv6();
    data.wan_name = parent ? "wan" : "ix";
    data.parent_port = (parent ? "h" : "i") + std::to_string(id);
    data.wan_ll6 = deterministic_link_local(id, parent ? parent->id + 1 : kIxId);
    data.lan_ll6 = deterministic_link_local(id, lan_switch, 0x1a2b);
    data.wan_mac = deterministic_mac(id, kMacWan);
    data.lan_mac = deterministic_mac(id, kMacLan);

    auto rec = std::make_unique<NodeRecord>();
    rec->id = id;
    rec->name = spec.name;
    rec->kind = NodeKind::Router;
    bool uplink_created = false;
    NodeRecord& root = record(kIxId);
    NodeRecord& uplink_owner = parent ? *parent : root;
    try {
      create_node_namespace(*rec, true, want_v6, want_v6);
      RouteSocket& rs = *rec->rtnl;

      data.lan_ifindex = rs.add_bridge(kLanBridge, data.lan_mac, true);
      if (data.mtu) rs.set_mtu(data.lan_ifindex, *data.mtu);
      if (data.lan_v4)
        rs.add_address(data.lan_ifindex, {data.hosts_v4->gateway_v4(), data.lan_v4->prefix_len});
      if (data.lan_v6) {
        rs.add_address(data.lan_ifindex, {data.hosts_v6->gateway_v6(), 64});
        rs.add_address(data.lan_ifindex, host_prefix(data.lan_ll6, 64));
      }

      // One request creates both ends, each directly in its namespace: moving links costs an
      // RCU grace period (~17 ms) per move, creating in place ~0.4 ms.
      // The uplink is part of the parent's LAN segment and takes its MTU (RouterBuilder::mtu).
      const std::optional<int> uplink_mtu = parent ? parent->router->mtu : std::nullopt;
      VethEnd outer{data.parent_port,
                    -1,
                    deterministic_mac(id, kMacWan + 16),
                    true,
                    parent ? parent->router->lan_ifindex : ix_bridge_ifindex_,
                    uplink_mtu};
      // The inner end is brought up through the router's own socket below: a veth peer cannot
      // be created up (its partner does not exist yet at that moment).
      VethEnd inner{data.wan_name, rec->netns.get(), data.wan_mac, false, 0, uplink_mtu};
      uplink_owner.rtnl->add_veth(outer, inner);
      uplink_created = true;
      int wan = rs.link_index(data.wan_name);
      rs.set_link_up(wan, true);
      if (data.wan_v4) {
        rs.add_address(wan, prefix(*data.wan_v4));
        Ipv4Address gw =
            parent ? parent->router->hosts_v4->gateway_v4() : AddressPlan::ix_gateway_v4();
        rs.add_route({Ipv4Address::any(), 0}, boost::asio::ip::address(gw), wan);
      }
      if (data.wan_v6) {
        rs.add_address(wan, prefix(*data.wan_v6));
        rs.add_address(wan, host_prefix(data.wan_ll6, 64));
        Ipv6Address gw =
            parent ? parent->router->hosts_v6->gateway_v6() : AddressPlan::ix_gateway_v6();
        rs.add_route({Ipv6Address::any(), 0}, boost::asio::ip::address(gw), wan);
      }

      // See build_device: the uplink drops everything until linkwatch has activated it.
      rs.wait_until_oper_up(data.wan_name);
      uplink_owner.rtnl->wait_until_oper_up(data.parent_port);
      uplink_owner.rtnl->wait_until_oper_up(parent ? kLanBridge : kIxBridge);
      if (!spec.uplink_condition.empty()) {
        conditioner_->apply(uplink_link(*rec, data), {}, spec.uplink_condition);
        data.uplink_condition = spec.uplink_condition;
      }
      if (data.nat_config || data.firewall_config || data.nat_v6 != NatV6Mode::None ||
          data.block_icmp_frag_needed) {
        rec->nft->install(rules_for(data));
      }
      if (spec.downlink_condition) {
        conditioner_->apply_downlink(downlink_ends(*rec, data), std::nullopt,
                                     spec.downlink_condition);
        data.downlink_condition = spec.downlink_condition;
      }
      if (data.nat_config) {
        write_conntrack_timeouts(root.netns.get(), rec->netns.get(), spec.name, data.nat_config);
      }

      // Return routes: every ancestor up to the lab root learns how to reach a routed LAN,
      // via the uplink address of the next router down the path. Recorded one by one, so the
      // cleanup below removes exactly what was added.
      auto add_return_routes = [&](const IpPrefix& dst, bool v6) {
        for (const auto& r :
             return_path(data, dst, v6, [&](NodeId n) -> NodeRecord& { return record(n); })) {
          record(r.ns_owner).rtnl->add_route(r.dst, r.via);
          data.return_routes.push_back(r);
        }
      };
      if (data.lan_v4 && data.nat == Nat::None) add_return_routes(prefix(*data.lan_v4), false);
      // IPv6 LANs without translation are routed, ULA included: firewalls decide reachability.
      // With NPTv6 the outside prefix is routed instead; behind NAT66 masquerade nothing is.
      if (auto v6_dst = routed_v6_prefix(data)) add_return_routes(*v6_dst, true);
      // Regions linked to this router's region reach its routed prefixes over the region link.
      if (data.region && !region_router) {
        if (data.lan_v4 && data.nat == Nat::None) {
          add_cross_region_routes(*data.region, prefix(*data.lan_v4), false, data.return_routes);
        }
        if (auto v6_dst = routed_v6_prefix(data)) {
          add_cross_region_routes(*data.region, *v6_dst, true, data.return_routes);
        }
      }
    } catch (...) {
      if (uplink_created) conditioner_->forget(uplink_link(*rec, data));
      conditioner_->forget_downlink(downlink_ends(*rec, data));
      // Leave the lab as it was: drop routes we added elsewhere; the namespace (and with it both
      // veth ends) goes away with the record.
      for (const auto& r : data.return_routes) {
        try {
          record(r.ns_owner).rtnl->delete_route(r.dst, r.via);
        } catch (...) {
        }
      }
      // The kernel frees a closed namespace asynchronously; the outer veth end would linger in
      // the parent for a while. Delete it now so the lab is exactly as before.
      if (uplink_created) {
        try {
          uplink_owner.rtnl->delete_link(uplink_owner.rtnl->link_index(data.parent_port));
        } catch (...) {
        }
      }
      rec.reset();
      throw;
    }

    plan_ = plan;
    if (region_lan) region->next_lan = region_lan + 1;
    if (parent) {
      parent->router->hosts_v4 = parent_v4;
      parent->router->hosts_v6 = parent_v6;
    }
    next_id_ += 2;
    rec->router = std::move(data);
    rec->runtime = make_runtime(*rec, "router");
    EventLog::Payload added = router_state(*rec);
    NodeRecord& built = *rec;
    nodes_.emplace(id, std::move(rec));
    start_ring_capture_locked(built, built.router->wan_name);
    emit_event_locked(region_router ? "region_router_added" : "router_added", added);
    return Router(weak_from_this(), id, spec.name);
  });
}

void LabCore::install_default_routes(NodeRecord& dev, const DeviceIfaceRecord& iface) {
  const RouterData& gw = *record(iface.router).router;
  int ifindex = dev.rtnl->link_index(iface.name);
  if (iface.v4 && gw.hosts_v4) {
    dev.rtnl->add_route({Ipv4Address::any(), 0},
                        boost::asio::ip::address(gw.hosts_v4->gateway_v4()), ifindex);
  }
  if (iface.v6 && gw.hosts_v6) {
    dev.rtnl->add_route({Ipv6Address::any(), 0},
                        boost::asio::ip::address(gw.hosts_v6->gateway_v6()), ifindex);
  }
}

Device LabCore::build_device(const DeviceBuilder::Spec& spec) {
  return control_->invoke([&]() -> Device {
    std::lock_guard lock(mu_);
    if (closed_) throw Error(ErrorKind::kRemoved, spec.name, "the lab was destroyed");
    validate_node_name("device", spec.name);
    check_name_free(spec.name, "device");

    DeviceData data;
    data.mtu = spec.mtu;
    if (spec.mtu && (*spec.mtu < 576 || *spec.mtu > 65535)) {
      throw Error(ErrorKind::kInvalidArgument, spec.name,
                  "device '" + spec.name + "': mtu " + std::to_string(*spec.mtu) +
                      " is outside 576..65535");
    }
    std::set<std::string> seen;
    // Copies of the gateways' host allocators, committed on success.
    std::map<NodeId, std::pair<std::optional<LanHosts>, std::optional<LanHosts>>> hosts;
    NodeId next = next_id_ + 1;
    NodeId id = next_id_;
    for (const auto& is : spec.ifaces) {
      validate_iface_name(spec.name, is.name);
      if (!seen.insert(is.name).second) {
        throw Error(ErrorKind::kAlreadyExists, spec.name + "/" + is.name,
                    "device '" + spec.name + "' already has interface '" + is.name + "'");
      }
      auto gw = find(is.gateway, NodeKind::Router);
      if (!gw) {
        throw Error(ErrorKind::kNotFound, is.gateway,
                    "unknown gateway router '" + is.gateway + "' for interface '" + is.name +
                        "' of device '" + spec.name + "'");
      }
      NodeRecord& router = record(*gw);
      check_attachable(router);
      auto [slot, fresh] = hosts.try_emplace(*gw, router.router->hosts_v4, router.router->hosts_v6);
      DeviceIfaceRecord rec_if;
      rec_if.name = is.name;
      rec_if.index = next++;
      rec_if.router = *gw;
      rec_if.router_port = "v" + std::to_string(rec_if.index);
      if (slot->second.first)
        rec_if.v4 = Ipv4Net{slot->second.first->next_v4(), router.router->lan_v4->prefix_len};
      if (slot->second.second) rec_if.v6 = Ipv6Net{slot->second.second->next_v6(), 64};
      rec_if.ll6 = deterministic_link_local(rec_if.index);
      rec_if.mac = deterministic_mac(rec_if.index, kMacDevice);
      rec_if.condition = is.condition;
      data.ifaces.push_back(std::move(rec_if));
    }
    if (spec.mtu && *spec.mtu < 1280 &&
        std::any_of(data.ifaces.begin(), data.ifaces.end(),
                    [](const auto& i) { return i.v6.has_value(); })) {
      throw Error(ErrorKind::kInvalidArgument, spec.name,
                  "device '" + spec.name + "': mtu " + std::to_string(*spec.mtu) +
                      " is below 1280, the IPv6 minimum, and the device has IPv6");
    }
    if (spec.default_iface) {
      if (!seen.count(*spec.default_iface)) {
        throw Error(
            ErrorKind::kNotFound, spec.name + "/" + *spec.default_iface,
            "interface '" + *spec.default_iface + "' not found on device '" + spec.name + "'");
      }
      data.default_iface = *spec.default_iface;
    } else if (!data.ifaces.empty()) {
      data.default_iface = data.ifaces.front().name;
    }

    auto rec = std::make_unique<NodeRecord>();
    rec->id = id;
    rec->name = spec.name;
    rec->kind = NodeKind::Device;
    std::vector<std::pair<NodeId, std::string>> created_ports;
    try {
      create_node_namespace(*rec, false, false,
                            std::any_of(data.ifaces.begin(), data.ifaces.end(),
                                        [](const auto& i) { return i.v6.has_value(); }));
      for (const auto& ifr : data.ifaces) {
        NodeRecord& router = record(ifr.router);
        // Both ends share one MTU: the device's own, else its gateway's LAN MTU.
        const std::optional<int> mtu = spec.mtu ? spec.mtu : router.router->mtu;
        VethEnd port{ifr.router_port,
                     -1,
                     deterministic_mac(ifr.index, kMacDevice + 16),
                     true,
                     router.router->lan_ifindex,
                     mtu};
        VethEnd dev_end{ifr.name, rec->netns.get(), ifr.mac, false, 0, mtu};
        router.rtnl->add_veth(port, dev_end);
        created_ports.emplace_back(ifr.router, ifr.router_port);
        int ifindex = rec->rtnl->link_index(ifr.name);
        rec->rtnl->set_link_up(ifindex, true);
        if (ifr.v4) rec->rtnl->add_address(ifindex, prefix(*ifr.v4));
        if (ifr.v6) {
          rec->rtnl->add_address(ifindex, prefix(*ifr.v6));
          rec->rtnl->add_address(ifindex, host_prefix(ifr.ll6, 64));
        }
        if (ifr.name == data.default_iface) install_default_routes(*rec, ifr);
      }
      // Until linkwatch has activated both ends (it runs under the RTNL lock, which namespace
      // churn elsewhere can hold for a long time), their noop qdisc drops every packet: a
      // device must not be handed out before it can send.
      // The LAN bridge too: it gets its carrier (and its qdisc) with its first active port.
      for (const auto& ifr : data.ifaces) {
        rec->rtnl->wait_until_oper_up(ifr.name);
        record(ifr.router).rtnl->wait_until_oper_up(ifr.router_port);
        record(ifr.router).rtnl->wait_until_oper_up(kLanBridge);
      }
      rec->device = data;  // iface_link() reads the device's MTU
      for (const auto& ifr : data.ifaces) {
        if (!ifr.condition.empty()) conditioner_->apply(iface_link(*rec, ifr), {}, ifr.condition);
      }
    } catch (...) {
      for (const auto& ifr : data.ifaces) conditioner_->forget(iface_link(*rec, ifr));
      // Router-side ports would outlive the asynchronously freed namespace for a while.
      for (const auto& [router, port] : created_ports) {
        try {
          RouteSocket& rs = *record(router).rtnl;
          rs.delete_link(rs.link_index(port));
        } catch (...) {
        }
      }
      rec.reset();
      throw;
    }
    for (auto& [gw, pair] : hosts) {
      record(gw).router->hosts_v4 = pair.first;
      record(gw).router->hosts_v6 = pair.second;
    }
    next_id_ = next;
    rec->device = std::move(data);
    rec->runtime = make_runtime(*rec, "device");
    EventLog::Payload added = device_state(*rec);
    NodeRecord& built = *rec;
    nodes_.emplace(id, std::move(rec));
    for (const auto& i : built.device->ifaces) start_ring_capture_locked(built, i.name);
    emit_event_locked("device_added", added);
    return Device(weak_from_this(), id, spec.name);
  });
}

void LabCore::teardown_node(NodeRecord& rec) {
  stop_captures_locked(rec);
  // Emulated links first: their splice lives in the namespace above, which stays.
  if (rec.device) {
    for (const auto& i : rec.device->ifaces) conditioner_->forget(iface_link(rec, i));
  }
  if (rec.router) {
    conditioner_->forget(uplink_link(rec, *rec.router));
    conditioner_->forget_downlink(downlink_ends(rec, *rec.router));
    if (rec.router->nptv6_prefix) plan_.release_nptv6(*rec.router->nptv6_prefix);
    for (const auto& r : rec.router->return_routes) {
      auto it = nodes_.find(r.ns_owner);
      if (it == nodes_.end()) continue;
      try {
        it->second->rtnl->delete_route(r.dst, r.via);
      } catch (...) {
        // The route may already be gone with its interface; nothing else depends on it.
      }
    }
  }
}

void LabCore::remove_node(NodeId id, NodeKind kind) {
  if (called_from_lab_thread()) {
    // Removing a node joins its threads, which may be waiting for the calling thread.
    throw Error(ErrorKind::kInvalidArgument, std::to_string(id),
                "nodes cannot be removed from code running inside the lab (run(), spawn(), "
                "spawn_thread()): the removal could wait for its own caller");
  }
  std::shared_ptr<NodeRuntime> rt;
  ino_t netns_inode = 0;
  {
    std::lock_guard lock(mu_);
    if (closed_) throw Error(ErrorKind::kRemoved, std::to_string(id), "the lab was destroyed");
    NodeRecord& rec = record(id);
    if (rec.removing)
      throw Error(ErrorKind::kRemoved, rec.name, "'" + rec.name + "' is already being removed");
    if (rec.kind != kind)
      throw Error(ErrorKind::kNotFound, rec.name, "'" + rec.name + "' is not a " + kind_name(kind));
    if (kind == NodeKind::Router) {
      for (const auto& [oid, other] : nodes_) {
        if (other->device) {
          for (const auto& i : other->device->ifaces) {
            if (i.router == id) {
              throw Error(ErrorKind::kInvalidArgument, rec.name,
                          "cannot remove router '" + rec.name + "': device '" + other->name +
                              "' is still connected");
            }
          }
        }
        if (other->router && other->router->upstream == id) {
          throw Error(ErrorKind::kInvalidArgument, rec.name,
                      "cannot remove router '" + rec.name + "': router '" + other->name +
                          "' is still connected");
        }
      }
    }
    rec.removing = true;  // builds may no longer attach to it
    rt = rec.runtime;
    netns_inode = rec.netns_inode;
  }
  if (rt) rt->shutdown();  // outside the lock: user threads being joined may read the lab
  kill_stray_processes(netns_inode);
  control_->call([&] {
    std::lock_guard lock(mu_);
    auto it = nodes_.find(id);
    if (it == nodes_.end()) return;
    teardown_node(*it->second);
    const std::string name = it->second->name;
    const bool router = it->second->router.has_value();
    nodes_.erase(it);
    emit_event_locked(router ? "router_removed" : "device_removed", {{"name", name}});
  });
}

std::optional<NodeId> LabCore::find(const std::string& name, NodeKind kind) const {
  for (const auto& [id, rec] : nodes_) {
    if (rec->kind == kind && rec->name == name) return id;
  }
  return std::nullopt;
}

std::vector<std::pair<NodeId, std::string>> LabCore::list(NodeKind kind) const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<NodeId, std::string>> out;
  for (const auto& [id, rec] : nodes_) {
    if (rec->kind == kind && !closed_) out.emplace_back(id, rec->name);
  }
  return out;
}

void LabCore::check_attachable(const NodeRecord& router) const {
  if (router.removing) {
    throw Error(ErrorKind::kRemoved, router.name, "router '" + router.name + "' is being removed");
  }
}

bool LabCore::lan_overlaps(const Ipv4Net& net) const {
  for (const auto& [id, rec] : nodes_) {
    if (rec->router && rec->router->lan_v4 &&
        (rec->router->lan_v4->contains(net.address) ||
         net.contains(rec->router->lan_v4->address))) {
      return true;
    }
  }
  return false;
}

void LabCore::kill_stray_processes(ino_t netns_inode) {
  // A command that left its process group (setsid, daemons) survives the node's own kills and
  // would keep the namespace alive. Every command of the lab lives in the lab's PID namespace,
  // so look there for anything still inside the removed node's network namespace.
  ino_t pidns_inode = 0;
  {
    std::lock_guard lock(mu_);
    if (!pidns_) return;
    struct stat st {};
    if (::fstat(pidns_->ns_fd(), &st) != 0) return;
    pidns_inode = st.st_ino;
  }
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string pid_text = entry.path().filename().string();
    if (pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
    struct stat net {
    }, pid{};
    if (::stat((entry.path() / "ns/net").c_str(), &net) != 0 || net.st_ino != netns_inode) continue;
    if (::stat((entry.path() / "ns/pid").c_str(), &pid) != 0 || pid.st_ino != pidns_inode) continue;
    ::kill(std::stoi(pid_text), SIGKILL);
  }
}

std::string LabCore::node_name(NodeId id) const {
  std::lock_guard lock(mu_);
  return record(id).name;
}

RouterData LabCore::router_data(NodeId id) const {
  std::lock_guard lock(mu_);
  const NodeRecord& rec = record(id);
  if (!rec.router)
    throw Error(ErrorKind::kNotFound, rec.name, "'" + rec.name + "' is not a router");
  RouterData copy = *rec.router;
  copy.return_routes.clear();  // bookkeeping of the lab, not part of the router's description
  return copy;
}

DeviceData LabCore::device_data(NodeId id) const {
  std::lock_guard lock(mu_);
  const NodeRecord& rec = record(id);
  if (!rec.device)
    throw Error(ErrorKind::kNotFound, rec.name, "'" + rec.name + "' is not a device");
  return *rec.device;
}

std::vector<Interface> LabCore::interfaces(NodeId id) const {
  std::lock_guard lock(mu_);
  const NodeRecord& rec = record(id);
  std::vector<Interface> out;
  if (rec.device) {
    for (const auto& i : rec.device->ifaces) {
      Interface s;
      s.name = i.name;
      s.ipv4 = i.v4;
      s.ipv6 = i.v6;
      if (i.v6) s.ll6 = i.ll6;
      s.mac = format_mac(i.mac);
      s.up = i.up;
      s.peer = record(i.router).name;
      s.is_default = i.name == rec.device->default_iface;
      s.condition = i.condition;
      out.push_back(std::move(s));
    }
  } else if (rec.router) {
    const RouterData& d = *rec.router;
    Interface wan;
    wan.name = d.wan_name;
    wan.ipv4 = d.wan_v4;
    wan.ipv6 = d.wan_v6;
    if (d.wan_v6) wan.ll6 = d.wan_ll6;
    wan.mac = format_mac(d.wan_mac);
    wan.peer = d.upstream ? record(*d.upstream).name : "ix";
    wan.is_default = true;
    wan.condition = d.uplink_condition;
    out.push_back(std::move(wan));
    Interface lan;
    lan.name = kLanBridge;
    if (d.lan_v4) lan.ipv4 = Ipv4Net{d.hosts_v4->gateway_v4(), d.lan_v4->prefix_len};
    if (d.lan_v6) {
      lan.ipv6 = Ipv6Net{d.hosts_v6->gateway_v6(), 64};
      lan.ll6 = d.lan_ll6;
    }
    lan.mac = format_mac(d.lan_mac);
    // The downlink is what the router sends out of its LAN interface.
    if (d.downlink_condition) lan.condition = LinkConditions::egress_only(*d.downlink_condition);
    out.push_back(std::move(lan));
  } else {
    Interface ix;
    ix.name = kIxBridge;
    ix.ipv4 = Ipv4Net{AddressPlan::ix_gateway_v4(), AddressPlan::ix_v4().prefix_len};
    ix.ipv6 = Ipv6Net{AddressPlan::ix_gateway_v6(), AddressPlan::ix_v6().prefix_len};
    ix.mac = format_mac(deterministic_mac(kIxId, kMacIxBridge));
    out.push_back(std::move(ix));
  }
  return out;
}

std::shared_ptr<NodeRuntime> LabCore::runtime(NodeId id) const {
  std::lock_guard lock(mu_);
  return record(id).runtime;
}

bool LabCore::alive(NodeId id) const {
  std::lock_guard lock(mu_);
  return !closed_ && nodes_.count(id) != 0;
}

std::string LabCore::describe_kernel_state(NodeId id) {
  return control_->invoke([&] {
    std::lock_guard lock(mu_);
    NodeRecord& rec = record(id);
    std::string out = "# " + kind_name(rec.kind) + " '" + rec.name + "'\n" + rec.rtnl->describe();
    if (rec.nft) out += "\n# nftables\n" + rec.nft->list_ruleset();
    if (rec.router) {
      // ctnetlink answers for the namespace of the socket: open it from inside the router.
      ReturnToRoot home(record(kIxId).netns.get());
      enter_netns(rec.netns.get(), rec.name);
      const std::string entries = describe_conntrack(rec.name);
      out += "\n# conntrack\n" + (entries.empty() ? std::string("(no entries)\n") : entries);
    }
    // The emulator's counters for this node's impaired links: what the model dropped, and what
    // the kernel or the emulator itself lost.
    std::vector<std::pair<LinkEnds, LinkConditions>> links;
    if (rec.device) {
      for (const auto& i : rec.device->ifaces) links.emplace_back(iface_link(rec, i), i.condition);
    }
    if (rec.router) links.emplace_back(uplink_link(rec, *rec.router), rec.router->uplink_condition);
    if (rec.router && rec.router->downlink_condition) {
      DownlinkEnds d = downlink_ends(rec, *rec.router);
      LinkEnds as_link;
      as_link.key = d.key;
      as_link.label = d.label;
      links.emplace_back(as_link, LinkConditions::egress_only(*rec.router->downlink_condition));
    }
    std::string emulated;
    for (const auto& [ends, conditions] : links) {
      auto stats = conditioner_->emulator_stats(ends.key);
      if (!stats) continue;
      auto line = [](const char* dir, const FramePump::DirectionStats& d) {
        return std::string("  ") + dir + ": in " + std::to_string(d.frames_in) + ", out " +
               std::to_string(d.frames_out) + ", superpackets " + std::to_string(d.gso_frames) +
               " (split " + std::to_string(d.gso_split) + "), model drops " +
               std::to_string(d.model_drops) + ", socket drops " + std::to_string(d.socket_drops) +
               ", backlog drops " + std::to_string(d.backlog_drops) + ", write errors " +
               std::to_string(d.write_errors) + "\n";
      };
      emulated += ends.label + " (" + to_string(conditions) + ")\n" +
                  line("egress", stats->a_to_b) + line("ingress", stats->b_to_a);
    }
    if (!emulated.empty()) out += "\n# link emulator\n" + emulated;
    return out;
  });
}

void LabCore::set_link(NodeId device, const std::string& iface, bool up) {
  control_->call([&] {
    std::lock_guard lock(mu_);
    NodeRecord& dev = record(device);
    auto it = find_iface(dev, iface, "device '" + dev.name + "' has no interface '" + iface + "'");
    NodeRecord& router = record(it->router);
    // Both ends, so the link is dead in both directions, as with a pulled cable.
    dev.rtnl->set_link_up(dev.rtnl->link_index(iface), up);
    router.rtnl->set_link_up(router.rtnl->link_index(it->router_port), up);
    it->up = up;
    if (up) {
      dev.rtnl->wait_until_oper_up(iface);
      router.rtnl->wait_until_oper_up(it->router_port);
    }
    // The kernel drops routes through a downed link; bring the default back with the link.
    if (up && iface == dev.device->default_iface) install_default_routes(dev, *it);
    emit_event_locked(up ? "link_up" : "link_down", {{"device", dev.name}, {"iface", iface}});
  });
}

void LabCore::set_router_rules(NodeId router, const RulesChange& change) {
  control_->call([&] {
    std::lock_guard lock(mu_);
    NodeRecord& rec = record(router);
    if (!rec.router)
      throw Error(ErrorKind::kNotFound, rec.name, "'" + rec.name + "' is not a router");
    const RouterData& d = *rec.router;
    RouterData next = d;
    if (change.nat) {
      next.nat = *change.nat;
      next.nat_config = resolve_nat(next.nat, change.nat_config, rec.name);
    }
    if (change.firewall) {
      next.firewall = *change.firewall;
      next.firewall_config = resolve_firewall(next.firewall, change.firewall_config, rec.name);
    }
    // Allocation on a copy of the plan, committed with the new rules.
    std::optional<AddressPlan> plan;
    if (change.block_icmp_frag_needed) next.block_icmp_frag_needed = *change.block_icmp_frag_needed;
    if (change.nat_v6) {
      next.nat_v6 = *change.nat_v6;
      require_ipv6_for_nat_v6(next, rec.name, next.ip_support,
                              d.upstream ? record(*d.upstream).name : "");
      if (next.nat_v6 == NatV6Mode::Nptv6 && !next.nptv6_prefix) {
        plan = plan_;
        next.nptv6_prefix = plan->next_nptv6();
      }
    }
    if (next.nat_config && !d.wan_v4) {
      throw Error(ErrorKind::kInvalidArgument, rec.name,
                  "router '" + rec.name + "' has no IPv4 uplink address to NAT to");
    }
    // The IPv6 return routes follow the translation. New routes go in before the new rules and
    // old ones out after them, so a failure at any step leaves the old rules with their routes.
    auto lookup = [this](NodeId n) -> NodeRecord& { return record(n); };
    const std::optional<IpPrefix> old_v6_dst = routed_v6_prefix(d);
    const std::optional<IpPrefix> new_v6_dst = routed_v6_prefix(next);
    const bool v6_routes_change = !same_prefix(old_v6_dst, new_v6_dst);
    std::vector<RouterData::ForeignRoute> new_routes;
    if (v6_routes_change && new_v6_dst) {
      new_routes = return_path(next, *new_v6_dst, true, lookup);
      add_routes_or_none(new_routes, lookup);
    }
    // Atomic replace; on failure the old rules stay and so does the record.
    try {
      rec.nft->apply(rules_for(next));
    } catch (...) {
      delete_routes_quietly(new_routes, lookup);
      throw;
    }
    if (v6_routes_change) {
      auto& routes = rec.router->return_routes;
      std::vector<RouterData::ForeignRoute> old_routes;
      std::erase_if(routes, [&](const RouterData::ForeignRoute& r) {
        if (!same_prefix(r.dst, old_v6_dst)) return false;
        old_routes.push_back(r);
        return true;
      });
      delete_routes_quietly(old_routes, lookup);
      routes.insert(routes.end(), new_routes.begin(), new_routes.end());
    }
    if (plan) plan_ = std::move(*plan);
    rec.router->nptv6_prefix = next.nptv6_prefix;
    rec.router->nat_v6 = next.nat_v6;
    const bool timeouts_changed =
        (next.nat_config ? std::optional(next.nat_config->timeouts) : std::nullopt) !=
        (d.nat_config ? std::optional(d.nat_config->timeouts) : std::nullopt);
    // Conntrack's sysctls only exist once a ruleset used conntrack, i.e. some NAT was set.
    if (timeouts_changed && (next.nat_config || d.nat_config)) {
      write_conntrack_timeouts(record(kIxId).netns.get(), rec.netns.get(), rec.name,
                               next.nat_config);
    }
    rec.router->nat = next.nat;
    rec.router->nat_config = next.nat_config;
    rec.router->nat_v6 = next.nat_v6;
    rec.router->firewall = next.firewall;
    rec.router->firewall_config = next.firewall_config;
    rec.router->block_icmp_frag_needed = next.block_icmp_frag_needed;
    if (change.nat || change.nat_config) {
      emit_event_locked("nat_changed", {{"router", rec.name}, {"nat", to_string(next.nat)}});
    }
    if (change.nat_v6) {
      emit_event_locked("nat_v6_changed",
                        {{"router", rec.name}, {"nat_v6", to_string(next.nat_v6)}});
    }
    if (change.firewall || change.firewall_config) {
      emit_event_locked("firewall_changed",
                        {{"router", rec.name}, {"firewall", to_string(next.firewall)}});
    }
    if (change.block_icmp_frag_needed) {
      emit_event_locked("pmtu_blackhole_changed",
                        {{"router", rec.name}, {"block", next.block_icmp_frag_needed}});
    }
  });
}

void LabCore::flush_nat_state(NodeId router) {
  control_->call([&] {
    std::lock_guard lock(mu_);
    NodeRecord& rec = record(router);
    if (!rec.router)
      throw Error(ErrorKind::kNotFound, rec.name, "'" + rec.name + "' is not a router");
    // Mappings first: a packet between the two steps then starts a fresh mapping instead of
    // reviving the old one.
    rec.nft->flush_nat_sets(rules_for(*rec.router));
    // ctnetlink works on the namespace of the socket, so open it from inside the router.
    NodeRecord& root = record(kIxId);
    ReturnToRoot home(root.netns.get());
    enter_netns(rec.netns.get(), rec.name);
    flush_conntrack(rec.name);
    emit_event_locked("nat_state_flushed", {{"router", rec.name}});
  });
}

void LabCore::set_default_route(NodeId device, const std::string& iface) {
  control_->call([&] {
    std::lock_guard lock(mu_);
    NodeRecord& dev = record(device);
    auto it =
        find_iface(dev, iface, "interface '" + iface + "' not found on device '" + dev.name + "'");
    dev.rtnl->delete_default_routes(AF_INET);
    dev.rtnl->delete_default_routes(AF_INET6);
    dev.device->default_iface = iface;
    if (it->up) install_default_routes(dev, *it);
    emit_event_locked("default_route_changed", {{"device", dev.name}, {"iface", iface}});
  });
}

LinkEnds LabCore::iface_link(NodeRecord& dev, const DeviceIfaceRecord& iface) {
  NodeRecord& router = record(iface.router);
  LinkEnds l;
  l.key = iface.router_port + "@" + std::to_string(router.id);
  l.label = "device '" + dev.name + "' interface '" + iface.name + "'";
  l.seed_key = iface.index;
  l.node_rtnl = dev.rtnl.get();
  l.node_ifname = iface.name;
  l.outer_netns = router.netns.get();
  l.outer_rtnl = router.rtnl.get();
  l.outer_ifname = iface.router_port;
  l.bridge_name = kLanBridge;
  l.mtu = dev.device && dev.device->mtu ? *dev.device->mtu : router.router->mtu.value_or(1500);
  return l;
}

LinkEnds LabCore::uplink_link(NodeRecord& router, const RouterData& d) {
  NodeRecord& owner = record(d.upstream ? *d.upstream : kIxId);
  LinkEnds l;
  l.key = d.parent_port + "@" + std::to_string(owner.id);
  l.label = "router '" + router.name + "' uplink '" + d.wan_name + "'";
  l.seed_key = router.id;
  l.node_rtnl = router.rtnl.get();
  l.node_ifname = d.wan_name;
  l.outer_netns = owner.netns.get();
  l.outer_rtnl = owner.rtnl.get();
  l.outer_ifname = d.parent_port;
  l.bridge_name = d.upstream ? kLanBridge : kIxBridge;
  l.mtu = d.upstream ? owner.router->mtu.value_or(1500) : 1500;
  return l;
}

DownlinkEnds LabCore::downlink_ends(NodeRecord& router, const RouterData& d) {
  DownlinkEnds e;
  e.key = "downlink@" + std::to_string(router.id);
  e.label = "router '" + router.name + "' downlink";
  e.seed_key = router.id;
  e.netns = router.netns.get();
  e.rtnl = router.rtnl.get();
  e.nft = router.nft.get();
  e.bridge_name = kLanBridge;
  e.mtu = d.mtu.value_or(1500);
  return e;
}

void LabCore::set_iface_condition(NodeId device, const std::string& iface,
                                  const LinkConditions& conditions) {
  control_->call([&] {
    std::lock_guard lock(mu_);
    NodeRecord& dev = record(device);
    if (!dev.device)
      throw Error(ErrorKind::kNotFound, dev.name, "'" + dev.name + "' is not a device");
    auto it = find_iface(dev, iface, "device '" + dev.name + "' has no interface '" + iface + "'");
    conditioner_->apply(iface_link(dev, *it), it->condition, conditions);
    it->condition = conditions;
    emit_event_locked(
        "link_condition_changed",
        {{"device", dev.name}, {"iface", iface}, {"condition", conditions_json(conditions)}});
  });
}

void LabCore::set_uplink_condition(NodeId router, const LinkConditions& conditions) {
  control_->call([&] {
    std::lock_guard lock(mu_);
    NodeRecord& rec = record(router);
    if (!rec.router)
      throw Error(ErrorKind::kNotFound, rec.name, "'" + rec.name + "' is not a router");
    conditioner_->apply(uplink_link(rec, *rec.router), rec.router->uplink_condition, conditions);
    rec.router->uplink_condition = conditions;
    emit_event_locked("uplink_condition_changed",
                      {{"router", rec.name}, {"condition", conditions_json(conditions)}});
  });
}

void LabCore::set_downlink_condition(NodeId router, const std::optional<LinkCondition>& condition) {
  control_->call([&] {
    std::lock_guard lock(mu_);
    NodeRecord& rec = record(router);
    if (!rec.router)
      throw Error(ErrorKind::kNotFound, rec.name, "'" + rec.name + "' is not a router");
    conditioner_->apply_downlink(downlink_ends(rec, *rec.router), rec.router->downlink_condition,
                                 condition);
    rec.router->downlink_condition = condition;
    emit_event_locked("downlink_condition_changed",
                      {{"router", rec.name},
                       {"condition", condition ? nlohmann::json::parse(to_json(*condition))
                                               : nlohmann::json(nullptr)}});
  });
}

void LabCore::set_link_condition(NodeId a, NodeId b, const LinkConditions& conditions) {
  std::optional<std::pair<NodeId, std::string>> device_iface;
  std::optional<NodeId> lower_router;
  std::string a_name;
  std::string b_name;
  {
    std::lock_guard lock(mu_);
    const NodeRecord& ra = record(a);
    const NodeRecord& rb = record(b);
    a_name = ra.name;
    b_name = rb.name;
    for (auto [x, y] : {std::pair{&ra, &rb}, std::pair{&rb, &ra}}) {
      if (x->device && y->router) {
        for (const auto& i : x->device->ifaces) {
          if (i.router == y->id) {
            device_iface.emplace(x->id, i.name);
            break;
          }
        }
        if (!device_iface) {
          throw Error(ErrorKind::kNotFound, x->name + "/" + y->name,
                      "device '" + x->name + "' is not connected to router '" + y->name + "'");
        }
      }
      if (x->router && y->router && x->router->upstream == y->id) lower_router = x->id;
    }
    if (!device_iface && !lower_router) {
      throw Error(ErrorKind::kNotFound, a_name + "/" + b_name,
                  ra.router && rb.router
                      ? "routers '" + a_name + "' and '" + b_name + "' are not directly connected"
                      : "nodes '" + a_name + "' and '" + b_name +
                            "' are not a connected device-router or router-router pair");
    }
  }
  if (device_iface) {
    set_iface_condition(device_iface->first, device_iface->second, conditions);
  } else {
    set_uplink_condition(*lower_router, conditions);
  }
}

LabCore::RegionRecord& LabCore::region_record(const std::string& name) {
  auto it = regions_.find(name);
  if (it == regions_.end()) {
    throw Error(ErrorKind::kNotFound, name, "region '" + name + "' not found");
  }
  return it->second;
}

const LabCore::RegionLinkRecord* LabCore::find_region_link(const std::string& a,
                                                           const std::string& b) const {
  for (const auto& l : region_links_) {
    if ((l.side[0].region == a && l.side[1].region == b) ||
        (l.side[0].region == b && l.side[1].region == a)) {
      return &l;
    }
  }
  return nullptr;
}

LabCore::RegionLinkRecord& LabCore::region_link(const std::string& a, const std::string& b) {
  region_record(a);
  region_record(b);
  const RegionLinkRecord* l = find_region_link(a, b);
  if (!l) {
    throw Error(ErrorKind::kNotFound, a + "/" + b, "no link between '" + a + "' and '" + b + "'");
  }
  return const_cast<RegionLinkRecord&>(*l);
}

LinkEnds LabCore::region_link_ends(const RegionLinkRecord& l) {
  NodeRecord& root = record(kIxId);
  NodeRecord& near = record(l.side[0].router);
  LinkEnds e;
  e.key = l.side[0].port + "@" + std::to_string(kIxId);
  e.label = "region link '" + l.side[0].region + "'-'" + l.side[1].region + "'";
  // Apart from device and router ids, so adding regions does not shift other links' seeds.
  e.seed_key = 1'000'000 + static_cast<std::uint64_t>(l.number);
  e.node_rtnl = near.rtnl.get();
  e.node_ifname = l.side[0].iface;
  e.outer_netns = root.netns.get();
  e.outer_rtnl = root.rtnl.get();
  e.outer_ifname = l.side[0].port;
  e.bridge_name = "rl" + std::to_string(l.number);
  return e;
}

void LabCore::add_cross_region_routes(const std::string& region, const IpPrefix& dst, bool v6,
                                      std::vector<RouterData::ForeignRoute>& added) {
  for (const auto& l : region_links_) {
    for (int i = 0; i < 2; ++i) {
      if (l.side[i].region != region) continue;
      const auto& near = l.side[i];
      const auto& far = l.side[1 - i];
      RouterData::ForeignRoute r{
          far.router, dst,
          v6 ? boost::asio::ip::address(near.v6) : boost::asio::ip::address(near.v4)};
      record(far.router).rtnl->add_route(r.dst, r.via);
      added.push_back(r);
    }
  }
}

void LabCore::add_region(const std::string& name) {
  int index = 0;
  {
    std::lock_guard lock(mu_);
    if (closed_) throw Error(ErrorKind::kRemoved, name, "the lab was destroyed");
    validate_node_name("region", name);
    if (regions_.count(name)) {
      throw Error(ErrorKind::kAlreadyExists, name, "region '" + name + "' already exists");
    }
    index = static_cast<int>(regions_.size()) + 1;
    if (index > 15) {
      throw Error(ErrorKind::kInvalidArgument, name, "region pool exhausted (max 15 regions)");
    }
  }
  RouterBuilder::Spec spec;
  spec.name = "region_" + name;
  spec.pool = LanPool::Public;
  spec.ip_support = IpSupport::DualStack;
  spec.lan_cidr = "198.18." + std::to_string(16 * index) + ".0/24";
  Router router = build_router(spec, true);
  control_->call([&] {
    std::lock_guard lock(mu_);
    NodeRecord& rec = record(router.id());
    RouterData& d = *rec.router;
    d.region = name;
    // The whole /20 through the region's router: its own LAN and every regional public LAN.
    RouterData::ForeignRoute r{
        kIxId,
        {Ipv4Address({198, 18, static_cast<unsigned char>(16 * index), 0}), 20},
        boost::asio::ip::address(d.wan_v4->address)};
    record(kIxId).rtnl->add_route(r.dst, r.via);
    d.return_routes.push_back(r);
    regions_.emplace(name, RegionRecord{name, index, router.id(), 1});
    emit_event_locked("region_added", {{"name", name}, {"router", record(router.id()).name}});
  });
}

bool LabCore::has_region(const std::string& name) const {
  std::lock_guard lock(mu_);
  return regions_.count(name) > 0;
}

std::vector<std::string> LabCore::region_names() const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<int, std::string>> by_index;
  for (const auto& [name, r] : regions_) by_index.emplace_back(r.index, name);
  std::sort(by_index.begin(), by_index.end());
  std::vector<std::string> out;
  for (auto& [i, n] : by_index) out.push_back(n);
  return out;
}

void LabCore::link_regions(const std::string& a, const std::string& b, const RegionLink& link) {
  control_->call([&] {
    std::lock_guard lock(mu_);
    const LinkCondition condition = link.condition();  // validates
    if (a == b) {
      throw Error(ErrorKind::kInvalidArgument, a, "cannot link region '" + a + "' to itself");
    }
    const RegionRecord* region[2] = {&region_record(a), &region_record(b)};
    if (find_region_link(a, b)) {
      throw Error(ErrorKind::kAlreadyExists, a + "/" + b,
                  "regions '" + a + "' and '" + b + "' are already linked");
    }
    const int k = static_cast<int>(region_links_.size());
    if (k >= 64) {
      throw Error(ErrorKind::kInvalidArgument, a + "/" + b,
                  "inter-region /30 pool exhausted (max 64 links)");
    }
    RegionLinkRecord l;
    l.number = k;
    l.link = link;
    for (int i = 0; i < 2; ++i) {
      auto& side = l.side[i];
      side.region = region[i]->name;
      side.router = region[i]->router;
      side.iface = "rg" + std::to_string(region[1 - i]->index);
      side.port = "rl" + std::to_string(k) + (i == 0 ? "a" : "b");
      side.v4 =
          Ipv4Address(0xcb007100u + static_cast<std::uint32_t>(4 * k + 1 + i));  // 203.0.113/24
      Ipv6Address::bytes_type v6{};
      v6[0] = 0xfd;
      v6[1] = 0x11;
      v6[6] = static_cast<unsigned char>(k >> 8);
      v6[7] = static_cast<unsigned char>(k & 0xff);
      v6[15] = static_cast<unsigned char>(1 + i);
      side.v6 = Ipv6Address(v6);
    }
    NodeRecord& root = record(kIxId);
    const std::string bridge_name = "rl" + std::to_string(k);
    std::vector<RouterData::ForeignRoute> routes;
    bool bridge_made = false;
    try {
      const int bridge = root.rtnl->add_bridge(bridge_name, std::nullopt, true);
      bridge_made = true;
      for (int i = 0; i < 2; ++i) {
        const auto& side = l.side[i];
        NodeRecord& rr = record(side.router);
        root.rtnl->add_veth(
            VethEnd{side.port, -1, std::nullopt, true, bridge, std::nullopt},
            VethEnd{side.iface, rr.netns.get(), std::nullopt, false, 0, std::nullopt});
        const int ifindex = rr.rtnl->link_index(side.iface);
        rr.rtnl->set_link_up(ifindex, true);
        rr.rtnl->add_address(ifindex, {side.v4, 30});
        rr.rtnl->add_address(ifindex, {side.v6, 126});
      }
      for (int i = 0; i < 2; ++i) {
        record(l.side[i].router).rtnl->wait_until_oper_up(l.side[i].iface);
        root.rtnl->wait_until_oper_up(l.side[i].port);
      }
      root.rtnl->wait_until_oper_up(bridge_name);
      region_links_.push_back(l);
      // Each side learns the other's /20, and every routed prefix below the other region's
      // routers that lies outside it (IPv6 LANs, public LANs of routers further down).
      for (int i = 0; i < 2; ++i) {
        const RegionRecord& far = *region[1 - i];
        const auto& far_side = l.side[1 - i];
        NodeRecord& near_router = record(l.side[i].router);
        IpPrefix slash20{Ipv4Address({198, 18, static_cast<unsigned char>(16 * far.index), 0}), 20};
        near_router.rtnl->add_route(slash20, boost::asio::ip::address(far_side.v4));
        routes.push_back({near_router.id, slash20, boost::asio::ip::address(far_side.v4)});
        for (const auto& [id, rec] : nodes_) {
          if (!rec->router || rec->router->region != far.name) continue;
          const RouterData& d = *rec->router;
          if (d.lan_v4 && d.nat == Nat::None && id != far.router &&
              !(d.lan_v4->address.to_uint() >> 12 == slash20.address.to_v4().to_uint() >> 12)) {
            RouterData::ForeignRoute r{near_router.id, prefix(*d.lan_v4),
                                       boost::asio::ip::address(far_side.v4)};
            near_router.rtnl->add_route(r.dst, r.via);
            routes.push_back(r);
          }
          if (auto v6 = routed_v6_prefix(d)) {
            RouterData::ForeignRoute r{near_router.id, *v6, boost::asio::ip::address(far_side.v6)};
            near_router.rtnl->add_route(r.dst, r.via);
            routes.push_back(r);
          }
        }
      }
      conditioner_->apply(region_link_ends(l), {}, LinkConditions(condition));
      emit_event_locked(
          "region_link_added",
          {{"a", a}, {"b", b}, {"condition", nlohmann::json::parse(to_json(condition))}});
    } catch (...) {
      if (!region_links_.empty() && region_links_.back().number == k) {
        try {
          conditioner_->forget(region_link_ends(region_links_.back()));
        } catch (...) {
        }
        region_links_.pop_back();
      }
      delete_routes_quietly(routes, [&](NodeId n) -> NodeRecord& { return record(n); });
      for (const auto& side : l.side) {
        try {
          root.rtnl->delete_link(root.rtnl->link_index(side.port));
        } catch (...) {
        }
      }
      if (bridge_made) {
        try {
          root.rtnl->delete_link(root.rtnl->link_index(bridge_name));
        } catch (...) {
        }
      }
      throw;
    }
  });
}

namespace {

LinkConditions region_conditions(const RegionLink& link, bool broken) {
  return broken ? LinkConditions(LinkCondition::manual({.loss_pct = 100}))
                : LinkConditions(link.condition());
}

}  // namespace

void LabCore::set_region_link(const std::string& a, const std::string& b, const RegionLink& link) {
  control_->call([&] {
    std::lock_guard lock(mu_);
    const LinkCondition condition = link.condition();  // validates
    RegionLinkRecord& l = region_link(a, b);
    if (!l.broken) {
      conditioner_->apply(region_link_ends(l), region_conditions(l.link, false),
                          LinkConditions(condition));
    }
    l.link = link;
    emit_event_locked(
        "region_link_changed",
        {{"a", a}, {"b", b}, {"condition", nlohmann::json::parse(to_json(condition))}});
  });
}

void LabCore::set_region_link_broken(const std::string& a, const std::string& b, bool broken) {
  control_->call([&] {
    std::lock_guard lock(mu_);
    RegionLinkRecord& l = region_link(a, b);
    if (l.broken == broken) {
      throw Error(ErrorKind::kInvalidArgument, a + "/" + b,
                  "link between '" + a + "' and '" + b + "' is " +
                      (broken ? "already broken" : "not broken"));
    }
    conditioner_->apply(region_link_ends(l), region_conditions(l.link, l.broken),
                        region_conditions(l.link, broken));
    l.broken = broken;
    emit_event_locked(broken ? "region_link_broken" : "region_link_restored", {{"a", a}, {"b", b}});
  });
}

bool LabCore::region_link_broken(const std::string& a, const std::string& b) const {
  std::lock_guard lock(mu_);
  const RegionLinkRecord* l = find_region_link(a, b);
  if (!l)
    throw Error(ErrorKind::kNotFound, a + "/" + b, "no link between '" + a + "' and '" + b + "'");
  return l->broken;
}

void LabCore::replug(NodeId device, const std::string& iface, NodeId target) {
  control_->call([&] {
    std::lock_guard lock(mu_);
    NodeRecord& dev = record(device);
    if (!dev.device)
      throw Error(ErrorKind::kNotFound, dev.name, "'" + dev.name + "' is not a device");
    auto it =
        find_iface(dev, iface, "interface '" + iface + "' not found on device '" + dev.name + "'");
    NodeRecord& to = record(target);
    if (!to.router) throw Error(ErrorKind::kNotFound, to.name, "'" + to.name + "' is not a router");
    check_attachable(to);
    const std::string from_router = record(it->router).name;
    if (it->router == target) {
      throw Error(ErrorKind::kInvalidArgument, dev.name + "/" + iface,
                  "interface '" + iface + "' of device '" + dev.name + "' is already on router '" +
                      to.name + "'");
    }
    // Everything that can fail without touching the kernel first: the new addresses.
    std::optional<LanHosts> hosts_v4 = to.router->hosts_v4;
    std::optional<LanHosts> hosts_v6 = to.router->hosts_v6;
    DeviceIfaceRecord next = *it;
    next.router = target;
    next.index = next_id_;
    next.router_port = "v" + std::to_string(next.index);
    next.v4.reset();
    next.v6.reset();
    if (hosts_v4) next.v4 = Ipv4Net{hosts_v4->next_v4(), to.router->lan_v4->prefix_len};
    if (hosts_v6) next.v6 = Ipv6Net{hosts_v6->next_v6(), 64};
    if (!next.v4 && !next.v6) {
      throw Error(
          ErrorKind::kInvalidArgument, to.name,
          "router '" + to.name + "' has no LAN address family for device '" + dev.name + "'");
    }

    // Unplug: the emulator lets go of the old link, and deleting the router's end takes the
    // device's end with it.
    conditioner_->forget(iface_link(dev, *it));
    RouteSocket& old_rs = *record(it->router).rtnl;
    old_rs.delete_link(old_rs.link_index(it->router_port));

    // Plug into the new LAN, like build_device does.
    const std::optional<int> mtu = dev.device->mtu ? dev.device->mtu : to.router->mtu;
    to.rtnl->add_veth(VethEnd{next.router_port, -1, deterministic_mac(next.index, kMacDevice + 16),
                              true, to.router->lan_ifindex, mtu},
                      VethEnd{iface, dev.netns.get(), next.mac, false, 0, mtu});
    const int ifindex = dev.rtnl->link_index(iface);
    if (next.v6) {
      // A device built without IPv6 has it off for new interfaces (create_node_namespace).
      ReturnToRoot home(record(kIxId).netns.get());
      enter_netns(dev.netns.get(), dev.name);
      write_sysctl("net/ipv6/conf/" + iface + "/disable_ipv6", "0", dev.name);
    }
    dev.rtnl->set_link_up(ifindex, next.up);
    if (next.v4) dev.rtnl->add_address(ifindex, prefix(*next.v4));
    if (next.v6) {
      dev.rtnl->add_address(ifindex, prefix(*next.v6));
      dev.rtnl->add_address(ifindex, host_prefix(next.ll6, 64));
    }
    if (!next.up) to.rtnl->set_link_up(to.rtnl->link_index(next.router_port), false);
    ++next_id_;
    to.router->hosts_v4 = hosts_v4;
    to.router->hosts_v6 = hosts_v6;
    *it = next;
    if (next.up) {
      dev.rtnl->wait_until_oper_up(iface);
      to.rtnl->wait_until_oper_up(next.router_port);
      to.rtnl->wait_until_oper_up(kLanBridge);
      if (iface == dev.device->default_iface) install_default_routes(dev, *it);
    }
    if (!it->condition.empty()) conditioner_->apply(iface_link(dev, *it), {}, it->condition);
    // The interface is a new device now: captures of the old one end (a streamed file is
    // completed), the always-on ring starts again on the new one.
    if (capture_) {
      for (const std::string& key :
           {capture_key(dev, iface), "stream:" + capture_key(dev, iface)}) {
        try {
          capture_->remove(key);
        } catch (const std::exception&) {
          // Not captured.
        }
      }
    }
    start_ring_capture_locked(dev, iface);
    emit_event_locked("interface_replugged",
                      {{"device", dev.name},
                       {"iface_name", iface},
                       {"from_router", from_router},
                       {"to_router", to.name},
                       {"new_ip", it->v4 ? nlohmann::json(it->v4->to_string()) : nullptr},
                       {"new_ip_v6", it->v6 ? nlohmann::json(it->v6->to_string()) : nullptr}});
  });
}

LinkBackend LabCore::link_backend() {
  return control_->invoke([&] { return conditioner_->backend(); });
}

namespace {
nlohmann::json opt_text(const auto& v) {
  return v ? nlohmann::json(v->to_string()) : nlohmann::json(nullptr);
}
}  // namespace

std::string LabCore::state_json() const {
  std::lock_guard lock(mu_);
  return state_json_locked();
}

nlohmann::json LabCore::router_state(const NodeRecord& rec) const {
  using nlohmann::json;
  auto opt = [](const auto& v) { return opt_text(v); };
  const RouterData& d = *rec.router;
  const NodeId id = rec.id;
  return {
      {"id", id},
      {"name", rec.name},
      {"nat", to_string(d.nat)},
      {"nat_config", d.nat_config ? json(to_string(*d.nat_config)) : json(nullptr)},
      {"nat_v6", to_string(d.nat_v6)},
      // What LAN addresses are translated to; null unless nat_v6 is nptv6.
      {"nptv6_prefix", d.nat_v6 == NatV6Mode::Nptv6 ? opt(d.nptv6_prefix) : json(nullptr)},
      {"firewall", to_string(d.firewall)},
      {"firewall_config", d.firewall_config ? json(to_string(*d.firewall_config)) : json(nullptr)},
      {"ip_support", to_string(d.ip_support)},
      {"pool", to_string(d.pool)},
      {"upstream", d.upstream ? json(record(*d.upstream).name) : json(nullptr)},
      {"region", d.region ? json(*d.region) : json(nullptr)},
      {"mtu", d.mtu ? json(*d.mtu) : json(nullptr)},
      {"uplink",
       {{"iface", d.wan_name},
        {"ip", opt(d.wan_v4)},
        {"ip_v6", opt(d.wan_v6)},
        {"ll_v6", d.wan_v6 ? json(d.wan_ll6.to_string()) : json(nullptr)},
        {"link_condition", conditions_json(d.uplink_condition)}}},
      {"lan",
       {{"iface", kLanBridge},
        {"cidr", opt(d.lan_v4)},
        {"gateway", d.hosts_v4 ? json(d.hosts_v4->gateway_v4().to_string()) : json(nullptr)},
        {"cidr_v6", opt(d.lan_v6)},
        {"gateway_v6", d.hosts_v6 ? json(d.hosts_v6->gateway_v6().to_string()) : json(nullptr)},
        {"ll_v6", d.lan_v6 ? json(d.lan_ll6.to_string()) : json(nullptr)},
        {"downlink_condition",
         d.downlink_condition ? json::parse(to_json(*d.downlink_condition)) : json(nullptr)}}},
  };
}

nlohmann::json LabCore::device_state(const NodeRecord& rec) const {
  using nlohmann::json;
  auto opt = [](const auto& v) { return opt_text(v); };
  json ifaces = json::array();
  for (const auto& i : rec.device->ifaces) {
    ifaces.push_back({{"name", i.name},
                      {"router", record(i.router).name},
                      {"ip", opt(i.v4)},
                      {"ip_v6", opt(i.v6)},
                      {"ll_v6", i.v6 ? json(i.ll6.to_string()) : json(nullptr)},
                      {"mac", format_mac(i.mac)},
                      {"up", i.up},
                      {"link_condition", conditions_json(i.condition)}});
  }
  return {{"id", rec.id},
          {"name", rec.name},
          {"default_iface", rec.device->default_iface},
          {"mtu", rec.device->mtu ? json(*rec.device->mtu) : json(nullptr)},
          {"interfaces", ifaces}};
}

std::string LabCore::state_json_locked() const {
  using nlohmann::json;
  json routers = json::array();
  json devices = json::array();
  for (const auto& [id, rec] : nodes_) {
    if (rec->router) routers.push_back(router_state(*rec));
    if (rec->device) devices.push_back(device_state(*rec));
  }
  json regions = json::array();
  for (const auto& [name, r] : regions_) {
    regions.push_back({{"name", name}, {"router", record(r.router).name}});
  }
  json region_links = json::array();
  for (const auto& l : region_links_) {
    region_links.push_back({{"a", l.side[0].region},
                            {"b", l.side[1].region},
                            {"condition", json::parse(to_json(l.link.condition()))},
                            {"broken", l.broken}});
  }
  json state = {
      // The last event applied (-1 before the first, or when no events are written).
      {"opid", events_ ? events_->last_opid() : -1},
      {"status", closed_ ? "stopped" : "running"},
      {"label", options_.label},
      {"outdir", outdir_.string()},
      {"seed", seed_},
      // Which backend applied link conditions; null while the lab has used none.
      {"link_backend", conditioner_ && conditioner_->resolved_backend()
                           ? json(std::string(to_string(*conditioner_->resolved_backend())))
                           : json(nullptr)},
      {"ix",
       {{"bridge", kIxBridge},
        {"gateway", AddressPlan::ix_gateway_v4().to_string()},
        {"gateway_v6", AddressPlan::ix_gateway_v6().to_string()},
        {"cidr", AddressPlan::ix_v4().to_string()},
        {"cidr_v6", AddressPlan::ix_v6().to_string()}}},
      {"routers", routers},
      {"devices", devices},
      {"regions", regions},
      {"region_links", region_links},
  };
  return state.dump(2);
}

void LabCore::write_artifacts(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  {
    std::ofstream out(dir / "state.json");
    out << state_json() << "\n";
  }
  std::vector<std::pair<NodeId, std::string>> nodes;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, rec] : nodes_) {
      nodes.emplace_back(id, kind_name(rec->kind) + "." + rec->name);  // names are file-safe
    }
  }
  for (const auto& [id, file] : nodes) {
    std::ofstream out(dir / (file + ".kernel.txt"));
    try {
      out << describe_kernel_state(id);
    } catch (const std::exception& e) {
      out << "could not read kernel state: " << e.what() << "\n";
    }
  }
  // The always-on rings: the last packets of every link, as the failure happened.
  std::vector<std::string> rings;
  LinkCapture* capture = nullptr;
  {
    std::lock_guard lock(mu_);
    capture = capture_.get();
    if (capture) {
      for (const std::string& key : capture->keys()) {
        if (key.rfind("stream:", 0) != 0) rings.push_back(key);
      }
    }
  }
  for (const std::string& key : rings) {
    try {
      capture->flush(key, (dir / (key + ".pcapng")).string());
    } catch (const std::exception& e) {
      std::ofstream(dir / (key + ".pcapng.error.txt")) << e.what() << "\n";
    }
  }
}

std::size_t LabCore::thread_count() const {
  std::lock_guard lock(mu_);
  std::size_t n = control_ ? 1 : 0;
  if (conditioner_ && conditioner_->emulator_running()) ++n;
  if (capture_ && capture_->running()) ++n;
  for (const auto& [id, rec] : nodes_) {
    if (rec->runtime) n += rec->runtime->thread_count();
  }
  return n;
}

}  // namespace patchbay::internal
