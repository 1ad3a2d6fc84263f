#include "conntrack.hpp"

#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "patchbay/error.hpp"

namespace patchbay::internal {
namespace {

struct SocketCloser {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};

// Attribute table of a nested attribute: tb[type] = attribute (or null).
template <std::size_t N>
void parse_nested(const nlattr* nest, const nlattr* (&tb)[N]) {
  for (auto& a : tb) a = nullptr;
  if (nest == nullptr) return;
  // libmnl's iteration macros assign void* and do not compile as C++.
  const char* end =
      static_cast<const char*>(mnl_attr_get_payload(nest)) + mnl_attr_get_payload_len(nest);
  for (auto* a = static_cast<const nlattr*>(mnl_attr_get_payload(nest));
       mnl_attr_ok(a, static_cast<int>(end - reinterpret_cast<const char*>(a)));
       a = mnl_attr_next(a)) {
    const unsigned type = mnl_attr_get_type(a);
    if (type < N) tb[type] = a;
  }
}

std::string address_text(const nlattr* a, int family) {
  if (a == nullptr) return "?";
  char text[INET6_ADDRSTRLEN] = "?";
  ::inet_ntop(family, mnl_attr_get_payload(a), text, sizeof text);
  return text;
}

// "10.0.1.2:5000 -> 198.18.0.3:7000" (ports for TCP/UDP, "id N" for ICMP).
std::string tuple_text(const nlattr* tuple, int family) {
  const nlattr* t[CTA_TUPLE_MAX + 1];
  parse_nested(tuple, t);
  const nlattr* ip[CTA_IP_MAX + 1];
  parse_nested(t[CTA_TUPLE_IP], ip);
  const nlattr* proto[CTA_PROTO_MAX + 1];
  parse_nested(t[CTA_TUPLE_PROTO], proto);
  const bool v6 = family == AF_INET6;
  std::string src = address_text(ip[v6 ? CTA_IP_V6_SRC : CTA_IP_V4_SRC], family);
  std::string dst = address_text(ip[v6 ? CTA_IP_V6_DST : CTA_IP_V4_DST], family);
  if (v6) {
    src = "[" + src + "]";
    dst = "[" + dst + "]";
  }
  if (proto[CTA_PROTO_SRC_PORT] && proto[CTA_PROTO_DST_PORT]) {
    src += ":" + std::to_string(ntohs(mnl_attr_get_u16(proto[CTA_PROTO_SRC_PORT])));
    dst += ":" + std::to_string(ntohs(mnl_attr_get_u16(proto[CTA_PROTO_DST_PORT])));
  }
  std::string out = src + " -> " + dst;
  const nlattr* icmp_id = proto[v6 ? CTA_PROTO_ICMPV6_ID : CTA_PROTO_ICMP_ID];
  if (icmp_id) out += " id " + std::to_string(ntohs(mnl_attr_get_u16(icmp_id)));
  return out;
}

std::string protocol_name(const nlattr* tuple) {
  const nlattr* t[CTA_TUPLE_MAX + 1];
  parse_nested(tuple, t);
  const nlattr* proto[CTA_PROTO_MAX + 1];
  parse_nested(t[CTA_TUPLE_PROTO], proto);
  if (!proto[CTA_PROTO_NUM]) return "?";
  switch (mnl_attr_get_u8(proto[CTA_PROTO_NUM])) {
    case IPPROTO_TCP:
      return "tcp";
    case IPPROTO_UDP:
      return "udp";
    case IPPROTO_ICMP:
      return "icmp";
    case IPPROTO_ICMPV6:
      return "icmpv6";
    default:
      return "proto " + std::to_string(mnl_attr_get_u8(proto[CTA_PROTO_NUM]));
  }
}

int conntrack_entry_cb(const nlmsghdr* nlh, void* data) {
  auto* out = static_cast<std::string*>(data);
  const auto* nfg = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
  const int family = nfg->nfgen_family;
  const nlattr* tb[CTA_MAX + 1] = {};
  const char* end = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  for (auto* a = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)));
       mnl_attr_ok(a, static_cast<int>(end - reinterpret_cast<const char*>(a)));
       a = mnl_attr_next(a)) {
    const unsigned type = mnl_attr_get_type(a);
    if (type <= CTA_MAX) tb[type] = a;
  }
  *out += protocol_name(tb[CTA_TUPLE_ORIG]) + " " + tuple_text(tb[CTA_TUPLE_ORIG], family) +
          ", reply " + tuple_text(tb[CTA_TUPLE_REPLY], family);
  if (tb[CTA_TIMEOUT]) {
    *out += ", timeout " + std::to_string(ntohl(mnl_attr_get_u32(tb[CTA_TIMEOUT]))) + " s";
  }
  if (tb[CTA_STATUS]) {
    const std::uint32_t status = ntohl(mnl_attr_get_u32(tb[CTA_STATUS]));
    if (status & IPS_ASSURED) *out += " [ASSURED]";
    if (!(status & IPS_SEEN_REPLY)) *out += " [UNREPLIED]";
    if (status & IPS_SRC_NAT) *out += " [SNAT]";
    if (status & IPS_DST_NAT) *out += " [DNAT]";
  }
  *out += "\n";
  return MNL_CB_OK;
}

}  // namespace

std::string describe_conntrack(const std::string& node) {
  std::string out;
  std::unique_ptr<mnl_socket, SocketCloser> sock(mnl_socket_open(NETLINK_NETFILTER));
  if (!sock || mnl_socket_bind(sock.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    return "(cannot open ctnetlink in '" + node + "': " + std::strerror(errno) + ")\n";
  }
  const unsigned port = mnl_socket_get_portid(sock.get());
  for (std::uint8_t family : {std::uint8_t{AF_INET}, std::uint8_t{AF_INET6}}) {
    std::vector<char> buf(32 * 1024);  // dump messages come in skbs of up to 32 KiB
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = family;
    auto* nfh = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
    nfh->nfgen_family = family;
    nfh->version = NFNETLINK_V0;
    if (mnl_socket_sendto(sock.get(), nlh, nlh->nlmsg_len) < 0) {
      return out + "(conntrack dump in '" + node + "': " + std::strerror(errno) + ")\n";
    }
    for (;;) {
      const ssize_t n = mnl_socket_recvfrom(sock.get(), buf.data(), buf.size());
      if (n < 0) return out + "(conntrack dump in '" + node + "': " + std::strerror(errno) + ")\n";
      const int rc = mnl_cb_run(buf.data(), static_cast<std::size_t>(n), family, port,
                                conntrack_entry_cb, &out);
      if (rc == MNL_CB_STOP) break;
      if (rc < 0) {
        return out + "(conntrack dump in '" + node + "': " + std::strerror(errno) + ")\n";
      }
    }
  }
  return out;
}

void flush_conntrack(const std::string& node) {
  std::unique_ptr<mnl_socket, SocketCloser> sock(mnl_socket_open(NETLINK_NETFILTER));
  if (!sock || mnl_socket_bind(sock.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    throw Error(ErrorKind::kKernel, node,
                "conntrack flush in '" + node + "': cannot open ctnetlink", errno);
  }
  unsigned port = mnl_socket_get_portid(sock.get());
  // An IPCTNL_MSG_CT_DELETE without a tuple deletes the whole table of that family.
  for (std::uint8_t family : {std::uint8_t{AF_INET}, std::uint8_t{AF_INET6}}) {
    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = family;
    auto* nfh = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
    nfh->nfgen_family = family;
    nfh->version = NFNETLINK_V0;
    nfh->res_id = 0;
    if (mnl_socket_sendto(sock.get(), nlh, nlh->nlmsg_len) < 0) {
      throw Error(ErrorKind::kKernel, node, "conntrack flush in '" + node + "': send", errno);
    }
    ssize_t n = mnl_socket_recvfrom(sock.get(), buf.data(), buf.size());
    if (n < 0 ||
        mnl_cb_run(buf.data(), static_cast<size_t>(n), family, port, nullptr, nullptr) < 0) {
      // ENOENT: the table was already empty.
      if (errno != ENOENT) {
        throw Error(ErrorKind::kKernel, node, "conntrack flush in '" + node + "'", errno);
      }
    }
  }
}

}  // namespace patchbay::internal
