// Connection tracking over ctnetlink (libmnl), for the network namespace of the calling thread.
#pragma once

#include <string>

namespace patchbay::internal {

// Deletes every conntrack entry (IPv4 and IPv6) of the calling thread's network namespace, i.e.
// all NAT mappings and firewall state of one router. `node` names it in errors.
void flush_conntrack(const std::string& node);

// Every conntrack entry (IPv4 and IPv6) of the calling thread's network namespace, one per
// line, for failure artifacts:
//   udp 10.0.1.2:5000 -> 198.18.0.3:7000, reply 198.18.0.3:7000 -> 198.18.0.10:40001,
//   timeout 29 s [ASSURED]
// A dump that fails partway returns what it got and says why in a last line.
std::string describe_conntrack(const std::string& node);

}  // namespace patchbay::internal
