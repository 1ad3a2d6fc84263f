// Router firewalls with real traffic: the presets, custom port policies, explicit rules, IPv6,
// run-time changes and ICMP. Every check that traffic is blocked is paired, in the same test,
// with a check that the very same traffic passes once the firewall allows it, so a broken setup
// cannot make a "blocked" check pass.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include "patchbay/gtest.hpp"
#include "patchbay/nat_probe.hpp"

namespace {

using patchbay::Device;
using patchbay::Firewall;
using patchbay::FirewallConfig;
using patchbay::FirewallRule;
using patchbay::Nat;
using patchbay::Node;
using patchbay::Protocol;
using patchbay::Router;
using patchbay::RouterPreset;
using ::testing::HasSubstr;
namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using std::chrono::milliseconds;

// How long a check waits for traffic that must not arrive. Traffic that passes takes well under
// a millisecond here; the positive checks wait longer (observe_*'s defaults: 3 x 500 ms).
constexpr milliseconds kBlocked{250};
constexpr milliseconds kArrives{3000};

bool udp_passes(const Node& client, const udp::endpoint& server) {
  return patchbay::observe_udp(client, server).has_value();
}
bool udp_blocked(const Node& client, const udp::endpoint& server) {
  return !patchbay::observe_udp(client, server, 0, kBlocked, 1).has_value();
}
bool tcp_passes(const Node& client, const tcp::endpoint& server) {
  return patchbay::observe_tcp(client, server).has_value();
}
bool tcp_blocked(const Node& client, const tcp::endpoint& server) {
  return !patchbay::observe_tcp(client, server, 0, kBlocked, 1).has_value();
}

// One echo request; `wait` bounds the wait for the reply.
bool pings(const Node& from, const asio::ip::address& to, milliseconds wait = kArrives) {
  const std::string seconds = std::to_string(static_cast<double>(wait.count()) / 1000.0);
  return from.run_command({"ping", "-n", "-c", "1", "-W", seconds, to.to_string()}).success();
}

// A UDP socket bound in a node before anything is sent to it, so "nothing arrived" means the
// packet was dropped on the way, not that nobody listened yet.
class UdpInbox {
 public:
  static std::unique_ptr<UdpInbox> bind(const Node& node, bool v6, std::uint16_t port) {
    int fd = node.run([v6, port] {
      int s = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      if (s < 0) throw std::system_error(errno, std::generic_category(), "socket");
      int rc = -1;
      if (v6) {
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(port);
        a.sin6_addr = in6addr_any;
        rc = ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
      } else {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        rc = ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
      }
      if (rc != 0) {
        int err = errno;
        ::close(s);
        throw std::system_error(err, std::generic_category(), "bind");
      }
      return s;
    });
    return std::unique_ptr<UdpInbox>(new UdpInbox(fd));
  }
  ~UdpInbox() { ::close(fd_); }
  UdpInbox(const UdpInbox&) = delete;
  UdpInbox& operator=(const UdpInbox&) = delete;

  // True if a datagram arrives within `timeout`; consumes everything queued.
  bool receives_within(milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
    char buf[64];
    while (::recv(fd_, buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
    return true;
  }

 private:
  explicit UdpInbox(int fd) : fd_(fd) {}
  int fd_;
};

// Unsolicited datagrams from `from` (a fresh socket, so a new flow every time).
void send_udp(const Node& from, const asio::ip::address& to, std::uint16_t port) {
  from.run([&] {
    asio::io_context io;
    udp::socket s(io, to.is_v4() ? udp::v4() : udp::v6());
    for (int i = 0; i < 3; ++i) s.send_to(asio::buffer("HELLO", 5), udp::endpoint(to, port));
  });
}

class FirewallTest : public patchbay::testing::LabTest {
 protected:
  // "dc": a public dual-stack router with one server, the far end of the flows.
  Device dc_server(const std::string& name = "server") {
    if (!dc_) dc_ = lab().add_router("dc").preset(RouterPreset::Public).build();
    return lab().add_device(name).iface("eth0", *dc_).build();
  }
  Device lan_host(const Router& r, const std::string& name = "pc") {
    return lab().add_device(name).iface("eth0", r).build();
  }
  std::optional<Router> dc_;
};

// ---- presets (spec 9.6, with positive controls) ----

TEST_F(FirewallTest, CorporateFirewallBehindHomeNatAllowsWebAndDnsOnly) {
  Device server = dc_server();
  Router home =
      lab().add_router("home").preset(RouterPreset::Home).firewall(Firewall::Corporate).build();
  Device laptop = lan_host(home);
  auto udp9200 = patchbay::UdpReflector::start(server, 9200);
  auto dns = patchbay::UdpReflector::start(server, 53);
  auto https = patchbay::TcpReflector::start(server, 443);
  auto ssh = patchbay::TcpReflector::start(server, 22);

  EXPECT_TRUE(tcp_passes(laptop, https.endpoint()));
  EXPECT_TRUE(udp_passes(laptop, dns.endpoint()));
  EXPECT_TRUE(udp_blocked(laptop, udp9200.endpoint()));
  EXPECT_TRUE(tcp_blocked(laptop, ssh.endpoint()));

  home.set_firewall(Firewall::None);
  EXPECT_TRUE(udp_passes(laptop, udp9200.endpoint())) << "blocked by the firewall, not the lab";
  EXPECT_TRUE(tcp_passes(laptop, ssh.endpoint()));
}

TEST_F(FirewallTest, CaptivePortalAllowsAnyTcpButOnlyDnsOverUdp) {
  Device server = dc_server();
  Router hotel = lab()
                     .add_router("hotel")
                     .preset(RouterPreset::Home)
                     .firewall(Firewall::CaptivePortal)
                     .build();
  Device guest = lan_host(hotel);
  auto udp9201 = patchbay::UdpReflector::start(server, 9201);
  auto dns = patchbay::UdpReflector::start(server, 53);
  auto web = patchbay::TcpReflector::start(server, 8080);

  EXPECT_TRUE(tcp_passes(guest, web.endpoint()));
  EXPECT_TRUE(udp_passes(guest, dns.endpoint()));
  EXPECT_TRUE(udp_blocked(guest, udp9201.endpoint()));

  hotel.set_firewall(Firewall::None);
  EXPECT_TRUE(udp_passes(guest, udp9201.endpoint()));
}

TEST_F(FirewallTest, CorporateRouterPresetBlocksUdpButNotHttps) {
  Device server = dc_server();
  Router corp = lab().add_router("corp").preset(RouterPreset::Corporate).build();
  Device desk = lan_host(corp);
  EXPECT_EQ(corp.firewall(), Firewall::Corporate);
  auto udp9223 = patchbay::UdpReflector::start(server, 9223);
  auto https = patchbay::TcpReflector::start(server, 443);

  EXPECT_TRUE(tcp_passes(desk, https.endpoint()));
  EXPECT_TRUE(udp_blocked(desk, udp9223.endpoint()));
  corp.set_firewall(Firewall::None);
  EXPECT_TRUE(udp_passes(desk, udp9223.endpoint()));
}

TEST_F(FirewallTest, HomeWithoutFirewallPassesEveryPortAndInstallsNoTable) {
  Device server = dc_server();
  Router home =
      lab().add_router("home").preset(RouterPreset::Home).firewall(Firewall::None).build();
  Device laptop = lan_host(home);
  auto udp9200 = patchbay::UdpReflector::start(server, 9200);
  auto ssh = patchbay::TcpReflector::start(server, 22);

  EXPECT_EQ(home.firewall(), Firewall::None);
  EXPECT_FALSE(home.firewall_config());
  EXPECT_THAT(home.describe_kernel_state(), ::testing::Not(HasSubstr("pb_fw")));
  EXPECT_TRUE(udp_passes(laptop, udp9200.endpoint()));
  EXPECT_TRUE(tcp_passes(laptop, ssh.endpoint()));
}

TEST_F(FirewallTest, BlockInboundDropsUnsolicitedUdpThatArrivesWithoutIt) {
  Device server = dc_server();
  Router edge = lab().add_router("edge").firewall(Firewall::BlockInbound).build();  // no NAT
  Device pc = lan_host(edge);
  auto reflector = patchbay::UdpReflector::start(server, 3478);
  EXPECT_TRUE(udp_passes(pc, reflector.endpoint())) << "outbound and its replies pass";

  auto inbox = UdpInbox::bind(pc, false, 7000);  // listening before anything is sent
  send_udp(server, asio::ip::address(*pc.ip()), 7000);
  EXPECT_FALSE(inbox->receives_within(kBlocked));

  edge.set_firewall(Firewall::None);
  send_udp(server, asio::ip::address(*pc.ip()), 7000);
  EXPECT_TRUE(inbox->receives_within(kArrives)) << "the same packet arrives without the firewall";
}

// ---- custom port policies ----

TEST_F(FirewallTest, CustomAllowUdp5000AndBlockTcpBehindHomeNat) {
  Device server = dc_server();
  Router home = lab()
                    .add_router("home")
                    .preset(RouterPreset::Home)
                    .firewall(FirewallConfig::builder().allow_udp({5000}).block_tcp().build())
                    .build();
  Device laptop = lan_host(home);
  EXPECT_EQ(home.firewall(), Firewall::Custom);
  auto udp5000 = patchbay::UdpReflector::start(server, 5000);
  auto udp9203 = patchbay::UdpReflector::start(server, 9203);
  auto https = patchbay::TcpReflector::start(server, 443);

  EXPECT_TRUE(udp_passes(laptop, udp5000.endpoint()));
  EXPECT_TRUE(udp_blocked(laptop, udp9203.endpoint()));
  EXPECT_TRUE(tcp_blocked(laptop, https.endpoint()));

  home.set_firewall(Firewall::None);
  EXPECT_TRUE(udp_passes(laptop, udp9203.endpoint()));
  EXPECT_TRUE(tcp_passes(laptop, https.endpoint()));
}

TEST_F(FirewallTest, CustomBlockInboundAllowDnsBlockTcpWithoutNat) {
  Device server = dc_server();
  Router edge =
      lab()
          .add_router("edge")
          .firewall(FirewallConfig::builder().block_inbound().allow_udp({53}).block_tcp().build())
          .build();
  Device pc = lan_host(edge);
  auto dns = patchbay::UdpReflector::start(server, 53);
  auto udp9999 = patchbay::UdpReflector::start(server, 9999);
  auto https = patchbay::TcpReflector::start(server, 443);
  auto inbox = UdpInbox::bind(pc, false, 7000);

  EXPECT_TRUE(udp_passes(pc, dns.endpoint()));
  EXPECT_TRUE(udp_blocked(pc, udp9999.endpoint()));
  EXPECT_TRUE(tcp_blocked(pc, https.endpoint()));
  send_udp(server, asio::ip::address(*pc.ip()), 7000);
  EXPECT_FALSE(inbox->receives_within(kBlocked));

  edge.set_firewall(Firewall::None);
  EXPECT_TRUE(udp_passes(pc, udp9999.endpoint()));
  EXPECT_TRUE(tcp_passes(pc, https.endpoint()));
  send_udp(server, asio::ip::address(*pc.ip()), 7000);
  EXPECT_TRUE(inbox->receives_within(kArrives));
}

// Do-not-repeat #11: upstream applied the "outbound" port policies to inbound flows as well.
TEST_F(FirewallTest, OutboundPortPoliciesNeverFilterNewInboundFlows) {
  Device client = dc_server("client");
  Router edge = lab()
                    .add_router("edge")
                    .firewall(FirewallConfig::builder().allow_tcp({443}).allow_udp({53}).build())
                    .build();
  Device web = lan_host(edge, "web");
  ASSERT_FALSE(edge.firewall_config()->block_inbound);
  auto tcp8080 = patchbay::TcpReflector::start(web, 8080);
  auto udp9000 = patchbay::UdpReflector::start(web, 9000);

  // From outside, to ports that the outbound lists do not contain: both reach the LAN server.
  EXPECT_TRUE(tcp_passes(client, tcp8080.endpoint()));
  EXPECT_TRUE(udp_passes(client, udp9000.endpoint()));

  // The policies are in force for flows from the LAN.
  auto out8080 = patchbay::TcpReflector::start(client, 8080);
  auto out443 = patchbay::TcpReflector::start(client, 443);
  auto out9000 = patchbay::UdpReflector::start(client, 9000);
  EXPECT_TRUE(tcp_passes(web, out443.endpoint()));
  EXPECT_TRUE(tcp_blocked(web, out8080.endpoint()));
  EXPECT_TRUE(udp_blocked(web, out9000.endpoint()));
}

// ---- explicit rules ----

TEST_F(FirewallTest, DenyRuleBlocksExactlyItsTcpPortRange) {
  Device server = dc_server();
  Router edge =
      lab()
          .add_router("edge")
          .firewall(FirewallConfig::builder()
                        .deny(FirewallRule::outbound(Protocol::Tcp).to_ports({{8000, 8100}}))
                        .build())
          .build();
  Device pc = lan_host(edge);
  auto below = patchbay::TcpReflector::start(server, 7999);
  auto first = patchbay::TcpReflector::start(server, 8000);
  auto last = patchbay::TcpReflector::start(server, 8100);
  auto above = patchbay::TcpReflector::start(server, 8101);
  auto udp8000 = patchbay::UdpReflector::start(server, 8000);

  EXPECT_TRUE(tcp_passes(pc, below.endpoint()));
  EXPECT_TRUE(tcp_passes(pc, above.endpoint()));
  EXPECT_TRUE(udp_passes(pc, udp8000.endpoint())) << "the rule is for TCP only";
  EXPECT_TRUE(tcp_blocked(pc, first.endpoint()));
  EXPECT_TRUE(tcp_blocked(pc, last.endpoint()));

  edge.set_firewall(Firewall::None);
  EXPECT_TRUE(tcp_passes(pc, first.endpoint()));
  EXPECT_TRUE(tcp_passes(pc, last.endpoint()));
}

TEST_F(FirewallTest, DenyRuleByRemotePrefixSplitsServersPerFamily) {
  Router dc1 = lab().add_router("dc1").preset(RouterPreset::Public).build();
  Router dc2 = lab().add_router("dc2").preset(RouterPreset::Public).build();
  Device s1 = lab().add_device("s1").iface("eth0", dc1).build();
  Device s2 = lab().add_device("s2").iface("eth0", dc2).build();
  Router office =
      lab()
          .add_router("office")
          .preset(RouterPreset::Public)
          .firewall(FirewallConfig::builder()
                        .deny(FirewallRule::outbound().remote(dc1.lan_v4()->to_string()))
                        .build())
          .build();
  Device pc = lan_host(office);
  auto r1 = patchbay::UdpReflector::start(s1, 4000);
  auto r2 = patchbay::UdpReflector::start(s2, 4000);
  ASSERT_TRUE(r1.endpoint6() && r2.endpoint6());

  EXPECT_TRUE(udp_blocked(pc, r1.endpoint()));
  EXPECT_TRUE(udp_passes(pc, r2.endpoint()));
  EXPECT_TRUE(udp_passes(pc, *r1.endpoint6())) << "an IPv4 prefix does not match IPv6";

  office.set_firewall(FirewallConfig::builder()
                          .deny(FirewallRule::outbound().remote(dc1.lan_v6()->to_string()))
                          .build());
  EXPECT_TRUE(udp_blocked(pc, *r1.endpoint6()));
  EXPECT_TRUE(udp_passes(pc, *r2.endpoint6()));
  EXPECT_TRUE(udp_passes(pc, r1.endpoint()));
}

TEST_F(FirewallTest, RemotePrefixMatchesBitsNotWholeBytes) {
  Device s1 = dc_server("s1");
  Device s2 = dc_server("s2");
  Device s3 = dc_server("s3");
  // The /31 that starts at s1: with consecutive addresses (.2 .3 .4) it holds s1 and s2, and s2
  // differs from the prefix's own address in a bit the prefix length does not cover.
  patchbay::Ipv4Net pair{*s1.ip(), 31};
  ASSERT_EQ(s1.ip()->to_uint() % 2, 0u) << *s1.ip();
  ASSERT_TRUE(pair.contains(*s2.ip())) << pair.to_string() << " " << *s2.ip();
  ASSERT_FALSE(pair.contains(*s3.ip())) << pair.to_string() << " " << *s3.ip();
  Router edge =
      lab()
          .add_router("edge")
          .firewall(FirewallConfig::builder()
                        .deny(FirewallRule::outbound(Protocol::Udp).remote(pair.to_string()))
                        .build())
          .build();
  Device pc = lan_host(edge);
  auto r1 = patchbay::UdpReflector::start(s1, 4000);
  auto r2 = patchbay::UdpReflector::start(s2, 4000);
  auto r3 = patchbay::UdpReflector::start(s3, 4000);

  EXPECT_TRUE(udp_passes(pc, r3.endpoint()));
  EXPECT_TRUE(udp_blocked(pc, r1.endpoint()));
  EXPECT_TRUE(udp_blocked(pc, r2.endpoint()));
  edge.set_firewall(Firewall::None);
  EXPECT_TRUE(udp_passes(pc, r2.endpoint()));
}

TEST_F(FirewallTest, InboundAllowRuleOpensOneTcpPortThroughBlockInbound) {
  Device client = dc_server("client");
  Router edge = lab()
                    .add_router("edge")
                    .firewall(FirewallConfig::builder()
                                  .block_inbound()
                                  .allow(FirewallRule::inbound(Protocol::Tcp).to_ports({8443}))
                                  .build())
                    .build();
  Device web = lan_host(edge, "web");
  auto open = patchbay::TcpReflector::start(web, 8443);
  auto closed = patchbay::TcpReflector::start(web, 8444);
  auto udp8443 = patchbay::UdpReflector::start(web, 8443);

  EXPECT_TRUE(tcp_passes(client, open.endpoint()));
  EXPECT_TRUE(tcp_blocked(client, closed.endpoint()));
  EXPECT_TRUE(udp_blocked(client, udp8443.endpoint())) << "the rule is for TCP only";

  edge.set_firewall(Firewall::None);
  EXPECT_TRUE(tcp_passes(client, closed.endpoint()));
  EXPECT_TRUE(udp_passes(client, udp8443.endpoint()));
}

TEST_F(FirewallTest, FirstMatchingRuleDecidesAndRulesComeBeforePolicies) {
  Device server = dc_server();
  auto rule_first = FirewallConfig::builder()
                        .allow(FirewallRule::outbound(Protocol::Udp).to_ports({5000}))
                        .deny(FirewallRule::outbound(Protocol::Udp))
                        .build();
  Router edge = lab().add_router("edge").firewall(rule_first).build();
  Device pc = lan_host(edge);
  auto udp5000 = patchbay::UdpReflector::start(server, 5000);
  auto udp5001 = patchbay::UdpReflector::start(server, 5001);

  EXPECT_TRUE(udp_passes(pc, udp5000.endpoint()));
  EXPECT_TRUE(udp_blocked(pc, udp5001.endpoint()));

  // Swapped, the deny matches first and 5000 is blocked too.
  edge.set_firewall(FirewallConfig::builder()
                        .deny(FirewallRule::outbound(Protocol::Udp))
                        .allow(FirewallRule::outbound(Protocol::Udp).to_ports({5000}))
                        .build());
  EXPECT_TRUE(udp_blocked(pc, udp5000.endpoint()));

  // An allow rule makes an exception to a port policy; a deny rule overrides an allow list.
  auto ssh = patchbay::TcpReflector::start(server, 22);
  auto telnet = patchbay::TcpReflector::start(server, 23);
  edge.set_firewall(FirewallConfig::builder()
                        .block_tcp()
                        .allow(FirewallRule::outbound(Protocol::Tcp).to_ports({22}))
                        .allow_udp({5000, 5001})
                        .deny(FirewallRule::outbound(Protocol::Udp).to_ports({5001}))
                        .build());
  EXPECT_TRUE(tcp_passes(pc, ssh.endpoint()));
  EXPECT_TRUE(tcp_blocked(pc, telnet.endpoint()));
  EXPECT_TRUE(udp_passes(pc, udp5000.endpoint()));
  EXPECT_TRUE(udp_blocked(pc, udp5001.endpoint()));
}

// ---- IPv6 ----

TEST_F(FirewallTest, BlockInboundProtectsPublicIpv6LanHosts) {
  Device server = dc_server();
  Router edge = lab()
                    .add_router("edge")
                    .preset(RouterPreset::Public)
                    .firewall(Firewall::BlockInbound)
                    .build();
  Device pc = lan_host(edge);
  ASSERT_TRUE(pc.ip6());
  auto reflector = patchbay::UdpReflector::start(server, 3478);
  auto https = patchbay::TcpReflector::start(server, 443);
  EXPECT_TRUE(udp_passes(pc, *reflector.endpoint6())) << "outbound IPv6 and its replies pass";
  EXPECT_TRUE(tcp_passes(pc, *https.endpoint6()));

  auto inbox = UdpInbox::bind(pc, true, 7000);
  auto web = patchbay::TcpReflector::start(pc, 8080);
  send_udp(server, asio::ip::address(*pc.ip6()), 7000);
  EXPECT_FALSE(inbox->receives_within(kBlocked));
  EXPECT_TRUE(tcp_blocked(server, *web.endpoint6()));

  edge.set_firewall(Firewall::None);
  send_udp(server, asio::ip::address(*pc.ip6()), 7000);
  EXPECT_TRUE(inbox->receives_within(kArrives));
  EXPECT_TRUE(tcp_passes(server, *web.endpoint6()));
}

TEST_F(FirewallTest, HomeNatFiltersOnlyIpv4SoTheFirewallGuardsIpv6) {
  Device server = dc_server();
  Router home =
      lab().add_router("home").preset(RouterPreset::Home).firewall(Firewall::None).build();
  Device laptop = lan_host(home);
  ASSERT_TRUE(laptop.ip6());
  auto inbox = UdpInbox::bind(laptop, true, 7000);

  send_udp(server, asio::ip::address(*laptop.ip6()), 7000);
  EXPECT_TRUE(inbox->receives_within(kArrives)) << "the Home NAT does not filter IPv6";

  home.set_firewall(Firewall::BlockInbound);
  send_udp(server, asio::ip::address(*laptop.ip6()), 7000);
  EXPECT_FALSE(inbox->receives_within(kBlocked));
}

// ---- run-time changes ----

TEST_F(FirewallTest, SetFirewallChangesNewFlowsAndIsReportedBack) {
  Device server = dc_server();
  Router home = lab().add_router("home").preset(RouterPreset::Home).build();
  Device laptop = lan_host(home);
  auto udp9200 = patchbay::UdpReflector::start(server, 9200);
  auto udp9201 = patchbay::UdpReflector::start(server, 9201);
  auto https = patchbay::TcpReflector::start(server, 443);

  EXPECT_TRUE(udp_passes(laptop, udp9200.endpoint()));

  home.set_firewall(Firewall::Corporate);
  EXPECT_EQ(home.firewall(), Firewall::Corporate);
  EXPECT_EQ(home.firewall_config(), FirewallConfig::preset(Firewall::Corporate));
  EXPECT_TRUE(udp_blocked(laptop, udp9200.endpoint()));
  EXPECT_TRUE(tcp_passes(laptop, https.endpoint()));

  home.set_firewall(Firewall::None);
  EXPECT_EQ(home.firewall(), Firewall::None);
  EXPECT_FALSE(home.firewall_config());
  EXPECT_TRUE(udp_passes(laptop, udp9200.endpoint()));

  FirewallConfig custom = FirewallConfig::builder().allow_udp({9200}).block_tcp().build();
  home.set_firewall(custom);
  EXPECT_EQ(home.firewall(), Firewall::Custom);
  EXPECT_EQ(home.firewall_config(), custom);
  EXPECT_TRUE(udp_passes(laptop, udp9200.endpoint()));
  EXPECT_TRUE(udp_blocked(laptop, udp9201.endpoint()));
  EXPECT_TRUE(tcp_blocked(laptop, https.endpoint()));
}

TEST_F(FirewallTest, OpenFlowsSurviveAFirewallChangeUntilStateIsFlushed) {
  Device server = dc_server();
  Router home = lab().add_router("home").preset(RouterPreset::Home).build();
  Device laptop = lan_host(home);
  auto udp9200 = patchbay::UdpReflector::start(server, 9200);

  ASSERT_TRUE(patchbay::observe_udp(laptop, udp9200.endpoint(), 40000));
  home.set_firewall(Firewall::Corporate);
  EXPECT_TRUE(patchbay::observe_udp(laptop, udp9200.endpoint(), 40000)) << "an open flow";
  EXPECT_FALSE(patchbay::observe_udp(laptop, udp9200.endpoint(), 40001, kBlocked, 1))
      << "a new one";
  home.flush_nat_state();
  EXPECT_FALSE(patchbay::observe_udp(laptop, udp9200.endpoint(), 40000, kBlocked, 1));
}

// ---- ICMP ----

TEST_F(FirewallTest, PortPoliciesNeverFilterIcmpButExplicitRulesDo) {
  Device server = dc_server();
  Router home =
      lab().add_router("home").preset(RouterPreset::Home).firewall(Firewall::Corporate).build();
  Device laptop = lan_host(home);
  ASSERT_TRUE(laptop.ip6());
  const asio::ip::address v4(*server.ip()), v6(*server.ip6());
  auto dns = patchbay::UdpReflector::start(server, 53);

  EXPECT_TRUE(pings(laptop, v4)) << "Corporate allows no ICMP port, and needs none";
  EXPECT_TRUE(pings(laptop, v6));

  FirewallConfig no_ping = FirewallConfig::preset(Firewall::Corporate);
  no_ping.rules.push_back({FirewallConfig::Verdict::Deny, FirewallRule::outbound(Protocol::Icmp)});
  home.set_firewall(no_ping);
  EXPECT_FALSE(pings(laptop, v4, kBlocked));
  EXPECT_FALSE(pings(laptop, v6, kBlocked));
  EXPECT_TRUE(udp_passes(laptop, dns.endpoint())) << "only ICMP is denied";
}

TEST_F(FirewallTest, BlockInboundDropsInboundPingsUnlessARuleAllowsThem) {
  Device server = dc_server();
  Router edge = lab()
                    .add_router("edge")
                    .preset(RouterPreset::Public)
                    .firewall(Firewall::BlockInbound)
                    .build();
  Device pc = lan_host(edge);
  const asio::ip::address v4(*pc.ip()), v6(*pc.ip6());

  EXPECT_TRUE(pings(pc, asio::ip::address(*server.ip()))) << "outbound pings pass";
  EXPECT_FALSE(pings(server, v4, kBlocked));
  EXPECT_FALSE(pings(server, v6, kBlocked));

  edge.set_firewall(FirewallConfig::builder()
                        .block_inbound()
                        .allow(FirewallRule::inbound(Protocol::Icmp))
                        .build());
  EXPECT_TRUE(pings(server, v4));
  EXPECT_TRUE(pings(server, v6));
}

// ---- invalid configs that bypassed the builder ----

FirewallConfig bad_remote() {
  FirewallConfig c;
  c.block_inbound = true;
  c.rules.push_back(
      {FirewallConfig::Verdict::Deny,
       FirewallRule{patchbay::FlowDirection::Outbound, Protocol::Udp, {}, {"198.18.0.0/40"}}});
  return c;
}

TEST_F(FirewallTest, RouterWithInvalidHandMadeConfigIsNotBuilt) {
  try {
    (void)lab().add_router("edge").firewall(bad_remote()).build();
    FAIL() << "built with an invalid firewall";
  } catch (const patchbay::Error& e) {
    EXPECT_EQ(e.kind(), patchbay::ErrorKind::kInvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("rule 0 deny(outbound udp remote 198.18.0.0/40): remote "
                                    "'198.18.0.0/40' is not an address or prefix"));
    EXPECT_THAT(e.what(), HasSubstr("prefix length '40' is out of range for IPv4 (0..32)"));
  }
  EXPECT_FALSE(lab().router("edge"));
  // Nothing of it remains: the name is free again.
  Router edge = lab().add_router("edge").firewall(Firewall::BlockInbound).build();
  EXPECT_EQ(edge.firewall(), Firewall::BlockInbound);
}

TEST_F(FirewallTest, SetFirewallWithInvalidHandMadeConfigKeepsTheOldOne) {
  Device server = dc_server();
  Router home =
      lab().add_router("home").preset(RouterPreset::Home).firewall(Firewall::Corporate).build();
  Device laptop = lan_host(home);
  auto udp9200 = patchbay::UdpReflector::start(server, 9200);
  auto dns = patchbay::UdpReflector::start(server, 53);

  EXPECT_THROW(home.set_firewall(bad_remote()), patchbay::Error);
  EXPECT_EQ(home.firewall(), Firewall::Corporate);
  EXPECT_EQ(home.firewall_config(), FirewallConfig::preset(Firewall::Corporate));
  EXPECT_TRUE(udp_passes(laptop, dns.endpoint()));
  EXPECT_TRUE(udp_blocked(laptop, udp9200.endpoint())) << "Corporate is still in force";
}

// ---- the router examples of docs/firewalls.md, compiled and run ----

TEST_F(FirewallTest, DocsExamplesBehaveAsDescribed) {
  patchbay::Lab& lab = this->lab();
  Device client = dc_server("client");

  // docs/firewalls.md, top
  patchbay::Router office = lab.add_router("office")
                                .nat(patchbay::Nat::Home)
                                .firewall(patchbay::Firewall::Corporate)
                                .build();
  EXPECT_EQ(office.nat(), Nat::Home);
  EXPECT_EQ(office.firewall(), Firewall::Corporate);

  // docs/firewalls.md "Giving a public LAN server one open port"
  patchbay::Router edge =
      lab.add_router("edge")
          .preset(patchbay::RouterPreset::Public)
          .firewall(
              patchbay::FirewallConfig::builder()
                  .block_inbound()
                  .allow(patchbay::FirewallRule::inbound(patchbay::Protocol::Tcp).to_ports({443}))
                  .build())
          .build();
  Device web = lan_host(edge, "web");
  auto https = patchbay::TcpReflector::start(web, 443);
  auto other = patchbay::TcpReflector::start(web, 8443);
  EXPECT_TRUE(tcp_passes(client, https.endpoint()));
  EXPECT_TRUE(tcp_passes(client, *https.endpoint6()));
  EXPECT_TRUE(tcp_blocked(client, other.endpoint()));

  // docs/firewalls.md "Changing the firewall at run time"
  patchbay::FirewallConfig only_5000 =
      patchbay::FirewallConfig::builder()
          .allow(patchbay::FirewallRule::outbound(patchbay::Protocol::Udp).to_ports({5000}))
          .deny(patchbay::FirewallRule::outbound(patchbay::Protocol::Udp))
          .build();
  edge.set_firewall(patchbay::Firewall::Corporate);  // a preset
  EXPECT_EQ(edge.firewall(), Firewall::Corporate);
  edge.set_firewall(only_5000);  // a FirewallConfig
  EXPECT_EQ(edge.firewall_config(), only_5000);
  auto udp5000 = patchbay::UdpReflector::start(client, 5000);
  auto udp5001 = patchbay::UdpReflector::start(client, 5001);
  EXPECT_TRUE(udp_passes(web, udp5000.endpoint()));
  EXPECT_TRUE(udp_blocked(web, udp5001.endpoint()));
  EXPECT_TRUE(tcp_passes(client, other.endpoint())) << "no block_inbound in only_5000";
  edge.set_firewall(patchbay::Firewall::None);  // no firewall table at all
  EXPECT_THAT(edge.describe_kernel_state(), ::testing::Not(HasSubstr("pb_fw")));
  EXPECT_TRUE(udp_passes(web, udp5001.endpoint()));
}

}  // namespace
