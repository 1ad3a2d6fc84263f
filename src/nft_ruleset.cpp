#include "nft_ruleset.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <utility>

#include "patchbay/error.hpp"

namespace patchbay::internal {
namespace {

const char* family_name(std::uint32_t family) {
  switch (family) {
    case NFPROTO_IPV4:
      return "ip";
    case NFPROTO_IPV6:
      return "ip6";
    case NFPROTO_INET:
      return "inet";
    case NFPROTO_ARP:
      return "arp";
    case NFPROTO_BRIDGE:
      return "bridge";
    case NFPROTO_NETDEV:
      return "netdev";
  }
  return "unknown";
}

// Every table we own, in the order the batch touches them.
std::vector<NftTableSpec> plan(const RouterRules& rules) {
  return {plan_nat44(rules), plan_firewall(rules), plan_nat66(rules), plan_pmtu(rules)};
}

std::vector<NftTableSpec> unwanted_tables() { return plan(RouterRules{}); }

// Interface names must fit the kernel's IFNAMSIZ buffer. An empty name is refused as well: it
// would not mean "any interface" but silently match no packet at all.
void validate_ifname(const std::string& name, const char* role, const std::string& node) {
  if (name.empty()) {
    throw Error(ErrorKind::kInvalidArgument, node,
                std::string("nftables rules for router '") + node + "' need a " + role +
                    " interface name, but it is empty");
  }
  if (name.size() >= IFNAMSIZ || name.find('\0') != std::string::npos) {
    throw Error(ErrorKind::kInvalidArgument, node,
                std::string("nftables rules for router '") + node + "': " + role +
                    " interface name '" + name + "' is invalid (at most " +
                    std::to_string(IFNAMSIZ - 1) + " bytes, no NUL)");
  }
}

void validate(const RouterRules& rules, const std::string& node) {
  if (!rules.nat && !rules.firewall && rules.nat6.mode == NatV6Mode::None) return;
  validate_ifname(rules.wan_ifname, "WAN", node);
  validate_ifname(rules.lan_ifname, "LAN", node);
}

// ---------------------------------------------------------------------------------------------
// RAII for libnftnl / libmnl objects.

struct TableDeleter {
  void operator()(nftnl_table* t) const { nftnl_table_free(t); }
};
struct ChainDeleter {
  void operator()(nftnl_chain* c) const { nftnl_chain_free(c); }
};
struct SetDeleter {
  void operator()(nftnl_set* s) const { nftnl_set_free(s); }
};
struct RuleDeleter {
  void operator()(nftnl_rule* r) const { nftnl_rule_free(r); }
};
struct BatchDeleter {
  void operator()(mnl_nlmsg_batch* b) const { mnl_nlmsg_batch_stop(b); }
};
struct SocketDeleter {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};
using TablePtr = std::unique_ptr<nftnl_table, TableDeleter>;
using ChainPtr = std::unique_ptr<nftnl_chain, ChainDeleter>;
using RulePtr = std::unique_ptr<nftnl_rule, RuleDeleter>;
using SetPtr = std::unique_ptr<nftnl_set, SetDeleter>;
using BatchPtr = std::unique_ptr<mnl_nlmsg_batch, BatchDeleter>;
using SocketPtr = std::unique_ptr<mnl_socket, SocketDeleter>;

// A dynamic set (or map) whose elements expire: filled from the packet path with `update`.
SetPtr make_set(const NftTableSpec& table, const NftSetSpec& spec, std::uint32_t id) {
  SetPtr set(nftnl_set_alloc());
  if (!set) throw std::bad_alloc();
  nftnl_set* s = set.get();
  nftnl_set_set_u32(s, NFTNL_SET_FAMILY, table.family);
  nftnl_set_set_str(s, NFTNL_SET_TABLE, table.name);
  nftnl_set_set_str(s, NFTNL_SET_NAME, spec.name.c_str());
  nftnl_set_set_u32(s, NFTNL_SET_ID, id);
  std::uint32_t flags = NFT_SET_TIMEOUT | NFT_SET_EVAL;
  if (!spec.data.empty()) flags |= NFT_SET_MAP;
  nftnl_set_set_u32(s, NFTNL_SET_FLAGS, flags);
  nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, nft_concat_type(spec.key));
  nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, nft_concat_len(spec.key));
  if (!spec.data.empty()) {
    nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE, nft_concat_type(spec.data));
    nftnl_set_set_u32(s, NFTNL_SET_DATA_LEN, nft_concat_len(spec.data));
  }
  if (spec.size != 0) nftnl_set_set_u32(s, NFTNL_SET_DESC_SIZE, spec.size);
  return set;
}

RulePtr render_rule(const NftTableSpec& table, const NftChainSpec& chain, const RuleFn& fn) {
  RulePtr rule(nftnl_rule_alloc());
  if (!rule) throw std::bad_alloc();
  nftnl_rule_set_u32(rule.get(), NFTNL_RULE_FAMILY, table.family);
  nftnl_rule_set_str(rule.get(), NFTNL_RULE_TABLE, table.name);
  nftnl_rule_set_str(rule.get(), NFTNL_RULE_CHAIN, chain.name.c_str());
  RuleBuilder builder(rule.get(), table.family);
  fn(builder);
  return rule;
}

TablePtr make_table(std::uint16_t family, const char* name) {
  TablePtr table(nftnl_table_alloc());
  if (!table) throw std::bad_alloc();
  nftnl_table_set_u32(table.get(), NFTNL_TABLE_FAMILY, family);
  nftnl_table_set_str(table.get(), NFTNL_TABLE_NAME, name);
  return table;
}

ChainPtr make_chain(const NftTableSpec& table, const NftChainSpec& spec) {
  ChainPtr chain(nftnl_chain_alloc());
  if (!chain) throw std::bad_alloc();
  nftnl_chain* c = chain.get();
  nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, table.family);
  nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table.name);
  nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, spec.name.c_str());
  nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, spec.type);
  nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, spec.hook);
  nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, spec.priority);
  nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
  return chain;
}

// ---------------------------------------------------------------------------------------------
// One nfnetlink transaction: BATCH_BEGIN, messages that each request an ACK, BATCH_END.
// Remembers which sequence number carried which object, to name it in errors.

class Transaction {
 public:
  Transaction(std::uint32_t& seq, const std::string& node)
      : seq_(seq), node_(node), buf_(2 * kLimit) {
    batch_.reset(mnl_nlmsg_batch_start(buf_.data(), kLimit));
    if (!batch_) throw std::bad_alloc();
    nftnl_batch_begin(static_cast<char*>(mnl_nlmsg_batch_current(batch_.get())), ++seq_);
    next();
  }

  void add_table(std::uint16_t msg_type, const NftTableSpec& spec, std::uint16_t flags) {
    TablePtr table = make_table(spec.family, spec.name);
    nlmsghdr* nlh = header(msg_type, spec.family, flags,
                           std::string("table ") + family_name(spec.family) + " " + spec.name);
    nftnl_table_nlmsg_build_payload(nlh, table.get());
    next();
  }

  void add_chain(const NftTableSpec& table, const NftChainSpec& spec) {
    ChainPtr chain = make_chain(table, spec);
    nlmsghdr* nlh = header(NFT_MSG_NEWCHAIN, table.family, NLM_F_CREATE,
                           std::string("chain ") + table.name + "/" + spec.name);
    nftnl_chain_nlmsg_build_payload(nlh, chain.get());
    next();
  }

  void add_set(const NftTableSpec& table, const NftSetSpec& spec) {
    SetPtr set = make_set(table, spec, ++set_id_);
    nlmsghdr* nlh = header(NFT_MSG_NEWSET, table.family, NLM_F_CREATE,
                           std::string("set ") + table.name + "/" + spec.name);
    nftnl_set_nlmsg_build_payload(nlh, set.get());
    next();
  }

  // Deletes every element of a set (a DELSETELEM without elements flushes it).
  void flush_set(const NftTableSpec& table, const char* name) {
    SetPtr set(nftnl_set_alloc());
    if (!set) throw std::bad_alloc();
    nftnl_set_set_u32(set.get(), NFTNL_SET_FAMILY, table.family);
    nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, table.name);
    nftnl_set_set_str(set.get(), NFTNL_SET_NAME, name);
    nlmsghdr* nlh = header(NFT_MSG_DELSETELEM, table.family, 0,
                           std::string("elements of set ") + table.name + "/" + name);
    nftnl_set_elems_nlmsg_build_payload(nlh, set.get());
    next();
  }

  void add_rule(const NftTableSpec& table, const NftChainSpec& chain, std::size_t index) {
    RulePtr rule = render_rule(table, chain, chain.rules[index]);
    nlmsghdr* nlh =
        header(NFT_MSG_NEWRULE, table.family, NLM_F_CREATE | NLM_F_APPEND,
               "rule " + std::to_string(index + 1) + " of chain " + table.name + "/" + chain.name);
    nftnl_rule_nlmsg_build_payload(nlh, rule.get());
    next();
  }

  // Sends the batch and waits for every ACK. Throws with the first failing message named.
  void commit(mnl_socket* sock, const char* operation);

 private:
  static constexpr std::size_t kLimit = 64 * 1024;

  nlmsghdr* header(std::uint16_t msg_type, std::uint16_t family, std::uint16_t flags,
                   std::string what) {
    std::uint32_t seq = ++seq_;
    what_.emplace(seq, std::move(what));
    return nftnl_nlmsg_build_hdr(static_cast<char*>(mnl_nlmsg_batch_current(batch_.get())),
                                 msg_type, family, flags | NLM_F_ACK, seq);
  }

  void next() {
    if (!mnl_nlmsg_batch_next(batch_.get())) {
      // One transaction must stay one batch, or it would stop being atomic.
      throw Error(ErrorKind::kKernel, node_,
                  "nftables ruleset for router '" + node_ + "' exceeds the batch buffer", E2BIG);
    }
  }

  std::uint32_t& seq_;
  const std::string& node_;
  std::vector<char> buf_;
  BatchPtr batch_;
  std::map<std::uint32_t, std::string> what_;  // seq -> object, for messages wanting an ACK
  std::uint32_t set_id_ = 0;
};

struct AckState {
  std::map<std::uint32_t, int> results;           // seq -> 0 or negative errno
  std::map<std::uint32_t, std::string> messages;  // seq -> extended ACK text
};

int extack_attr_cb(const nlattr* attr, void* data) {
  if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
      mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0) {
    *static_cast<std::string*>(data) = mnl_attr_get_str(attr);
  }
  return MNL_CB_OK;
}

// ACKs and errors both arrive as NLMSG_ERROR; record them and keep going, so one recv buffer
// holding several of them is fully consumed.
int ack_cb(const nlmsghdr* nlh, void* data) {
  auto* state = static_cast<AckState*>(data);
  if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(nlmsgerr))) {
    errno = EBADMSG;
    return MNL_CB_ERROR;
  }
  const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
  state->results[err->msg.nlmsg_seq] = err->error;
  if (err->error != 0 && (nlh->nlmsg_flags & NLM_F_ACK_TLVS)) {
    std::size_t offset = sizeof(nlmsgerr);
    if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) offset += err->msg.nlmsg_len - sizeof(nlmsghdr);
    std::string text;
    if (mnl_nlmsg_get_payload_len(nlh) > offset) {
      mnl_attr_parse(nlh, static_cast<unsigned>(offset), extack_attr_cb, &text);
    }
    if (!text.empty()) state->messages[err->msg.nlmsg_seq] = text;
  }
  return MNL_CB_OK;
}

void Transaction::commit(mnl_socket* sock, const char* operation) {
  nftnl_batch_end(static_cast<char*>(mnl_nlmsg_batch_current(batch_.get())), ++seq_);
  next();
  const std::string prefix =
      std::string("nftables ") + operation + " failed in router '" + node_ + "'";

  void* head = mnl_nlmsg_batch_head(batch_.get());
  std::size_t size = mnl_nlmsg_batch_size(batch_.get());
  if (mnl_socket_sendto(sock, head, size) < 0) {
    throw Error(ErrorKind::kKernel, node_, prefix + " (sending the batch)", errno);
  }

  // The kernel handles the batch inside sendmsg(), so all replies are queued by now; the poll
  // timeout only guards against a kernel that answers fewer messages than expected.
  AckState state;
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  mnl_cb_t ctl_cbs[NLMSG_MIN_TYPE] = {};
  ctl_cbs[NLMSG_ERROR] = ack_cb;
  bool batch_error = false;
  std::size_t answered = 0;
  while (answered < what_.size() && !batch_error) {
    pollfd pfd{mnl_socket_get_fd(sock), POLLIN, 0};
    int ready = ::poll(&pfd, 1, 5000);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      throw Error(ErrorKind::kKernel, node_,
                  prefix + " (no acknowledgement for " + std::to_string(what_.size() - answered) +
                      " of " + std::to_string(what_.size()) + " messages)",
                  ready < 0 ? errno : ETIMEDOUT);
    }
    ssize_t n = mnl_socket_recvfrom(sock, buf.data(), buf.size());
    if (n < 0) {
      throw Error(ErrorKind::kKernel, node_, prefix + " (reading acknowledgements)", errno);
    }
    int rc = mnl_cb_run2(buf.data(), static_cast<std::size_t>(n), 0, mnl_socket_get_portid(sock),
                         nullptr, &state, ctl_cbs, NLMSG_MIN_TYPE);
    if (rc < 0) {
      throw Error(ErrorKind::kKernel, node_, prefix + " (reading acknowledgements)", errno);
    }
    answered = 0;
    for (const auto& [seq, error] : state.results) {
      if (what_.count(seq) != 0) {
        ++answered;
      } else if (error != 0) {
        // An error about the batch as a whole (e.g. ENOMEM pointing at BATCH_BEGIN): no
        // per-message answers follow.
        batch_error = true;
      }
    }
  }

  // Messages after the first failure usually fail as a consequence; report the first.
  for (const auto& [seq, error] : state.results) {
    if (error == 0) continue;
    auto it = what_.find(seq);
    std::string what = it != what_.end() ? it->second : "batch";
    auto msg = state.messages.find(seq);
    if (msg != state.messages.end()) what += ": " + msg->second;
    throw Error(ErrorKind::kKernel, node_, prefix + " (" + what + ")", -error);
  }
}

// Emits what makes `table` exist exactly as planned: add (creates it if missing, so the
// delete cannot fail), delete, then the new contents if wanted.
void emit_table(Transaction& tx, const NftTableSpec& table, bool replace = true) {
  if (replace) {
    tx.add_table(NFT_MSG_NEWTABLE, table, NLM_F_CREATE);
    tx.add_table(NFT_MSG_DELTABLE, table, 0);
  }
  if (!table.wanted) return;
  tx.add_table(NFT_MSG_NEWTABLE, table, NLM_F_CREATE);
  for (const NftSetSpec& set : table.sets) tx.add_set(table, set);
  for (const NftChainSpec& chain : table.chains) tx.add_chain(table, chain);
  for (const NftChainSpec& chain : table.chains) {
    for (std::size_t i = 0; i < chain.rules.size(); ++i) tx.add_rule(table, chain, i);
  }
}

// Drops replies left over from an earlier, interrupted exchange so they cannot be mistaken
// for answers to the next request.
void drain(mnl_socket* sock) {
  char buf[4096];
  while (::recv(mnl_socket_get_fd(sock), buf, sizeof buf, MSG_DONTWAIT) > 0) {
  }
}

// ---------------------------------------------------------------------------------------------
// Dumps for list_ruleset().

using DumpHandler = std::function<bool(const nlmsghdr*)>;

int dump_cb(const nlmsghdr* nlh, void* data) {
  if ((*static_cast<DumpHandler*>(data))(nlh)) return MNL_CB_OK;
  errno = EBADMSG;
  return MNL_CB_ERROR;
}

// Runs one NLM_F_DUMP request over all families and feeds each object message to `handler`.
void dump(mnl_socket* sock, std::uint32_t& seq, std::uint16_t msg_type, DumpHandler handler,
          const std::string& node, const char* what) {
  drain(sock);
  std::vector<char> buf(64 * 1024);  // dump skbs are up to 32 KiB; smaller buffers truncate
  std::uint32_t my_seq = ++seq;
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), msg_type, NFPROTO_UNSPEC, NLM_F_DUMP, my_seq);
  const std::string message =
      std::string("nftables: listing ") + what + " of router '" + node + "' failed";
  if (mnl_socket_sendto(sock, nlh, nlh->nlmsg_len) < 0) {
    throw Error(ErrorKind::kKernel, node, message, errno);
  }
  std::uint32_t portid = mnl_socket_get_portid(sock);
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(sock, buf.data(), buf.size());
    if (n < 0) throw Error(ErrorKind::kKernel, node, message, errno);
    int rc = mnl_cb_run(buf.data(), static_cast<std::size_t>(n), my_seq, portid, dump_cb, &handler);
    if (rc == MNL_CB_STOP) return;
    if (rc < 0) throw Error(ErrorKind::kKernel, node, message, errno);
  }
}

// Parses each dumped message into a fresh libnftnl object appended to `out`.
template <class Ptr, class Obj>
DumpHandler collect(std::vector<Ptr>& out, Obj* (*alloc)(), int (*parse)(const nlmsghdr*, Obj*)) {
  return [&out, alloc, parse](const nlmsghdr* nlh) {
    Ptr obj(alloc());
    if (!obj || parse(nlh, obj.get()) < 0) return false;
    out.push_back(std::move(obj));
    return true;
  };
}

const char* hook_name(std::uint32_t family, std::uint32_t hook) {
  if (family == NFPROTO_NETDEV) return hook == NF_NETDEV_INGRESS ? "ingress" : "egress";
  // ARP hooks are NF_ARP_IN/OUT/FORWARD (<linux/netfilter_arp.h>): 0, 1, 2.
  if (family == NFPROTO_ARP) return hook == 0 ? "input" : hook == 1 ? "output" : "forward";
  switch (hook) {
    case NF_INET_PRE_ROUTING:
      return "prerouting";
    case NF_INET_LOCAL_IN:
      return "input";
    case NF_INET_FORWARD:
      return "forward";
    case NF_INET_LOCAL_OUT:
      return "output";
    case NF_INET_POST_ROUTING:
      return "postrouting";
    case NF_INET_INGRESS:
      return "ingress";
  }
  return "unknown";
}

std::string str_attr(const char* value) { return value != nullptr ? value : ""; }

// " (type nat hook postrouting prio 100 policy accept)" for base chains, "" otherwise.
std::string describe_hook(std::uint32_t family, const nftnl_chain* c) {
  if (!nftnl_chain_is_set(c, NFTNL_CHAIN_HOOKNUM)) return "";
  std::string type = nftnl_chain_is_set(c, NFTNL_CHAIN_TYPE)
                         ? str_attr(nftnl_chain_get_str(c, NFTNL_CHAIN_TYPE))
                         : std::string("?");
  std::uint32_t policy = nftnl_chain_is_set(c, NFTNL_CHAIN_POLICY)
                             ? nftnl_chain_get_u32(c, NFTNL_CHAIN_POLICY)
                             : static_cast<std::uint32_t>(NF_ACCEPT);
  return " (type " + type + " hook " +
         hook_name(family, nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM)) + " prio " +
         std::to_string(nftnl_chain_get_s32(c, NFTNL_CHAIN_PRIO)) + " policy " +
         (policy == NF_DROP ? "drop" : "accept") + ")";
}

// The rule's expressions, one "[ ... ]" per line, indented under the rule.
std::string describe_expressions(const nftnl_rule* rule) {
  std::vector<char> buf(1024);
  int n;
  while ((n = nftnl_rule_snprintf(buf.data(), buf.size(), rule, NFTNL_OUTPUT_DEFAULT, 0)) >= 0 &&
         static_cast<std::size_t>(n) >= buf.size()) {
    buf.resize(static_cast<std::size_t>(n) + 1);
  }
  if (n < 0) return "      <unprintable rule>\n";
  const std::string text(buf.data(), static_cast<std::size_t>(n));
  // nftnl starts with a "family table chain handle" line that the caller already shows.
  std::string out;
  std::size_t pos = text.find('\n');
  while (pos != std::string::npos && pos + 1 < text.size()) {
    std::size_t begin = text.find_first_not_of(' ', pos + 1);
    std::size_t end = text.find('\n', pos + 1);
    if (begin != std::string::npos && (end == std::string::npos || begin < end)) {
      out += "      " + text.substr(begin, end == std::string::npos ? end : end - begin) + "\n";
    }
    pos = end;
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

NftSocket NftSocket::open_in_current_netns(const std::string& node) {
  SocketPtr sock(mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC));
  if (!sock) {
    throw Error(ErrorKind::kKernel, node,
                "cannot open nftables netlink socket in router '" + node + "'", errno);
  }
  if (mnl_socket_bind(sock.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    throw Error(ErrorKind::kKernel, node,
                "cannot bind nftables netlink socket in router '" + node + "'", errno);
  }
  // Small ACKs (no echo of each request) and the kernel's error text when it has one; both are
  // best effort, so failures are ignored.
  int one = 1;
  mnl_socket_setsockopt(sock.get(), NETLINK_CAP_ACK, &one, sizeof one);
  mnl_socket_setsockopt(sock.get(), NETLINK_EXT_ACK, &one, sizeof one);
  return NftSocket(sock.release(), node);
}

NftSocket::NftSocket(mnl_socket* sock, std::string node) : sock_(sock), node_(std::move(node)) {}

NftSocket::NftSocket(NftSocket&& other) noexcept
    : sock_(std::exchange(other.sock_, nullptr)), node_(std::move(other.node_)), seq_(other.seq_) {}

NftSocket& NftSocket::operator=(NftSocket&& other) noexcept {
  if (this != &other) {
    if (sock_) mnl_socket_close(sock_);
    sock_ = std::exchange(other.sock_, nullptr);
    node_ = std::move(other.node_);
    seq_ = other.seq_;
  }
  return *this;
}

NftSocket::~NftSocket() {
  if (sock_) mnl_socket_close(sock_);
}

void NftSocket::apply(const RouterRules& rules) {
  validate(rules, node_);
  std::vector<NftTableSpec> tables = plan(rules);
  drain(sock_);
  Transaction tx(seq_, node_);
  for (const NftTableSpec& table : tables) emit_table(tx, table);
  tx.commit(sock_, "apply");
}

void NftSocket::install(const RouterRules& rules) {
  validate(rules, node_);
  std::vector<NftTableSpec> tables = plan(rules);
  drain(sock_);
  Transaction tx(seq_, node_);
  for (const NftTableSpec& table : tables) emit_table(tx, table, /*replace=*/false);
  tx.commit(sock_, "install");
}

void NftSocket::apply_table(const NftTableSpec& table) {
  drain(sock_);
  Transaction tx(seq_, node_);
  emit_table(tx, table);
  tx.commit(sock_, "update");
}

void NftSocket::clear() {
  drain(sock_);
  Transaction tx(seq_, node_);
  for (const NftTableSpec& table : unwanted_tables()) emit_table(tx, table);
  tx.commit(sock_, "clear");
}

void NftSocket::flush_nat_sets(const RouterRules& rules) {
  const NftTableSpec nat = plan_nat44(rules);
  if (!nat.wanted || nat.sets.empty()) return;
  drain(sock_);
  Transaction tx(seq_, node_);
  for (const NftSetSpec& set : nat.sets) tx.flush_set(nat, set.name.c_str());
  tx.commit(sock_, "flush of NAT mappings");
}

std::string NftSocket::list_ruleset() {
  std::vector<TablePtr> tables;
  std::vector<ChainPtr> chains;
  std::vector<RulePtr> rules;
  dump(sock_, seq_, NFT_MSG_GETTABLE, collect(tables, nftnl_table_alloc, nftnl_table_nlmsg_parse),
       node_, "tables");
  dump(sock_, seq_, NFT_MSG_GETCHAIN, collect(chains, nftnl_chain_alloc, nftnl_chain_nlmsg_parse),
       node_, "chains");
  dump(sock_, seq_, NFT_MSG_GETRULE, collect(rules, nftnl_rule_alloc, nftnl_rule_nlmsg_parse),
       node_, "rules");

  if (tables.empty()) return "(no nftables tables)\n";
  std::string out;
  for (const TablePtr& t : tables) {
    const std::uint32_t family = nftnl_table_get_u32(t.get(), NFTNL_TABLE_FAMILY);
    const std::string table = str_attr(nftnl_table_get_str(t.get(), NFTNL_TABLE_NAME));
    out += std::string("table ") + family_name(family) + " " + table + "\n";
    for (const ChainPtr& c : chains) {
      if (nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_FAMILY) != family ||
          str_attr(nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE)) != table) {
        continue;
      }
      const std::string chain = str_attr(nftnl_chain_get_str(c.get(), NFTNL_CHAIN_NAME));
      out += "  chain " + chain + describe_hook(family, c.get()) + "\n";
      int index = 0;
      for (const RulePtr& r : rules) {
        if (nftnl_rule_get_u32(r.get(), NFTNL_RULE_FAMILY) != family ||
            str_attr(nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE)) != table ||
            str_attr(nftnl_rule_get_str(r.get(), NFTNL_RULE_CHAIN)) != chain) {
          continue;
        }
        out += "    rule " + std::to_string(++index) + " (handle " +
               std::to_string(nftnl_rule_get_u64(r.get(), NFTNL_RULE_HANDLE)) + ")\n";
        out += describe_expressions(r.get());
      }
    }
  }
  return out;
}

}  // namespace patchbay::internal
