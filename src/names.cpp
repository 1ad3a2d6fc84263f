#include "names.hpp"

#include "patchbay/error.hpp"

namespace patchbay::internal {
namespace {

constexpr std::size_t kMaxNodeName = 63;
// IFNAMSIZ is 16 including the terminating NUL.
constexpr std::size_t kMaxIfaceName = 15;

// Explicit ASCII ranges: names end up in paths and environment keys, so the accepted set
// must not depend on the process locale the way std::isalnum does.
bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

bool is_path_char(char c) { return is_name_char(c) && c != '.'; }

// The kernel's dev_valid_name() rejects these; NUL is added because it would silently
// truncate the name on its way into netlink.
bool is_forbidden_iface_char(char c) {
  return c == '/' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
         c == '\r' || c == '\0';
}

// Control bytes are escaped in messages: a NUL would cut what() short and a newline would
// break log lines. The culprit keeps the raw bytes so callers can compare it.
std::string quoted(const std::string& name) {
  std::string out = "'";
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  return out + "'";
}

[[noreturn]] void invalid(const std::string& culprit, const std::string& message) {
  throw Error(ErrorKind::kInvalidArgument, culprit, message);
}

}  // namespace

void validate_node_name(std::string_view kind, const std::string& name) {
  const std::string k(kind);
  if (name.empty()) invalid(name, k + " name must not be empty");
  if (name.size() > kMaxNodeName) {
    invalid(name, k + " name " + quoted(name) + " is longer than 63 bytes");
  }
  for (char c : name) {
    if (!is_name_char(c)) {
      invalid(name,
              k + " name " + quoted(name) + " may only contain letters, digits, '_', '.' and '-'");
    }
  }
  // Names become directory names; these two would escape or alias the lab directory.
  if (name == "." || name == "..") invalid(name, k + " name " + quoted(name) + " is reserved");
  if (kind == "router" && name.starts_with("region_")) {
    invalid(name, "router names starting with 'region_' are reserved");
  }
}

void validate_iface_name(const std::string& device, const std::string& iface) {
  const std::string culprit = device + "/" + iface;
  if (iface.empty()) {
    invalid(culprit, "interface name of device " + quoted(device) + " must not be empty");
  }
  if (iface.size() > kMaxIfaceName) {
    invalid(culprit, "interface name " + quoted(iface) + " of device " + quoted(device) +
                         " is longer than 15 bytes (the kernel's IFNAMSIZ limit)");
  }
  for (char c : iface) {
    if (is_forbidden_iface_char(c)) {
      invalid(culprit, "interface name " + quoted(iface) + " of device " + quoted(device) +
                           " must not contain '/', ':' or whitespace");
    }
  }
  // "." and ".." are refused by the kernel; "lo" already exists in every namespace.
  if (iface == "." || iface == ".." || iface == "lo") {
    invalid(culprit,
            "interface name " + quoted(iface) + " of device " + quoted(device) + " is reserved");
  }
}

std::string sanitize_for_path(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (!is_path_char(c)) c = '_';
  }
  return out;
}

}  // namespace patchbay::internal
