#include "patchbay/firewall.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/system/error_code.hpp>

#include <ostream>
#include <sstream>

#include "patchbay/addresses.hpp"
#include "patchbay/error.hpp"

namespace patchbay {

FirewallConfig FirewallConfig::preset(Firewall firewall) {
  switch (firewall) {
    case Firewall::None:
      return {};
    case Firewall::BlockInbound:
      return builder().block_inbound().build();
    case Firewall::Corporate:
      return builder().block_inbound().allow_tcp({80, 443}).allow_udp({53}).build();
    case Firewall::CaptivePortal:
      // All TCP (the portal has let the guest in), but UDP only for DNS.
      return builder().block_inbound().allow_udp({53}).build();
    case Firewall::Custom:
      break;
  }
  throw Error(ErrorKind::kInvalidArgument, "",
              "FirewallConfig::preset: Firewall::custom has no rules of its own (build a "
              "FirewallConfig instead)");
}

FirewallConfig FirewallConfig::Builder::build() const {
  config_.validate();
  return config_;
}

std::string_view to_string(Protocol protocol) {
  switch (protocol) {
    case Protocol::Any:
      return "any";
    case Protocol::Tcp:
      return "tcp";
    case Protocol::Udp:
      return "udp";
    case Protocol::Icmp:
      return "icmp";
  }
  return "unknown";
}

std::string_view to_string(FlowDirection direction) {
  return direction == FlowDirection::Outbound ? "outbound" : "inbound";
}

namespace {
std::string policy_text(const PortPolicy& p) {
  switch (p.kind()) {
    case PortPolicy::Kind::AllowAll:
      return "allow_all";
    case PortPolicy::Kind::BlockAll:
      return "block_all";
    case PortPolicy::Kind::AllowList: {
      std::string out = "allow[";
      for (std::size_t i = 0; i < p.ports().size(); ++i) {
        out += (i ? "," : "") + std::to_string(p.ports()[i]);
      }
      return out + "]";
    }
  }
  return "unknown";
}

std::string range_text(const PortRange& r) {
  return r.first == r.last ? std::to_string(r.first)
                           : std::to_string(r.first) + "-" + std::to_string(r.last);
}

[[noreturn]] void invalid(const std::string& culprit, const std::string& message) {
  throw Error(ErrorKind::kInvalidArgument, culprit, "FirewallConfig: " + message);
}

void check_policy(const PortPolicy& policy, const char* field) {
  for (std::uint16_t port : policy.ports()) {
    if (port == 0) {
      invalid(field, std::string(field) + " = " + policy_text(policy) +
                         ": port 0 is not a destination port (1..65535)");
    }
  }
}

// Why `text` is not an address or prefix, or "" if it is one. Stricter than the parsers' own
// message so the user learns which half is wrong.
std::string remote_problem(const std::string& text) {
  const auto slash = text.find('/');
  const std::string addr_text = text.substr(0, slash);
  boost::system::error_code ec;
  const auto addr = boost::asio::ip::make_address(addr_text, ec);
  if (ec || addr_text.find('%') != std::string::npos) {
    return "'" + addr_text + "' is not an IPv4 or IPv6 address";
  }
  if (slash == std::string::npos) return "";
  const std::string len = text.substr(slash + 1);
  const unsigned max_len = addr.is_v6() ? 128 : 32;
  const bool digits =
      !len.empty() && len.size() <= 3 && len.find_first_not_of("0123456789") == std::string::npos;
  if (!digits || std::stoul(len) > max_len) {
    return "prefix length '" + len + "' is out of range for " + (addr.is_v6() ? "IPv6" : "IPv4") +
           " (0.." + std::to_string(max_len) + ")";
  }
  try {  // the last word is the parsers' (no leading zeros and the like)
    if (addr.is_v6()) {
      parse_ipv6_net(text);
    } else {
      parse_ipv4_net(text);
    }
  } catch (const Error&) {
    return "prefix length '" + len + "' is malformed";
  }
  return "";
}

}  // namespace

std::string to_string(const FirewallConfig::Entry& e) {
  std::string out = e.verdict == FirewallConfig::Verdict::Allow ? "allow(" : "deny(";
  out += std::string(to_string(e.rule.direction)) + " " + std::string(to_string(e.rule.protocol));
  for (const PortRange& r : e.rule.ports) out += " port " + range_text(r);
  for (const std::string& remote : e.rule.remotes) out += " remote " + remote;
  return out + ")";
}

std::string to_string(const FirewallConfig& c) {
  std::ostringstream out;
  out << "block_inbound=" << (c.block_inbound ? "yes" : "no")
      << " outbound_tcp=" << policy_text(c.outbound_tcp)
      << " outbound_udp=" << policy_text(c.outbound_udp);
  for (const FirewallConfig::Entry& e : c.rules) out << " " << to_string(e);
  return out.str();
}

void FirewallConfig::validate() const {
  check_policy(outbound_tcp, "outbound_tcp");
  check_policy(outbound_udp, "outbound_udp");
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const FirewallRule& rule = rules[i].rule;
    const std::string field = "rules[" + std::to_string(i) + "]";
    const std::string which = "rule " + std::to_string(i) + " " + to_string(rules[i]);
    if (!rule.ports.empty() && rule.protocol != Protocol::Tcp && rule.protocol != Protocol::Udp) {
      invalid(field + ".ports", which + ": destination ports need protocol tcp or udp, not " +
                                    std::string(to_string(rule.protocol)));
    }
    for (std::size_t p = 0; p < rule.ports.size(); ++p) {
      const PortRange& r = rule.ports[p];
      const std::string culprit = field + ".ports[" + std::to_string(p) + "]";
      if (r.first == 0 || r.last == 0) {
        invalid(culprit, which + ": " +
                             (r.first == r.last ? std::string("port 0 is not")
                                                : "port range " + range_text(r) +
                                                      " includes port 0, which is not") +
                             " a destination port (1..65535)");
      }
      if (r.first > r.last) {
        invalid(culprit, which + ": port range " + range_text(r) +
                             " is empty (first > last; write it as " + std::to_string(r.last) +
                             "-" + std::to_string(r.first) + ")");
      }
    }
    for (std::size_t n = 0; n < rule.remotes.size(); ++n) {
      const std::string problem = remote_problem(rule.remotes[n]);
      if (!problem.empty()) {
        invalid(field + ".remotes[" + std::to_string(n) + "]",
                which + ": remote '" + rule.remotes[n] + "' is not an address or prefix (like " +
                    "198.18.0.0/16 or 2001:db8::/32): " + problem);
      }
    }
  }
}

std::ostream& operator<<(std::ostream& os, const FirewallConfig& config) {
  return os << to_string(config);
}

}  // namespace patchbay
