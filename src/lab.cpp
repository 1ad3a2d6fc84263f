// Lab and the router/device builders: thin front ends over LabCore.
#include "patchbay/lab.hpp"

#include <cstdio>
#include <thread>

#include "lab_core.hpp"
#include "patchbay/error.hpp"

namespace patchbay {

Lab::Lab(LabOptions options) : core_(std::make_shared<internal::LabCore>(std::move(options))) {}

namespace {

void close_core(std::shared_ptr<internal::LabCore> core) {
  if (!core) return;
  if (core->called_from_lab_thread()) {
    // Code running inside the lab destroyed it: the teardown would have to join the calling
    // thread. Finish it on a thread of its own once that code returns.
    std::fprintf(stderr,
                 "patchbay: lab '%s' destroyed from code running inside it; tearing it down "
                 "asynchronously\n",
                 core->options().label.c_str());
    if (core->mark_closed()) std::thread([core = std::move(core)] { core->teardown(); }).detach();
    return;
  }
  core->close();
}

}  // namespace

Lab::~Lab() { close_core(std::move(core_)); }
Lab::Lab(Lab&&) noexcept = default;
Lab& Lab::operator=(Lab&& other) noexcept {
  if (this != &other) {
    close_core(std::move(core_));
    core_ = std::move(other.core_);
  }
  return *this;
}

RouterBuilder Lab::add_router(std::string name) { return RouterBuilder(core_, std::move(name)); }
DeviceBuilder Lab::add_device(std::string name) { return DeviceBuilder(core_, std::move(name)); }

std::optional<Router> Lab::router(const std::string& name) const {
  for (auto& [id, node] : core_->list(NodeKind::Router)) {
    if (node == name) return Router(core_, id, node);
  }
  return std::nullopt;
}

std::optional<Device> Lab::device(const std::string& name) const {
  for (auto& [id, node] : core_->list(NodeKind::Device)) {
    if (node == name) return Device(core_, id, node);
  }
  return std::nullopt;
}

std::vector<Router> Lab::routers() const {
  std::vector<Router> out;
  for (auto& [id, name] : core_->list(NodeKind::Router)) out.emplace_back(core_, id, name);
  return out;
}

std::vector<Device> Lab::devices() const {
  std::vector<Device> out;
  for (auto& [id, name] : core_->list(NodeKind::Device)) out.emplace_back(core_, id, name);
  return out;
}

Ix Lab::ix() const { return Ix(core_, internal::kIxId); }

namespace {

void check_same_lab(const std::shared_ptr<internal::LabCore>& mine,
                    const std::shared_ptr<internal::LabCore>& theirs, const std::string& node) {
  if (!theirs) throw Error(ErrorKind::kRemoved, node, "the lab of '" + node + "' was destroyed");
  if (mine != theirs) {
    throw Error(ErrorKind::kInvalidArgument, node, "'" + node + "' belongs to another lab");
  }
}

}  // namespace

void Lab::remove_device(const Device& device) {
  check_same_lab(core_, device.lab_.lock(), device.name());
  core_->remove_node(device.id(), NodeKind::Device);
}

void Lab::remove_router(const Router& router) {
  check_same_lab(core_, router.lab_.lock(), router.name());
  core_->remove_node(router.id(), NodeKind::Router);
}

const std::string& Lab::label() const { return core_->options().label; }
const std::filesystem::path& Lab::outdir() const { return core_->outdir(); }
std::string Lab::state_json() const { return core_->state_json(); }
void Lab::write_artifacts(const std::filesystem::path& dir) const { core_->write_artifacts(dir); }
std::size_t Lab::thread_count() const { return core_->thread_count(); }
Region Lab::add_region(const std::string& name) {
  core_->add_region(name);
  return Region(name);
}
std::optional<Region> Lab::region(const std::string& name) const {
  return core_->has_region(name) ? std::optional(Region(name)) : std::nullopt;
}
std::vector<Region> Lab::regions() const {
  std::vector<Region> out;
  for (auto& n : core_->region_names()) out.emplace_back(n);
  return out;
}
void Lab::link_regions(const Region& a, const Region& b, const RegionLink& link) {
  core_->link_regions(a.name(), b.name(), link);
}
void Lab::set_region_link(const Region& a, const Region& b, const RegionLink& link) {
  core_->set_region_link(a.name(), b.name(), link);
}
void Lab::break_region_link(const Region& a, const Region& b) {
  core_->set_region_link_broken(a.name(), b.name(), true);
}
void Lab::restore_region_link(const Region& a, const Region& b) {
  core_->set_region_link_broken(a.name(), b.name(), false);
}
bool Lab::region_link_broken(const Region& a, const Region& b) const {
  return core_->region_link_broken(a.name(), b.name());
}
DefaultRegions Lab::add_default_regions() {
  DefaultRegions r{add_region("us"), add_region("eu"), add_region("asia")};
  link_regions(r.us, r.eu, RegionLink::good(40));
  link_regions(r.us, r.asia, RegionLink::good(95));
  link_regions(r.eu, r.asia, RegionLink::good(120));
  return r;
}

LinkBackend Lab::link_backend() const { return core_->link_backend(); }
std::uint64_t Lab::seed() const { return core_->seed(); }

void Lab::set_link_condition(const Node& a, const Node& b, const LinkConditions& conditions) {
  check_same_lab(core_, a.lab_.lock(), a.name());
  check_same_lab(core_, b.lab_.lock(), b.name());
  core_->set_link_condition(a.id(), b.id(), conditions);
}

RouterBuilder::RouterBuilder(std::shared_ptr<internal::LabCore> core, std::string name)
    : core_(std::move(core)) {
  spec_.name = std::move(name);
}

RouterBuilder& RouterBuilder::preset(RouterPreset p) {
  spec_.preset = p;
  return *this;
}
RouterBuilder& RouterBuilder::nat(Nat n) {
  spec_.nat = n;
  spec_.nat_config.reset();
  return *this;
}
RouterBuilder& RouterBuilder::nat(const NatConfig& config) {
  spec_.nat = Nat::Custom;
  spec_.nat_config = config;
  return *this;
}

RouterBuilder& RouterBuilder::nat_v6(NatV6Mode mode) {
  spec_.nat_v6 = mode;
  return *this;
}

RouterBuilder& RouterBuilder::firewall(const FirewallConfig& config) {
  spec_.firewall = Firewall::Custom;
  spec_.firewall_config = config;
  return *this;
}

RouterBuilder& RouterBuilder::firewall(Firewall f) {
  spec_.firewall = f;
  spec_.firewall_config.reset();
  return *this;
}
RouterBuilder& RouterBuilder::ip_support(IpSupport s) {
  spec_.ip_support = s;
  return *this;
}
RouterBuilder& RouterBuilder::pool(LanPool p) {
  spec_.pool = p;
  return *this;
}
namespace {

// Builders take node handles for convenience but resolve them by name: a handle of another
// lab would silently pick this lab's namesake.
void check_handle_of(const std::shared_ptr<internal::LabCore>& core, const Node& node,
                     const std::shared_ptr<internal::LabCore>& node_core) {
  if (node_core != core) {
    throw Error(ErrorKind::kInvalidArgument, node.name(),
                "router '" + node.name() + "' belongs to another lab");
  }
}

}  // namespace

RouterBuilder& RouterBuilder::upstream(const Router& parent) {
  check_handle_of(core_, parent, parent.lab_.lock());
  spec_.upstream = parent.name();
  return *this;
}
RouterBuilder& RouterBuilder::upstream(const std::string& parent_name) {
  spec_.upstream = parent_name;
  return *this;
}
RouterBuilder& RouterBuilder::region(const Region& region) {
  spec_.region = region.name();
  return *this;
}
RouterBuilder& RouterBuilder::lan_cidr(const std::string& cidr) {
  spec_.lan_cidr = cidr;
  return *this;
}
RouterBuilder& RouterBuilder::mtu(int mtu) {
  spec_.mtu = mtu;
  return *this;
}
RouterBuilder& RouterBuilder::block_icmp_frag_needed(bool block) {
  spec_.block_icmp_frag_needed = block;
  return *this;
}
RouterBuilder& RouterBuilder::downlink_condition(const LinkCondition& condition) {
  spec_.downlink_condition = condition;
  return *this;
}

RouterBuilder& RouterBuilder::uplink_condition(const LinkConditions& conditions) {
  spec_.uplink_condition = conditions;
  return *this;
}
Router RouterBuilder::build() { return core_->build_router(spec_); }

DeviceBuilder::DeviceBuilder(std::shared_ptr<internal::LabCore> core, std::string name)
    : core_(std::move(core)) {
  spec_.name = std::move(name);
}

DeviceBuilder& DeviceBuilder::iface(std::string name, const Router& gateway) {
  check_handle_of(core_, gateway, gateway.lab_.lock());
  spec_.ifaces.push_back({std::move(name), gateway.name(), {}});
  return *this;
}
DeviceBuilder& DeviceBuilder::iface(std::string name, const Router& gateway,
                                    const LinkConditions& conditions) {
  check_handle_of(core_, gateway, gateway.lab_.lock());
  spec_.ifaces.push_back({std::move(name), gateway.name(), conditions});
  return *this;
}
DeviceBuilder& DeviceBuilder::iface(std::string name, const std::string& gateway_name) {
  spec_.ifaces.push_back({std::move(name), gateway_name, {}});
  return *this;
}
DeviceBuilder& DeviceBuilder::uplink(const Router& gateway) {
  return iface("eth" + std::to_string(spec_.ifaces.size()), gateway);
}
DeviceBuilder& DeviceBuilder::default_via(std::string iface_name) {
  spec_.default_iface = std::move(iface_name);
  return *this;
}
DeviceBuilder& DeviceBuilder::mtu(int mtu) {
  spec_.mtu = mtu;
  return *this;
}
Device DeviceBuilder::build() { return core_->build_device(spec_); }

}  // namespace patchbay
