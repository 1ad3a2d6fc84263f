// Connection tracking over ctnetlink (libmnl), for the network namespace of the calling thread.
#pragma once

#include <string>

namespace patchbay::internal {

// Deletes every conntrack entry (IPv4 and IPv6) of the calling thread's network namespace, i.e.
// all NAT mappings and firewall state of one router. `node` names it in errors.
void flush_conntrack(const std::string& node);

}  // namespace patchbay::internal
