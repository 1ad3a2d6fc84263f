#include "nft_ruleset.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
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

// ---------------------------------------------------------------------------------------------
// Behaviour tables. Everything preset-specific lives here, so refining a NAT or firewall
// behaviour only edits these two functions, never the rendering code below.

struct NatBehaviour {
  // Flags of the masquerade expression (NF_NAT_RANGE_*).
  std::uint32_t masq_flags = 0;
  // Inbound WAN traffic is only forwarded for flows the inside opened
  // (address-and-port-dependent filtering). False: anything hitting a mapping may enter.
  bool filter_inbound = true;
};

NatBehaviour nat_behaviour(Nat nat) {
  switch (nat) {
    case Nat::None:
      return {};
    // Linux keeps the inside source port when it is free, so one inside endpoint keeps its
    // outside port towards every destination: endpoint-independent mapping in practice.
    case Nat::Home:
    case Nat::Cgnat:
      return {.masq_flags = 0, .filter_inbound = true};
    case Nat::FullCone:
      return {.masq_flags = 0, .filter_inbound = false};
    // A random port per connection: the mapping depends on the destination (symmetric NAT).
    case Nat::Corporate:
    case Nat::CloudNat:
      return {.masq_flags = NF_NAT_RANGE_PROTO_RANDOM, .filter_inbound = true};
  }
  return {};
}

// Destination ports new LAN flows may use, per protocol; nullopt leaves the protocol open.
struct PortPolicy {
  std::optional<std::vector<std::uint16_t>> tcp_allow;
  std::optional<std::vector<std::uint16_t>> udp_allow;
};

struct FirewallBehaviour {
  bool block_inbound = false;  // drop everything new arriving on the WAN
  PortPolicy lan;              // applied to flows entering from the LAN
};

FirewallBehaviour firewall_behaviour(Firewall firewall) {
  switch (firewall) {
    case Firewall::None:
      return {};
    case Firewall::BlockInbound:
      return {.block_inbound = true, .lan = {}};
    case Firewall::Corporate:
      return {.block_inbound = true,
              .lan = {.tcp_allow = std::vector<std::uint16_t>{80, 443},
                      .udp_allow = std::vector<std::uint16_t>{53}}};
    case Firewall::CaptivePortal:
      return {.block_inbound = true,
              .lan = {.tcp_allow = std::nullopt, .udp_allow = std::vector<std::uint16_t>{53}}};
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// The ruleset as plain data, rendered to netlink further down.

enum class Action { kAccept, kDrop, kMasquerade };

// One rule: all matches must hold, then the action runs. Built fluently, e.g.
// RuleSpec().iif("wan").established().then(Action::kAccept).
struct RuleSpec {
  std::optional<std::string> iifname;  // nullopt: any
  std::optional<std::string> oifname;  // nullopt: any
  bool ct_established_related = false;
  std::optional<std::uint8_t> l4proto;
  std::optional<std::uint16_t> dport;  // needs l4proto
  Action action = Action::kAccept;
  std::uint32_t masq_flags = 0;

  RuleSpec& iif(std::string name) {
    iifname = std::move(name);
    return *this;
  }
  RuleSpec& oif(std::string name) {
    oifname = std::move(name);
    return *this;
  }
  RuleSpec& established() {
    ct_established_related = true;
    return *this;
  }
  RuleSpec& proto(std::uint8_t l4, std::optional<std::uint16_t> port = std::nullopt) {
    l4proto = l4;
    dport = port;
    return *this;
  }
  RuleSpec& then(Action a, std::uint32_t flags = 0) {
    action = a;
    masq_flags = flags;
    return *this;
  }
};

struct ChainSpec {
  std::string name;
  const char* type;  // "nat" or "filter"
  std::uint32_t hook;
  std::int32_t priority;
  std::vector<RuleSpec> rules;
};

struct TableSpec {
  std::uint16_t family;
  const char* name;
  bool wanted = false;  // false: the table is only deleted
  std::vector<ChainSpec> chains;
};

// Hook priorities under the names nft gives them (NF_IP_PRI_* of <linux/netfilter_ipv4.h>).
constexpr std::int32_t kPrioDstNat = -100;  // "dstnat"
constexpr std::int32_t kPrioFilter = 0;     // "filter"
constexpr std::int32_t kPrioSrcNat = 100;   // "srcnat"

constexpr const char* kNatTable = "pb_nat";
constexpr const char* kFilterTable = "pb_filter";
constexpr const char* kFirewallTable = "pb_fw";

// Our tables in the order the batch touches them (all of them, wanted or not).
std::vector<TableSpec> our_tables() {
  return {{NFPROTO_IPV4, kNatTable, false, {}},
          {NFPROTO_IPV4, kFilterTable, false, {}},
          {NFPROTO_INET, kFirewallTable, false, {}}};
}

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

std::vector<TableSpec> plan(const RouterRules& rules) {
  std::vector<TableSpec> tables = our_tables();
  TableSpec& nat = tables[0];
  TableSpec& filter = tables[1];
  TableSpec& fw = tables[2];

  const NatBehaviour nat_rules = nat_behaviour(rules.nat);
  // No IPv4 uplink address, nothing to masquerade to.
  if (rules.nat != Nat::None && rules.wan_ipv4) {
    nat.wanted = true;
    // Kept empty on purpose: NAT only reverse-translates inbound packets at hooks where a NAT
    // chain is registered. Without a prerouting one, replies to the WAN address can be
    // delivered locally to the router instead of being forwarded to the inside host.
    nat.chains.push_back({"prerouting", "nat", NF_INET_PRE_ROUTING, kPrioDstNat, {}});
    nat.chains.push_back(
        {"postrouting",
         "nat",
         NF_INET_POST_ROUTING,
         kPrioSrcNat,
         {RuleSpec().oif(rules.wan_ifname).then(Action::kMasquerade, nat_rules.masq_flags)}});
  }
  if (rules.nat != Nat::None && nat_rules.filter_inbound) {
    filter.wanted = true;
    filter.chains.push_back({"forward",
                             "filter",
                             NF_INET_FORWARD,
                             kPrioFilter,
                             {RuleSpec().iif(rules.wan_ifname).established().then(Action::kAccept),
                              RuleSpec().iif(rules.wan_ifname).then(Action::kDrop)}});
  }

  if (rules.firewall != Firewall::None) {
    const FirewallBehaviour fw_rules = firewall_behaviour(rules.firewall);
    fw.wanted = true;
    // Priority 10: after pb_filter (0), so NAT filtering and the firewall compose.
    ChainSpec forward{"forward", "filter", NF_INET_FORWARD, kPrioFilter + 10, {}};
    forward.rules.push_back(RuleSpec().established().then(Action::kAccept));
    if (fw_rules.block_inbound) {
      forward.rules.push_back(RuleSpec().iif(rules.wan_ifname).then(Action::kDrop));
    }
    // Port policies only see new flows from the LAN (established ones were accepted above).
    // ICMP matches none of these rules and so is never filtered here.
    auto restrict = [&](std::uint8_t proto,
                        const std::optional<std::vector<std::uint16_t>>& ports) {
      if (!ports) return;
      for (std::uint16_t port : *ports) {
        forward.rules.push_back(
            RuleSpec().iif(rules.lan_ifname).proto(proto, port).then(Action::kAccept));
      }
      forward.rules.push_back(RuleSpec().iif(rules.lan_ifname).proto(proto).then(Action::kDrop));
    };
    restrict(IPPROTO_TCP, fw_rules.lan.tcp_allow);
    restrict(IPPROTO_UDP, fw_rules.lan.udp_allow);
    fw.chains.push_back(std::move(forward));
  }
  return tables;
}

// Interface names must fit the kernel's IFNAMSIZ buffer. An empty name is refused as well: it
// would not mean "any interface" but silently match no packet at all.
void validate_ifname(const std::string& name, const RouterRules& rules, const std::string& node) {
  const char* role = name == rules.wan_ifname ? "WAN" : "LAN";
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

void validate(const std::vector<TableSpec>& tables, const RouterRules& rules,
              const std::string& node) {
  for (const TableSpec& table : tables) {
    for (const ChainSpec& chain : table.chains) {
      for (const RuleSpec& rule : chain.rules) {
        if (rule.iifname) validate_ifname(*rule.iifname, rules, node);
        if (rule.oifname) validate_ifname(*rule.oifname, rules, node);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// RAII for libnftnl / libmnl objects.

struct TableDeleter {
  void operator()(nftnl_table* t) const { nftnl_table_free(t); }
};
struct ChainDeleter {
  void operator()(nftnl_chain* c) const { nftnl_chain_free(c); }
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
using BatchPtr = std::unique_ptr<mnl_nlmsg_batch, BatchDeleter>;
using SocketPtr = std::unique_ptr<mnl_socket, SocketDeleter>;

// ---------------------------------------------------------------------------------------------
// Expression builders. Every expression goes to the rule right after allocation, which then
// owns it (nftnl_rule_add_expr cannot fail).

nftnl_expr* new_expr(nftnl_rule* rule, const char* name) {
  nftnl_expr* expr = nftnl_expr_alloc(name);
  if (!expr) throw std::bad_alloc();
  nftnl_rule_add_expr(rule, expr);
  return expr;
}

void add_meta_load(nftnl_rule* rule, std::uint32_t key) {
  nftnl_expr* e = new_expr(rule, "meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
}

void add_cmp(nftnl_rule* rule, std::uint32_t op, const void* data, std::uint32_t len) {
  nftnl_expr* e = new_expr(rule, "cmp");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
  nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
}

// iifname/oifname: like nft, compare the whole zero-padded IFNAMSIZ buffer, so "wan" matches
// exactly "wan" and not "wan0".
void add_ifname_match(nftnl_rule* rule, std::uint32_t key, const std::string& name) {
  char buf[IFNAMSIZ] = {};
  std::memcpy(buf, name.data(), std::min(name.size(), sizeof buf - 1));
  add_meta_load(rule, key);
  add_cmp(rule, NFT_CMP_EQ, buf, sizeof buf);
}

void add_ct_established_related(nftnl_rule* rule) {
  nftnl_expr* ct = new_expr(rule, "ct");
  nftnl_expr_set_u32(ct, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
  nftnl_expr_set_u32(ct, NFTNL_EXPR_CT_DREG, NFT_REG_1);

  // ct state is a bit mask in host byte order: (state & (est|rel)) != 0.
  std::uint32_t mask = NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED);
  std::uint32_t zero = 0;
  nftnl_expr* bw = new_expr(rule, "bitwise");
  nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
  nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
  nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_LEN, sizeof mask);
  nftnl_expr_set(bw, NFTNL_EXPR_BITWISE_MASK, &mask, sizeof mask);
  nftnl_expr_set(bw, NFTNL_EXPR_BITWISE_XOR, &zero, sizeof zero);
  add_cmp(rule, NFT_CMP_NEQ, &zero, sizeof zero);
}

void add_l4proto_match(nftnl_rule* rule, std::uint8_t proto) {
  add_meta_load(rule, NFT_META_L4PROTO);
  add_cmp(rule, NFT_CMP_EQ, &proto, sizeof proto);
}

// Destination port of TCP/UDP: bytes 2..3 of the transport header, network byte order.
void add_dport_match(nftnl_rule* rule, std::uint16_t port) {
  nftnl_expr* e = new_expr(rule, "payload");
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, 2);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, sizeof(std::uint16_t));
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
  std::uint16_t be = htons(port);
  add_cmp(rule, NFT_CMP_EQ, &be, sizeof be);
}

void add_verdict(nftnl_rule* rule, int verdict) {
  nftnl_expr* e = new_expr(rule, "immediate");
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, static_cast<std::uint32_t>(verdict));
}

void add_masquerade(nftnl_rule* rule, std::uint32_t flags) {
  nftnl_expr* e = new_expr(rule, "masq");
  if (flags != 0) nftnl_expr_set_u32(e, NFTNL_EXPR_MASQ_FLAGS, flags);
}

RulePtr render_rule(const TableSpec& table, const ChainSpec& chain, const RuleSpec& spec) {
  RulePtr rule(nftnl_rule_alloc());
  if (!rule) throw std::bad_alloc();
  nftnl_rule* r = rule.get();
  nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, table.family);
  nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table.name);
  nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain.name.c_str());
  if (spec.iifname) add_ifname_match(r, NFT_META_IIFNAME, *spec.iifname);
  if (spec.oifname) add_ifname_match(r, NFT_META_OIFNAME, *spec.oifname);
  if (spec.ct_established_related) add_ct_established_related(r);
  if (spec.l4proto) add_l4proto_match(r, *spec.l4proto);
  if (spec.dport) add_dport_match(r, *spec.dport);
  switch (spec.action) {
    case Action::kAccept:
      add_verdict(r, NF_ACCEPT);
      break;
    case Action::kDrop:
      add_verdict(r, NF_DROP);
      break;
    case Action::kMasquerade:
      add_masquerade(r, spec.masq_flags);
      break;
  }
  return rule;
}

TablePtr make_table(std::uint16_t family, const char* name) {
  TablePtr table(nftnl_table_alloc());
  if (!table) throw std::bad_alloc();
  nftnl_table_set_u32(table.get(), NFTNL_TABLE_FAMILY, family);
  nftnl_table_set_str(table.get(), NFTNL_TABLE_NAME, name);
  return table;
}

ChainPtr make_chain(const TableSpec& table, const ChainSpec& spec) {
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

  void add_table(std::uint16_t msg_type, const TableSpec& spec, std::uint16_t flags) {
    TablePtr table = make_table(spec.family, spec.name);
    nlmsghdr* nlh = header(msg_type, spec.family, flags,
                           std::string("table ") + family_name(spec.family) + " " + spec.name);
    nftnl_table_nlmsg_build_payload(nlh, table.get());
    next();
  }

  void add_chain(const TableSpec& table, const ChainSpec& spec) {
    ChainPtr chain = make_chain(table, spec);
    nlmsghdr* nlh = header(NFT_MSG_NEWCHAIN, table.family, NLM_F_CREATE,
                           std::string("chain ") + table.name + "/" + spec.name);
    nftnl_chain_nlmsg_build_payload(nlh, chain.get());
    next();
  }

  void add_rule(const TableSpec& table, const ChainSpec& chain, std::size_t index) {
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
void emit_table(Transaction& tx, const TableSpec& table, bool replace = true) {
  if (replace) {
    tx.add_table(NFT_MSG_NEWTABLE, table, NLM_F_CREATE);
    tx.add_table(NFT_MSG_DELTABLE, table, 0);
  }
  if (!table.wanted) return;
  tx.add_table(NFT_MSG_NEWTABLE, table, NLM_F_CREATE);
  for (const ChainSpec& chain : table.chains) tx.add_chain(table, chain);
  for (const ChainSpec& chain : table.chains) {
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
  std::vector<TableSpec> tables = plan(rules);
  validate(tables, rules, node_);
  drain(sock_);
  Transaction tx(seq_, node_);
  for (const TableSpec& table : tables) emit_table(tx, table);
  tx.commit(sock_, "apply");
}

void NftSocket::install(const RouterRules& rules) {
  std::vector<TableSpec> tables = plan(rules);
  validate(tables, rules, node_);
  drain(sock_);
  Transaction tx(seq_, node_);
  for (const TableSpec& table : tables) emit_table(tx, table, /*replace=*/false);
  tx.commit(sock_, "install");
}

void NftSocket::clear() {
  drain(sock_);
  Transaction tx(seq_, node_);
  for (const TableSpec& table : our_tables()) emit_table(tx, table);
  tx.commit(sock_, "clear");
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
