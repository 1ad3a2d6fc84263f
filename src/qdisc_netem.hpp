// Link conditions as queueing disciplines, programmed over rtnetlink (never by spawning `tc`).
//
//   NetemParams p{.limits = preset_limits(LinkPreset::WifiBad), .mtu = 1500};
//   apply_link_condition(sock, ifindex, p, "laptop");  // netem 1: at the root, tbf 10: under it
//   p = NetemParams{.limits = {.rate_kbit = 2'000}, .mtu = 1500};
//   apply_link_condition(sock, ifindex, p, "laptop");  // rate only: tbf 2: at the root
//   clear_netem(sock, ifindex, "laptop");               // back to the device's default qdisc
//
// Layouts, each installed or changed by RTM_NEWQDISC with NLM_F_CREATE | NLM_F_REPLACE, so the
// kernel swaps or changes the root in one step and traffic never passes unconditioned (a
// delete-then-add, as upstream patchbay's `tc` calls do, leaves such a window):
//   * netem: netem handle 1: at the root with delay, jitter, loss, reorder, duplicate and
//     corrupt; with a rate, tbf handle 10: as its child (parent 1:1); without one, any child is
//     deleted. Changing an existing netem 1: keeps it (same queue, same counters).
//   * rate only: tbf handle 2: at the root. The handle differs from netem's on purpose: the
//     kernel grafts a new root only when the requested handle is not the current one (same
//     handle, other kind = EINVAL), so switching between the layouts stays a single request.
// apply_link_condition() uses the rate-only layout for every condition that needs nothing but a
// rate, on every kernel, so one condition behaves the same with and without sch_netem; kernels
// without sch_netem (this project's CI machine, WSL2 defaults) can then still cap rates.
//
// Unit mapping is tc's: delay and jitter go to the kernel in psched ticks (64 ns; libnl's
// rtnl_netem_set_delay takes microseconds and converts with the same tick), with
// TCA_NETEM_LATENCY64 / JITTER64 (ns) when a tick count would overflow 32 bits; percentages
// are rounded to three decimals (upstream passes "%.3f%%" to tc) and scaled to 0..2^32-1 like
// tc's rint(fraction * UINT32_MAX). The tbf takes rate_kbit * 125 bytes/s
// (TCA_TBF_RATE64 above 2^32-1), burst = max(2 x MTU, 5 ms at the rate), and a queue limit of
// 400 ms at the rate plus the burst (upstream's "latency 400ms"). netem's queue limit is
// max(1000, packets in flight at the rate during latency + jitter).
//
// libnl-route's rtnl_netem / rtnl_qdisc_tbf objects are not used for the options: the netem
// filler leaves out reorder, corrupt and correlation when they are 0 (the kernel's change path
// then keeps the old values, so a replace from 25 % reorder to 0 % would not take), takes
// probabilities as int (no 100 %), and the tbf filler has no 64-bit rate. The options are
// built with libnl's message API instead; requests and errors go through the caller's socket.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "patchbay/link_condition.hpp"

struct nl_msg;
struct nl_sock;

namespace patchbay::internal {

// The condition of one interface direction. The MTU sizes the tbf burst and netem's queue
// limit; the limits are validated with LinkLimits::validate() wherever a layout is built.
struct NetemParams {
  LinkLimits limits{};
  int mtu = 0;  // the interface's MTU; <= 0 means 1500
};

// True when something other than the rate is set, i.e. the condition needs sch_netem.
bool needs_netem(const LinkLimits& limits);

// Handles of the layouts above.
inline constexpr std::uint32_t kNetemHandle = 0x00010000;      // 1:
inline constexpr std::uint32_t kNetemChildClass = 0x00010001;  // 1:1
inline constexpr std::uint32_t kTbfChildHandle = 0x00100000;   // 10:
inline constexpr std::uint32_t kTbfRootHandle = 0x00020000;    // 2:

// Derived numbers, exposed so tests and callers agree with the messages.
std::uint32_t netem_probability(double pct);           // 0..UINT32_MAX
std::uint64_t psched_ticks_from_ms(std::uint32_t ms);  // may exceed 32 bits
std::uint64_t tbf_rate_bytes(const NetemParams& p);
std::uint32_t tbf_burst_bytes(const NetemParams& p);
std::uint32_t tbf_limit_bytes(const NetemParams& p);
std::uint32_t netem_limit_packets(const NetemParams& p);

struct NlMsgDeleter {
  void operator()(nl_msg* msg) const;
};
using NlMsgPtr = std::unique_ptr<nl_msg, NlMsgDeleter>;

// One request of a layout, in the order it must be sent.
struct QdiscRequest {
  NlMsgPtr msg;
  std::string what;        // "replace root netem 1:", for error messages
  bool absent_ok = false;  // a delete whose target may not exist (ENOENT is success)
};

// The netem layout: RTM_NEWQDISC netem 1: at the root, then RTM_NEWQDISC tbf 10: under 1:1
// when rate_kbit > 0, else RTM_DELQDISC of whatever sits under 1:1 (absent_ok). Validates the
// limits first (LinkLimits::validate()).
std::vector<QdiscRequest> build_netem_messages(int ifindex, const NetemParams& p);
// The rate-only layout: RTM_NEWQDISC tbf 2: at the root. Throws Error(kInvalidArgument) if
// rate_kbit is 0 or the condition needs netem.
std::vector<QdiscRequest> build_tbf_root_messages(int ifindex, const NetemParams& p);

// Installs or changes the netem layout on `ifindex`; `node` names the namespace in errors.
// Every failure throws Error(kKernel) with the kernel's errno and extended-ack text; a kernel
// without sch_netem gives errno ENOENT and a message saying so.
void apply_netem(nl_sock* sock, int ifindex, const NetemParams& p, const std::string& node);
// Installs or changes the rate-only layout.
void apply_tbf_root(nl_sock* sock, int ifindex, const NetemParams& p, const std::string& node);
// Picks the layout: empty limits -> clear_netem(); rate only -> tbf root; else netem.
void apply_link_condition(nl_sock* sock, int ifindex, const NetemParams& p,
                          const std::string& node);
// Deletes the root qdisc (whatever its kind), returning the device to its default qdisc.
// No qdisc of ours there is not an error.
void clear_netem(nl_sock* sock, int ifindex, const std::string& node);

// What the running kernel can do, probed once per process on `lo` of a scratch network namespace
// (unshare(CLONE_NEWNET) on a short-lived thread; the caller's namespace is never touched).
struct QdiscSupport {
  bool netem = false;
  bool tbf = false;
  std::string netem_detail;  // why netem is missing, e.g. "Specified qdisc kind is unknown ..."
  std::string tbf_detail;
};
// Throws Error(kKernel) if the probe itself cannot run (no scratch namespace, socket failure,
// an unexpected kernel error); such failures are not cached, definite answers are.
const QdiscSupport& qdisc_support();
bool kernel_has_netem();

}  // namespace patchbay::internal
