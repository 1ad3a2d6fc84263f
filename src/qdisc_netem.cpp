#include "qdisc_netem.hpp"

#include <linux/netlink.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <netlink/errno.h>
#include <netlink/handlers.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "netlink_error.hpp"
#include "netns.hpp"
#include "patchbay/error.hpp"
#include "unique_fd.hpp"

namespace patchbay::internal {

void NlMsgDeleter::operator()(nl_msg* msg) const {
  if (msg != nullptr) nlmsg_free(msg);
}

namespace {

constexpr std::uint32_t kU32Max = std::numeric_limits<std::uint32_t>::max();
constexpr int kDefaultMtu = 1500;
// The kernel's psched tick has been 64 ns (PSCHED_SHIFT 6) since 2.6.31; /proc/net/psched
// publishes it as its second field, which the kernel tests check.
constexpr std::uint64_t kNsPerTick = 64;
constexpr std::uint32_t kNetemDefaultLimit = 1000;  // netem's own default, in packets
constexpr std::uint64_t kTbfBurstMs = 5;
constexpr std::uint64_t kTbfQueueMs = 400;

template <auto Fn>
struct Release {
  template <class T>
  void operator()(T* p) const {
    if (p != nullptr) Fn(p);
  }
};
using CbPtr = std::unique_ptr<nl_cb, Release<&nl_cb_put>>;
using SockPtr = std::unique_ptr<nl_sock, Release<&nl_socket_free>>;
using LinkPtr = std::unique_ptr<rtnl_link, Release<&rtnl_link_put>>;

std::string quoted(const std::string& s) { return "'" + s + "'"; }

int mtu_of(const NetemParams& p) { return p.mtu > 0 ? p.mtu : kDefaultMtu; }

std::uint32_t clamp_u32(std::uint64_t v) {
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(v, kU32Max));
}

[[noreturn]] void throw_nomem(const std::string& node, const std::string& what) {
  throw Error(ErrorKind::kKernel, node, what + ": libnl allocation failed", ENOMEM);
}

// ---------------------------------------------------------------------------------------------
// Requests on the caller's socket
//
// The ACK is awaited with a private clone of the socket's callbacks, so the kernel's errno and
// extended-ack text are captured here without depending on (or changing) how the socket's owner
// set it up. libnl's own codes fold errnos together (ENOENT and ESRCH are both "Object not
// found") and drop the ext-ack text, which names the attribute the kernel disliked.

struct KernelReply {
  int sys_errno = 0;
  std::string ext_message;
};

struct Failure {
  int nl_err = 0;  // libnl code, < 0 on failure
  KernelReply reply;
};

int on_error(sockaddr_nl* /*from*/, nlmsgerr* err, void* arg) {
  auto* reply = static_cast<KernelReply*>(arg);
  reply->sys_errno = -err->error;
  reply->ext_message = extended_ack_message(err);
  return NL_STOP;
}

int on_ack(nl_msg* /*msg*/, void* /*arg*/) { return NL_STOP; }

Failure send_request(nl_sock* sock, nl_msg* msg) {
  Failure f;
  nl_cb* base = nl_socket_get_cb(sock);  // takes a reference
  CbPtr cb(nl_cb_clone(base));
  nl_cb_put(base);
  if (!cb) {
    f.nl_err = -NLE_NOMEM;
    return f;
  }
  nl_cb_err(cb.get(), NL_CB_CUSTOM, on_error, &f.reply);
  nl_cb_set(cb.get(), NL_CB_ACK, NL_CB_CUSTOM, on_ack, nullptr);
  int rc = nl_send_auto(sock, msg);
  if (rc >= 0) rc = nl_recvmsgs(sock, cb.get());
  f.nl_err = rc < 0 ? rc : 0;
  if (f.nl_err == 0) f.reply = {};
  return f;
}

bool failed(const Failure& f) { return f.nl_err < 0; }

int errno_of(const Failure& f) {
  if (f.reply.sys_errno != 0) return f.reply.sys_errno;
  static constexpr std::pair<int, int> kErrnos[] = {
      {NLE_INTR, EINTR},      {NLE_BAD_SOCK, EBADF},       {NLE_AGAIN, EAGAIN},
      {NLE_NOMEM, ENOMEM},    {NLE_SEQ_MISMATCH, EPROTO},  {NLE_MSG_TRUNC, EMSGSIZE},
      {NLE_NOACCESS, EACCES}, {NLE_PERM, EPERM},           {NLE_OBJ_NOTFOUND, ENOENT},
      {NLE_NODEV, ENODEV},    {NLE_OPNOTSUPP, EOPNOTSUPP}, {NLE_INVAL, EINVAL},
      {NLE_EXIST, EEXIST},    {NLE_MSGSIZE, EMSGSIZE},     {NLE_BUSY, EBUSY},
  };
  int code = f.nl_err < 0 ? -f.nl_err : f.nl_err;
  for (const auto& [nle, sys] : kErrnos) {
    if (nle == code) return sys;
  }
  return 0;
}

// "'eth0' (3)" if the kernel knows the link, else "link 3". Only built on failure: naming the
// link costs a request.
std::string link_label(nl_sock* sock, int ifindex) {
  rtnl_link* raw = nullptr;
  if (ifindex > 0 && rtnl_link_get_kernel(sock, ifindex, nullptr, &raw) == 0) {
    LinkPtr link(raw);
    if (link && rtnl_link_get_name(link.get()) != nullptr) {
      return quoted(rtnl_link_get_name(link.get())) + " (" + std::to_string(ifindex) + ")";
    }
  }
  return "link " + std::to_string(ifindex);
}

[[noreturn]] void throw_failure(const std::string& node, const std::string& what, const Failure& f,
                                const std::string& hint = {}) {
  std::string message = what;
  if (!hint.empty()) message += ": " + hint;
  if (!f.reply.ext_message.empty()) {
    message += ": " + f.reply.ext_message;
  } else if (f.reply.sys_errno == 0) {
    // An error libnl raised itself; its text may say more than the errno.
    int sys_errno = errno_of(f);
    std::string text = nl_geterror(f.nl_err);
    if (sys_errno == 0 || text != std::strerror(sys_errno)) message += ": " + text;
  }
  throw Error(ErrorKind::kKernel, node, message, errno_of(f));
}

// ---------------------------------------------------------------------------------------------
// Messages

NlMsgPtr qdisc_message(int type, int flags, int ifindex, std::uint32_t parent, std::uint32_t handle,
                       const std::string& what) {
  // NLM_F_ACK explicitly: the ACK is what reports success, whatever the socket's auto-ack mode.
  NlMsgPtr msg(nlmsg_alloc_simple(type, NLM_F_REQUEST | NLM_F_ACK | flags));
  if (!msg) throw_nomem("", what);
  tcmsg tcm{};
  tcm.tcm_family = AF_UNSPEC;
  tcm.tcm_ifindex = ifindex;
  tcm.tcm_parent = parent;
  tcm.tcm_handle = handle;
  if (nlmsg_append(msg.get(), &tcm, sizeof tcm, NLMSG_ALIGNTO) < 0) throw_nomem("", what);
  return msg;
}

void put(nl_msg* msg, int type, const void* data, std::size_t len, const std::string& what) {
  if (nla_put(msg, type, static_cast<int>(len), data) < 0) throw_nomem("", what);
}

template <class T>
void put(nl_msg* msg, int type, const T& value, const std::string& what) {
  put(msg, type, &value, sizeof value, what);
}

// netem's TCA_OPTIONS is not a plain nest: a struct tc_netem_qopt followed by TCA_NETEM_*
// attributes, with the outer length spanning both (as tc builds it and sch_netem parses it).
void put_netem_options(nl_msg* msg, const NetemParams& p, const std::string& what) {
  put(msg, TCA_KIND, "netem", sizeof "netem", what);
  const LinkLimits& l = p.limits;

  const std::uint64_t latency = psched_ticks_from_ms(l.latency_ms);
  const std::uint64_t jitter = psched_ticks_from_ms(l.jitter_ms);
  tc_netem_qopt qopt{};
  qopt.latency = clamp_u32(latency);
  qopt.jitter = clamp_u32(jitter);
  qopt.limit = netem_limit_packets(p);
  qopt.loss = netem_probability(l.loss_pct);
  qopt.duplicate = netem_probability(l.duplicate_pct);
  // As tc: a reorder probability comes with gap 1, i.e. every packet is a candidate.
  qopt.gap = netem_probability(l.reorder_pct) != 0 ? 1 : 0;

  nlmsghdr* hdr = nlmsg_hdr(msg);
  const std::size_t options_offset = NLMSG_ALIGN(hdr->nlmsg_len);
  put(msg, TCA_OPTIONS, qopt, what);

  // Sent even when 0: on an existing netem the kernel keeps any value whose attribute is
  // missing, so a replace that drops reordering must say "0" explicitly.
  tc_netem_corr corr{};
  put(msg, TCA_NETEM_CORR, corr, what);
  tc_netem_reorder reorder{};
  reorder.probability = netem_probability(l.reorder_pct);
  put(msg, TCA_NETEM_REORDER, reorder, what);
  tc_netem_corrupt corrupt{};
  corrupt.probability = netem_probability(l.corrupt_pct);
  put(msg, TCA_NETEM_CORRUPT, corrupt, what);
  // Only past 32 bits of ticks (about 275 s), like tc: older kernels lack these attributes.
  if (latency > kU32Max) {
    put(msg, TCA_NETEM_LATENCY64, static_cast<std::int64_t>(l.latency_ms) * 1'000'000, what);
  }
  if (jitter > kU32Max) {
    put(msg, TCA_NETEM_JITTER64, static_cast<std::int64_t>(l.jitter_ms) * 1'000'000, what);
  }

  hdr = nlmsg_hdr(msg);
  auto* options = reinterpret_cast<nlattr*>(reinterpret_cast<char*>(hdr) + options_offset);
  options->nla_len = static_cast<std::uint16_t>(NLMSG_ALIGN(hdr->nlmsg_len) - options_offset);
}

void put_tbf_options(nl_msg* msg, const NetemParams& p, const std::string& what) {
  put(msg, TCA_KIND, "tbf", sizeof "tbf", what);
  const std::uint64_t rate = tbf_rate_bytes(p);
  const std::uint32_t burst = tbf_burst_bytes(p);

  tc_tbf_qopt qopt{};
  // With the link layer given, the kernel computes transmit times itself and needs no rate
  // table (TCA_TBF_RTAB); cell_align -1 is what tc sends.
  qopt.rate.linklayer = TC_LINKLAYER_ETHERNET;
  qopt.rate.cell_align = -1;
  qopt.rate.rate = clamp_u32(rate);
  qopt.limit = tbf_limit_bytes(p);
  // Time to send one burst at the rate, in ticks. The kernel prefers TCA_TBF_BURST (exact
  // bytes), but dumps this, so it stays consistent.
  qopt.buffer = clamp_u32(static_cast<std::uint64_t>(burst) * 1'000'000'000 /
                          std::max<std::uint64_t>(rate, 1) / kNsPerTick);

  nlattr* nest = nla_nest_start(msg, TCA_OPTIONS);
  if (nest == nullptr) throw_nomem("", what);
  put(msg, TCA_TBF_PARMS, qopt, what);
  put(msg, TCA_TBF_BURST, burst, what);
  if (rate > kU32Max) put(msg, TCA_TBF_RATE64, rate, what);
  nla_nest_end(msg, nest);
}

std::string what_of(const char* verb, const char* kind, std::uint32_t handle,
                    std::uint32_t parent) {
  char buf[96];
  if (parent == TC_H_ROOT) {
    std::snprintf(buf, sizeof buf, "%s root %s %x:", verb, kind, handle >> 16);
  } else {
    std::snprintf(buf, sizeof buf, "%s %s %x: under %x:%x", verb, kind, handle >> 16, parent >> 16,
                  parent & 0xffff);
  }
  return buf;
}

void send_all(nl_sock* sock, int ifindex, std::vector<QdiscRequest> requests,
              const std::string& node) {
  for (QdiscRequest& r : requests) {
    Failure f = send_request(sock, r.msg.get());
    if (!failed(f)) continue;
    if (r.absent_ok && errno_of(f) == ENOENT) continue;
    const std::string what =
        "cannot " + r.what + " on " + link_label(sock, ifindex) + " in " + quoted(node);
    // On a root add, ENOENT can only mean an unknown kind (a missing device is ENODEV).
    if (r.what.rfind("replace root netem", 0) == 0 && errno_of(f) == ENOENT) {
      throw_failure(node, what, f,
                    "this kernel has no sch_netem, which delay, jitter, loss, reordering, "
                    "duplication and corruption need");
    }
    throw_failure(node, what, f);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Parameters

bool needs_netem(const LinkLimits& l) {
  return l.loss_pct != 0 || l.latency_ms != 0 || l.jitter_ms != 0 || l.reorder_pct != 0 ||
         l.duplicate_pct != 0 || l.corrupt_pct != 0;
}

std::uint32_t netem_probability(double pct) {
  if (!(pct > 0)) return 0;
  if (pct >= 100) return kU32Max;
  // Upstream hands tc "%.3f%%"; tc turns that into rint(fraction * UINT32_MAX).
  char text[32];
  std::snprintf(text, sizeof text, "%.3f", pct);
  const double fraction = std::strtod(text, nullptr) / 100.0;
  return static_cast<std::uint32_t>(std::rint(fraction * kU32Max));
}

std::uint64_t psched_ticks_from_ms(std::uint32_t ms) {
  return static_cast<std::uint64_t>(ms) * 1'000'000 / kNsPerTick;
}

std::uint64_t tbf_rate_bytes(const NetemParams& p) {
  return static_cast<std::uint64_t>(p.limits.rate_kbit) * 1000 / 8;
}

std::uint32_t tbf_burst_bytes(const NetemParams& p) {
  // 5 ms worth of tokens keeps high rates from undershooting; two full frames keep low rates
  // from stalling (a burst below one packet never lets it through).
  const std::uint64_t at_rate = (tbf_rate_bytes(p) * kTbfBurstMs + 999) / 1000;
  return clamp_u32(std::max<std::uint64_t>(2 * static_cast<std::uint64_t>(mtu_of(p)), at_rate));
}

std::uint32_t tbf_limit_bytes(const NetemParams& p) {
  return clamp_u32(tbf_rate_bytes(p) * kTbfQueueMs / 1000 + tbf_burst_bytes(p));
}

std::uint32_t netem_limit_packets(const NetemParams& p) {
  // netem holds every packet for up to latency + jitter; at the capped rate that many bytes are
  // in its queue, and a smaller limit would drop them as if they were loss.
  const std::uint64_t hold_ms =
      static_cast<std::uint64_t>(p.limits.latency_ms) + p.limits.jitter_ms;
  const std::uint64_t bytes = tbf_rate_bytes(p) * hold_ms / 1000;
  const std::uint64_t mtu = static_cast<std::uint64_t>(mtu_of(p));
  return clamp_u32(std::max<std::uint64_t>(kNetemDefaultLimit, (bytes + mtu - 1) / mtu));
}

// ---------------------------------------------------------------------------------------------
// Layouts

std::vector<QdiscRequest> build_netem_messages(int ifindex, const NetemParams& p) {
  p.limits.validate();
  std::vector<QdiscRequest> out;
  {
    const std::string what = what_of("replace", "netem", kNetemHandle, TC_H_ROOT);
    NlMsgPtr msg = qdisc_message(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE, ifindex, TC_H_ROOT,
                                 kNetemHandle, what);
    put_netem_options(msg.get(), p, what);
    out.push_back(QdiscRequest{std::move(msg), what, false});
  }
  if (p.limits.rate_kbit > 0) {
    const std::string what = what_of("replace", "tbf", kTbfChildHandle, kNetemChildClass);
    NlMsgPtr msg = qdisc_message(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE, ifindex,
                                 kNetemChildClass, kTbfChildHandle, what);
    put_tbf_options(msg.get(), p, what);
    out.push_back(QdiscRequest{std::move(msg), what, false});
  } else {
    // Handle 0: whatever child is there (ours is 10:); netem then queues in its own tfifo.
    const std::string what = "delete the child of netem 1: (the previous rate)";
    NlMsgPtr msg = qdisc_message(RTM_DELQDISC, 0, ifindex, kNetemChildClass, 0, what);
    out.push_back(QdiscRequest{std::move(msg), what, true});
  }
  return out;
}

std::vector<QdiscRequest> build_tbf_root_messages(int ifindex, const NetemParams& p) {
  p.limits.validate();
  if (p.limits.rate_kbit == 0 || needs_netem(p.limits)) {
    throw Error(ErrorKind::kInvalidArgument, "rate_kbit",
                "a tbf at the root carries a rate only; this condition " +
                    std::string(p.limits.rate_kbit == 0 ? "has no rate" : "needs netem"));
  }
  const std::string what = what_of("replace", "tbf", kTbfRootHandle, TC_H_ROOT);
  NlMsgPtr msg = qdisc_message(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE, ifindex, TC_H_ROOT,
                               kTbfRootHandle, what);
  put_tbf_options(msg.get(), p, what);
  std::vector<QdiscRequest> out;
  out.push_back(QdiscRequest{std::move(msg), what, false});
  return out;
}

void apply_netem(nl_sock* sock, int ifindex, const NetemParams& p, const std::string& node) {
  send_all(sock, ifindex, build_netem_messages(ifindex, p), node);
}

void apply_tbf_root(nl_sock* sock, int ifindex, const NetemParams& p, const std::string& node) {
  send_all(sock, ifindex, build_tbf_root_messages(ifindex, p), node);
}

void apply_link_condition(nl_sock* sock, int ifindex, const NetemParams& p,
                          const std::string& node) {
  p.limits.validate();
  if (p.limits.is_empty()) {
    // All-zero limits are "no impairment" (upstream installs an empty netem; removing the
    // qdisc has the same effect and also works without sch_netem).
    clear_netem(sock, ifindex, node);
  } else if (!needs_netem(p.limits)) {
    apply_tbf_root(sock, ifindex, p, node);
  } else {
    apply_netem(sock, ifindex, p, node);
  }
}

void clear_netem(nl_sock* sock, int ifindex, const std::string& node) {
  const std::string what = "delete the root qdisc";
  std::vector<QdiscRequest> requests;
  // ENOENT covers both "nothing there" and the device's default qdisc (handle 0), which the
  // kernel refuses to delete.
  requests.push_back(
      QdiscRequest{qdisc_message(RTM_DELQDISC, 0, ifindex, TC_H_ROOT, 0, what), what, true});
  send_all(sock, ifindex, std::move(requests), node);
}

// ---------------------------------------------------------------------------------------------
// Probe

namespace {

constexpr int kLoopbackIfindex = 1;  // in every network namespace

// Adds the first request of `requests` on lo; true if the kernel took it, false if it does not
// know the kind. `detail` receives the kernel's explanation.
bool probe_kind(nl_sock* sock, std::vector<QdiscRequest> requests, std::string& detail) {
  Failure f = send_request(sock, requests.front().msg.get());
  if (!failed(f)) return true;
  int err = errno_of(f);
  if (err == ENOENT || err == EOPNOTSUPP) {
    detail = (f.reply.ext_message.empty() ? std::string() : f.reply.ext_message + " ") + "(" +
             std::strerror(err) + ")";
    return false;
  }
  throw_failure(
      "qdisc probe",
      "cannot probe for qdisc support: " + requests.front().what + " on lo in a scratch namespace",
      f);
}

QdiscSupport probe() {
  QdiscSupport support;
  std::exception_ptr error;
  // A short-lived thread: unshare() moves only this thread, and its namespace (lo, qdiscs and
  // all) goes away when the thread's socket and fd are gone.
  std::thread([&] {
    try {
      UniqueFd ns = create_netns_on_this_thread("qdisc probe");
      SockPtr sock(nl_socket_alloc());
      if (!sock) throw_nomem("qdisc probe", "open rtnetlink socket for the qdisc probe");
      if (int rc = nl_connect(sock.get(), NETLINK_ROUTE); rc < 0) {
        Failure f;
        f.nl_err = rc;
        throw_failure("qdisc probe", "open rtnetlink socket for the qdisc probe", f);
      }
      int one = 1;
      ::setsockopt(nl_socket_get_fd(sock.get()), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
      support.netem = probe_kind(
          sock.get(), build_netem_messages(kLoopbackIfindex, {.limits = {.latency_ms = 1}}),
          support.netem_detail);
      support.tbf = probe_kind(
          sock.get(), build_tbf_root_messages(kLoopbackIfindex, {.limits = {.rate_kbit = 1000}}),
          support.tbf_detail);
    } catch (...) {
      error = std::current_exception();
    }
  }).join();
  if (error) std::rethrow_exception(error);
  return support;
}

}  // namespace

const QdiscSupport& qdisc_support() {
  static std::mutex mu;
  static std::optional<QdiscSupport> cached;
  std::lock_guard<std::mutex> lock(mu);
  if (!cached) cached = probe();
  return *cached;
}

bool kernel_has_netem() { return qdisc_support().netem; }

}  // namespace patchbay::internal
