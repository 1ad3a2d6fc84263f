// Shared pieces of turning a kernel's netlink error into a useful message.
#pragma once

#include <linux/netlink.h>

#include <string>

namespace patchbay::internal {

// The kernel's extended-ack text (NLMSGERR_ATTR_MSG: which attribute it disliked and why) of an
// error as libnl hands it to an error callback, or "" when the kernel sent none.
std::string extended_ack_message(const nlmsgerr* err);

}  // namespace patchbay::internal
