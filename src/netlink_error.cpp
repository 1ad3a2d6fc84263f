#include "netlink_error.hpp"

#include <netlink/attr.h>
#include <netlink/msg.h>

#include <cstring>

namespace patchbay::internal {

std::string extended_ack_message(const nlmsgerr* err) {
  // libnl hands us nlmsg_data(hdr); the header sits right before it.
  const auto* hdr =
      reinterpret_cast<const nlmsghdr*>(reinterpret_cast<const char*>(err) - NLMSG_HDRLEN);
  if ((hdr->nlmsg_flags & NLM_F_ACK_TLVS) == 0) return {};
  std::size_t payload = sizeof(nlmsgerr);
  if ((hdr->nlmsg_flags & NLM_F_CAPPED) == 0 && err->msg.nlmsg_len > NLMSG_HDRLEN) {
    payload += err->msg.nlmsg_len - NLMSG_HDRLEN;
  }
  std::size_t tlv_offset = NLMSG_ALIGN(NLMSG_HDRLEN + payload);
  if (tlv_offset >= hdr->nlmsg_len) return {};
  const auto* tlvs =
      reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(hdr) + tlv_offset);
  const nlattr* msg =
      nla_find(tlvs, static_cast<int>(hdr->nlmsg_len - tlv_offset), NLMSGERR_ATTR_MSG);
  if (msg == nullptr || nla_len(msg) <= 0) return {};
  const char* text = static_cast<const char*>(nla_data(msg));
  return std::string(text, strnlen(text, static_cast<std::size_t>(nla_len(msg))));
}

}  // namespace patchbay::internal
