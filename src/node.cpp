// Node handles: resolve the lab through a weak pointer on every call, so a handle never keeps a
// lab alive and fails cleanly once the lab or node is gone.
#include "patchbay/node.hpp"

#include <algorithm>

#include "lab_core.hpp"
#include "patchbay/error.hpp"

namespace patchbay {

std::shared_ptr<internal::LabCore> Node::core() const {
  auto core = lab_.lock();
  if (!core) {
    throw Error(ErrorKind::kRemoved, name_, "the lab of '" + name_ + "' was destroyed");
  }
  if (!core->alive(id_))
    throw Error(ErrorKind::kRemoved, name_, "node '" + name_ + "' was removed");
  return core;
}

bool Node::alive() const {
  auto core = lab_.lock();
  return core && core->alive(id_);
}

void Node::run_blocking(std::function<void()> job) const {
  core()->runtime(id_)->run_blocking(job);
}

void Node::start_thread(std::function<void(std::stop_token)> body) const {
  core()->runtime(id_)->start_user_thread(std::move(body));
}

boost::asio::io_context& Node::io_context() const { return core()->runtime(id_)->io_context(); }

Process Node::spawn_command(const Command& command) const {
  if (command.argv().empty()) {
    throw Error(ErrorKind::kInvalidArgument, name_,
                "spawn_command in '" + name_ + "': empty command");
  }
  return core()->runtime(id_)->spawn(command);
}

CommandResult Node::run_command(const Command& command, std::chrono::milliseconds timeout) const {
  Process p = spawn_command(command);
  std::optional<int> code = p.wait_for(timeout);
  if (!code) {
    p.kill();
    throw Error(ErrorKind::kTimeout, name_,
                "command '" + command.argv().front() + "' in '" + name_ +
                    "' did not finish within " + std::to_string(timeout.count()) +
                    " ms; output in " + p.stdout_path().string());
  }
  return CommandResult{*code, p.stdout_text(), p.stderr_text()};
}

std::vector<Interface> Node::interfaces() const { return core()->interfaces(id_); }

Interface Node::iface(const std::string& name) const {
  for (auto& i : interfaces()) {
    if (i.name == name) return i;
  }
  const char* kind = kind_ == NodeKind::Router   ? "router"
                     : kind_ == NodeKind::Device ? "device"
                                                 : "ix";
  throw Error(ErrorKind::kNotFound, name_ + "/" + name,
              std::string(kind) + " '" + name_ + "' has no interface '" + name + "'");
}

std::string Node::describe_kernel_state() const { return core()->describe_kernel_state(id_); }

std::shared_ptr<spdlog::logger> Node::logger() const { return core()->logger(id_); }

void Node::start_capture(const std::string& iface, const std::filesystem::path& path,
                         std::uint64_t max_bytes) const {
  core()->start_capture(id_, iface, path, max_bytes);
}

void Node::stop_capture(const std::string& iface) const { core()->stop_capture(id_, iface); }

void Node::event(const std::string& name,
                 const std::vector<std::pair<std::string, std::string>>& fields) const {
  core()->user_event(id_, name, fields);
}

Nat Router::nat() const { return core()->router_data(id_).nat; }
Firewall Router::firewall() const { return core()->router_data(id_).firewall; }
std::optional<NatConfig> Router::nat_config() const { return core()->router_data(id_).nat_config; }
NatV6Mode Router::nat_v6() const { return core()->router_data(id_).nat_v6; }
std::optional<Ipv6Net> Router::nptv6_prefix() const {
  return core()->router_data(id_).nptv6_prefix;
}
std::optional<FirewallConfig> Router::firewall_config() const {
  return core()->router_data(id_).firewall_config;
}
IpSupport Router::ip_support() const { return core()->router_data(id_).ip_support; }

std::optional<Router> Router::upstream() const {
  auto c = core();
  auto up = c->router_data(id_).upstream;
  if (!up) return std::nullopt;
  return Router(lab_, *up, c->node_name(*up));
}

std::optional<Ipv4Address> Router::uplink_ip() const {
  auto d = core()->router_data(id_);
  return d.wan_v4 ? std::optional(d.wan_v4->address) : std::nullopt;
}
std::optional<Ipv6Address> Router::uplink_ip6() const {
  auto d = core()->router_data(id_);
  return d.wan_v6 ? std::optional(d.wan_v6->address) : std::nullopt;
}
std::optional<Ipv4Net> Router::lan_v4() const { return core()->router_data(id_).lan_v4; }
std::optional<Ipv6Net> Router::lan_v6() const { return core()->router_data(id_).lan_v6; }
std::optional<Ipv4Address> Router::lan_gateway() const {
  auto d = core()->router_data(id_);
  return d.hosts_v4 ? std::optional(d.hosts_v4->gateway_v4()) : std::nullopt;
}
std::optional<Ipv6Address> Router::lan_gateway6() const {
  auto d = core()->router_data(id_);
  return d.hosts_v6 ? std::optional(d.hosts_v6->gateway_v6()) : std::nullopt;
}
std::optional<std::string> Router::region() const { return core()->router_data(id_).region; }
std::string Router::uplink_iface() const { return core()->router_data(id_).wan_name; }
void Router::set_nat(Nat nat) const { core()->set_router_rules(id_, {.nat = nat}); }
void Router::set_nat(const NatConfig& config) const {
  core()->set_router_rules(id_, {.nat = Nat::Custom, .nat_config = config});
}
void Router::set_nat_v6(NatV6Mode mode) const { core()->set_router_rules(id_, {.nat_v6 = mode}); }
void Router::set_firewall(Firewall firewall) const {
  core()->set_router_rules(id_, {.firewall = firewall});
}
void Router::set_firewall(const FirewallConfig& config) const {
  core()->set_router_rules(id_, {.firewall = Firewall::Custom, .firewall_config = config});
}
void Router::set_block_icmp_frag_needed(bool block) const {
  core()->set_router_rules(id_, {.block_icmp_frag_needed = block});
}
bool Router::blocks_icmp_frag_needed() const {
  return core()->router_data(id_).block_icmp_frag_needed;
}
std::optional<int> Router::mtu() const { return core()->router_data(id_).mtu; }
void Router::flush_nat_state() const { core()->flush_nat_state(id_); }

Interface Device::default_iface() const {
  auto ifaces = interfaces();
  auto it =
      std::find_if(ifaces.begin(), ifaces.end(), [](const Interface& i) { return i.is_default; });
  if (it == ifaces.end())
    throw Error(ErrorKind::kNotFound, name_, "device '" + name_ + "' has no interfaces");
  return *it;
}

std::optional<Ipv4Address> Device::ip() const {
  for (auto& i : interfaces()) {
    if (i.is_default) return i.ip();
  }
  return std::nullopt;
}

std::optional<Ipv6Address> Device::ip6() const {
  for (auto& i : interfaces()) {
    if (i.is_default) return i.ip6();
  }
  return std::nullopt;
}

void Device::set_link_condition(const std::string& iface, const LinkConditions& conditions) const {
  core()->set_iface_condition(id_, iface, conditions);
}
LinkConditions Device::link_condition(const std::string& iface) const {
  return this->iface(iface).condition;
}
void Router::set_uplink_condition(const LinkConditions& conditions) const {
  core()->set_uplink_condition(id_, conditions);
}
void Router::set_downlink_condition(const std::optional<LinkCondition>& condition) const {
  core()->set_downlink_condition(id_, condition);
}
std::optional<LinkCondition> Router::downlink_condition() const {
  return core()->router_data(id_).downlink_condition;
}
LinkConditions Router::uplink_condition() const {
  return core()->router_data(id_).uplink_condition;
}

void Device::replug_iface(const std::string& iface, const Router& router) const {
  auto lab = core();
  if (router.lab_.lock() != lab) {
    throw Error(ErrorKind::kInvalidArgument, router.name(),
                "router '" + router.name() + "' belongs to another lab");
  }
  lab->replug(id_, iface, router.id());
}

void Device::link_down(const std::string& iface) const { core()->set_link(id_, iface, false); }
void Device::link_up(const std::string& iface) const { core()->set_link(id_, iface, true); }
void Device::set_default_route(const std::string& iface) const {
  core()->set_default_route(id_, iface);
}

Ipv6Address Ix::gateway6() { return boost::asio::ip::make_address_v6("2001:db8::1"); }

}  // namespace patchbay
