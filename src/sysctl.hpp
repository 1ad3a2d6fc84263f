// Per-namespace sysctls through /proc/sys, for the network namespace of the calling thread.
#pragma once

#include <string>
#include <string_view>

namespace patchbay::internal {

// Writes `value` to /proc/sys/<key> (key like "net/ipv4/ip_forward"). Throws Error(kKernel)
// naming `node` and the key, with errno text.
void write_sysctl(std::string_view key, std::string_view value, const std::string& node);

std::string read_sysctl(std::string_view key, const std::string& node);

}  // namespace patchbay::internal
