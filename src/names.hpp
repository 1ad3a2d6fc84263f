// Validation of user-supplied names: node names become file names and environment keys,
// interface names must fit the kernel's IFNAMSIZ.
#pragma once

#include <string>
#include <string_view>

namespace patchbay::internal {

// Node (router/device) names: non-empty, at most 63 bytes, [A-Za-z0-9_.-], not "." or "..";
// router names must not start with "region_" (reserved). `kind` is "router" or "device".
// Throws Error(kInvalidArgument) with the culprit name.
void validate_node_name(std::string_view kind, const std::string& name);

// Interface names: non-empty, at most 15 bytes, no '/', ':' or whitespace, not "." or "..",
// and not one of the names the library uses itself ("lo"). Throws Error(kInvalidArgument)
// naming device and interface.
void validate_iface_name(const std::string& device, const std::string& iface);

// Keeps [A-Za-z0-9_-], everything else becomes '_' (for file and directory names).
std::string sanitize_for_path(std::string_view text);

}  // namespace patchbay::internal
