#include "conntrack.hpp"

#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "patchbay/error.hpp"

namespace patchbay::internal {
namespace {

struct SocketCloser {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};

}  // namespace

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
