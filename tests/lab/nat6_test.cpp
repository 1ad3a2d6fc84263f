// IPv6 translation on routers: NPTv6 (stateless prefix translation from the lab's NPTv6 pool)
// and NAT66 masquerade, what the outside observes, inbound reachability, the return routes in
// every ancestor and their removal, and runtime changes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "patchbay/gtest.hpp"
#include "patchbay/nat_probe.hpp"
#include "traffic.hpp"

namespace {

using patchbay::Device;
using patchbay::Error;
using patchbay::ErrorKind;
using patchbay::IpSupport;
using patchbay::NatV6Mode;
using patchbay::Node;
using patchbay::Router;
using patchbay::RouterPreset;
using ::testing::HasSubstr;
using namespace patchbay_test;
using std::chrono::milliseconds;

constexpr std::uint16_t kUdpPort = 3478;
constexpr std::uint16_t kTcpPort = 3479;

class Nat6Test : public patchbay::testing::LabTest {
 protected:
  // The public side: a router on the IX without any translation, and a server behind it that
  // runs UDP and TCP reflectors (they answer over IPv6 too).
  void start_server() {
    dc_ = lab().add_router("dc").preset(RouterPreset::Public).build();
    server_ = lab().add_device("server").iface("eth0", *dc_).build();
    udp_.emplace(patchbay::UdpReflector::start(*server_, kUdpPort));
    tcp_.emplace(patchbay::TcpReflector::start(*server_, kTcpPort));
    ASSERT_TRUE(udp_->endpoint6());
    ASSERT_TRUE(tcp_->endpoint6());
  }

  // The source address the server sees for a UDP datagram from `client` ("" if none arrived).
  std::string observed_udp(const Node& client, std::uint16_t local_port = 0) {
    auto seen = patchbay::observe_udp(client, *udp_->endpoint6(), local_port);
    return seen ? seen->address().to_string() : std::string();
  }
  std::string observed_tcp(const Node& client, std::uint16_t local_port = 0) {
    auto seen = patchbay::observe_tcp(client, *tcp_->endpoint6(), local_port);
    return seen ? seen->address().to_string() : std::string();
  }

  // The router's entry of state.json.
  nlohmann::json router_state(const Router& r) {
    const nlohmann::json state = nlohmann::json::parse(lab().state_json());
    for (const auto& entry : state["routers"]) {
      if (entry["name"] == r.name()) return entry;
    }
    ADD_FAILURE() << "router '" << r.name() << "' is not in state.json";
    return {};
  }

  std::optional<Router> dc_;
  std::optional<Device> server_;
  std::optional<patchbay::UdpReflector> udp_;
  std::optional<patchbay::TcpReflector> tcp_;
};

// `ip -6 route show exact <prefix>` in `node`: one line per route ("" when there is none).
std::string routes_for(const Node& node, const std::string& prefix) {
  auto r = node.run_command({"ip", "-6", "route", "show", "exact", prefix});
  EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
  return r.stdout_text;
}

// `address` with its top 64 bits replaced by those of `prefix` (a /64).
std::string with_prefix(const patchbay::Ipv6Address& address, const std::string& prefix) {
  auto host = address.to_bytes();
  const auto net = boost::asio::ip::make_address_v6(prefix.substr(0, prefix.find('/'))).to_bytes();
  for (int i = 0; i < 8; ++i) host[i] = net[i];
  return patchbay::Ipv6Address(host).to_string();
}

// Runs `fn`, expecting Error(kInvalidArgument) whose message contains `text`.
template <class F>
void expect_invalid(F&& fn, const std::string& text) {
  try {
    fn();
    ADD_FAILURE() << "expected an error containing: " << text;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
    EXPECT_THAT(e.what(), HasSubstr(text));
  }
}

TEST_F(Nat6Test, Nptv6OnTheIxKeepsHostBitsAndPortsForUdpAndTcp) {
  start_server();
  Router home =
      lab().add_router("home").preset(RouterPreset::Home).nat_v6(NatV6Mode::Nptv6).build();
  Device laptop = lab().add_device("laptop").iface("eth0", home).build();
  ASSERT_EQ(laptop.ip6()->to_string(), "fd10:0:0:1::2");

  // The first NPTv6 router of a lab gets the first /64 of the pool; the laptop keeps ::2.
  EXPECT_EQ(router_state(home)["nptv6_prefix"], "2001:db8:ff00:1::/64");
  auto udp = patchbay::observe_udp(laptop, *udp_->endpoint6(), 41000);
  ASSERT_TRUE(udp);
  EXPECT_EQ(udp->address().to_string(), "2001:db8:ff00:1::2");
  EXPECT_EQ(udp->port(), 41000) << "a prefix translation leaves ports alone";
  auto tcp = patchbay::observe_tcp(laptop, *tcp_->endpoint6(), 41001);
  ASSERT_TRUE(tcp);
  EXPECT_EQ(tcp->address().to_string(), "2001:db8:ff00:1::2");
  EXPECT_EQ(tcp->port(), 41001);

  // 1:1: a second device keeps its own host bits.
  Device phone = lab().add_device("phone").iface("eth0", home).build();
  ASSERT_EQ(phone.ip6()->to_string(), "fd10:0:0:1::3");
  EXPECT_EQ(observed_udp(phone), "2001:db8:ff00:1::3");
}

TEST_F(Nat6Test, Nptv6BehindAnIspIsRoutedBackThroughEveryAncestor) {
  start_server();
  // The ISP's LAN is ULA, so home's uplink is fd10:0:0:1::2: upstream derived the outside
  // prefix fd10:0:0:2::/64 from it, which is exactly home's own LAN, and installed no route in
  // the ISP. Ours comes from the pool and is routed in the ISP and the lab root.
  Router isp = lab().add_router("isp").preset(RouterPreset::IspCgnat).build();
  Router home = lab()
                    .add_router("home")
                    .preset(RouterPreset::Home)
                    .upstream(isp)
                    .nat_v6(NatV6Mode::Nptv6)
                    .build();
  Device laptop = lab().add_device("laptop").iface("eth0", home).build();
  ASSERT_EQ(home.uplink_ip6()->to_string(), "fd10:0:0:1::2");
  ASSERT_EQ(home.lan_v6()->to_string(), "fd10:0:0:2::/64");

  EXPECT_EQ(observed_udp(laptop), "2001:db8:ff00:1::2");
  EXPECT_EQ(observed_tcp(laptop), "2001:db8:ff00:1::2");

  const std::string outside = "2001:db8:ff00:1::/64";
  EXPECT_THAT(routes_for(isp, outside), HasSubstr("via " + home.uplink_ip6()->to_string()));
  EXPECT_THAT(routes_for(lab().ix(), outside), HasSubstr("via " + isp.uplink_ip6()->to_string()));
  // The LAN itself is translated, so nobody upstream routes it.
  EXPECT_EQ(routes_for(isp, "fd10:0:0:2::/64"), "");
  EXPECT_EQ(routes_for(lab().ix(), "fd10:0:0:2::/64"), "");
}

TEST_F(Nat6Test, Nptv6TranslatedAddressIsReachableFromOutsideUnlessFirewalled) {
  start_server();
  // No firewall: NPTv6 is 1:1, so new inbound flows to the outside address reach the device.
  Router edge =
      lab().add_router("edge").preset(RouterPreset::Public).nat_v6(NatV6Mode::Nptv6).build();
  Device web = lab().add_device("web").iface("eth0", edge).build();
  const std::string outside = with_prefix(*web.ip6(), "2001:db8:ff00:1::/64");
  ASSERT_EQ(outside, "2001:db8:ff00:1::2");
  const auto target = boost::asio::ip::make_address(outside);

  auto peer = serve_one_tcp(web, 8080);
  tcp_ping(*server_, target, 8080);
  EXPECT_EQ(peer.get(), server_->ip6()->to_string())
      << "the outside source is not translated on the way in";

  auto reflector = patchbay::UdpReflector::start(web, 9000);
  auto seen = patchbay::observe_udp(*server_, {target, 9000});
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->address().to_string(), server_->ip6()->to_string());

  // The firewall sees the translated flows like any other inbound flow.
  edge.set_firewall(patchbay::Firewall::BlockInbound);
  EXPECT_FALSE(patchbay::observe_udp(*server_, {target, 9000}, 0, milliseconds(300), 2));
  EXPECT_EQ(observed_udp(web), outside) << "outbound still passes";
}

TEST_F(Nat6Test, MasqueradeOnTheIxShowsTheRouterUplinkAddress) {
  start_server();
  Router home =
      lab().add_router("home").preset(RouterPreset::Home).nat_v6(NatV6Mode::Masquerade).build();
  Device laptop = lab().add_device("laptop").iface("eth0", home).build();
  const std::string uplink = home.uplink_ip6()->to_string();
  ASSERT_EQ(uplink.rfind("2001:db8::", 0), 0u) << uplink;

  EXPECT_EQ(observed_udp(laptop), uplink);
  EXPECT_EQ(observed_tcp(laptop), uplink);
  EXPECT_TRUE(router_state(home)["nptv6_prefix"].is_null());
  // The LAN is hidden behind the uplink address: no route for it in the lab root.
  EXPECT_EQ(routes_for(lab().ix(), home.lan_v6()->to_string()), "");
}

TEST_F(Nat6Test, MasqueradeBehindAnIspShowsTheInnerRouterUplinkAddress) {
  start_server();
  Router isp = lab().add_router("isp").preset(RouterPreset::Public).build();
  Router home = lab()
                    .add_router("home")
                    .preset(RouterPreset::Home)
                    .upstream(isp)
                    .nat_v6(NatV6Mode::Masquerade)
                    .build();
  Device laptop = lab().add_device("laptop").iface("eth0", home).build();
  // Home's uplink is on the ISP's public LAN, which the ISP routes unchanged.
  ASSERT_EQ(home.uplink_ip6()->to_string(), "2001:db8:1:2::2");

  EXPECT_EQ(observed_udp(laptop), "2001:db8:1:2::2");
  EXPECT_EQ(observed_tcp(laptop), "2001:db8:1:2::2");
  EXPECT_EQ(routes_for(isp, home.lan_v6()->to_string()), "");
  EXPECT_EQ(routes_for(lab().ix(), home.lan_v6()->to_string()), "");
}

TEST_F(Nat6Test, NoTranslationBehindHomeShowsTheDeviceUla) {
  start_server();
  Router home = lab().add_router("home").preset(RouterPreset::Home).build();
  Device laptop = lab().add_device("laptop").iface("eth0", home).build();
  ASSERT_EQ(home.nat_v6(), NatV6Mode::None);

  EXPECT_EQ(observed_udp(laptop), "fd10:0:0:1::2");
  EXPECT_EQ(laptop.ip6()->to_string(), "fd10:0:0:1::2");
  EXPECT_THAT(routes_for(lab().ix(), "fd10:0:0:1::/64"),
              HasSubstr("via " + home.uplink_ip6()->to_string()));
}

TEST_F(Nat6Test, RuntimeModeChangesFlipTheObservedAddressAndTheRoutes) {
  start_server();
  Router home = lab().add_router("home").preset(RouterPreset::Home).build();
  Device laptop = lab().add_device("laptop").iface("eth0", home).build();
  const std::string ula = laptop.ip6()->to_string();
  const std::string lan = home.lan_v6()->to_string();
  const std::string outside = "2001:db8:ff00:1::/64";
  const std::string uplink = home.uplink_ip6()->to_string();
  patchbay::Ix root = lab().ix();

  EXPECT_EQ(observed_udp(laptop), ula);

  home.set_nat_v6(NatV6Mode::Nptv6);
  EXPECT_EQ(home.nat_v6(), NatV6Mode::Nptv6);
  EXPECT_EQ(router_state(home)["nptv6_prefix"], outside);
  EXPECT_EQ(observed_udp(laptop), "2001:db8:ff00:1::2");
  EXPECT_EQ(observed_tcp(laptop), "2001:db8:ff00:1::2");
  EXPECT_THAT(routes_for(root, outside), HasSubstr("via " + uplink));
  EXPECT_EQ(routes_for(root, lan), "");

  home.set_nat_v6(NatV6Mode::Masquerade);
  EXPECT_EQ(observed_udp(laptop), uplink);
  EXPECT_EQ(observed_tcp(laptop), uplink);
  EXPECT_EQ(routes_for(root, outside), "");
  EXPECT_EQ(routes_for(root, lan), "");

  home.set_nat_v6(NatV6Mode::None);
  EXPECT_EQ(observed_udp(laptop), ula);
  EXPECT_THAT(routes_for(root, lan), HasSubstr("via " + uplink));
  EXPECT_EQ(routes_for(root, outside), "");

  // The outside prefix stays the router's while it lives: switching back reuses it.
  home.set_nat_v6(NatV6Mode::Nptv6);
  EXPECT_EQ(router_state(home)["nptv6_prefix"], outside);
  EXPECT_EQ(observed_udp(laptop), "2001:db8:ff00:1::2");
}

TEST_F(Nat6Test, RemovingAnNptv6RouterRemovesItsRoutesAndFreesItsPrefix) {
  Router isp = lab().add_router("isp").preset(RouterPreset::Public).build();
  Router home = lab()
                    .add_router("home")
                    .preset(RouterPreset::Home)
                    .upstream(isp)
                    .nat_v6(NatV6Mode::Nptv6)
                    .build();
  const std::string outside = "2001:db8:ff00:1::/64";
  ASSERT_EQ(router_state(home)["nptv6_prefix"], outside);
  ASSERT_NE(routes_for(isp, outside), "");
  ASSERT_NE(routes_for(lab().ix(), outside), "");

  lab().remove_router(home);
  EXPECT_EQ(routes_for(isp, outside), "");
  EXPECT_EQ(routes_for(lab().ix(), outside), "");

  // The prefix went back to the pool: the next NPTv6 router gets it, with fresh routes.
  Router other = lab()
                     .add_router("other")
                     .preset(RouterPreset::Home)
                     .upstream(isp)
                     .nat_v6(NatV6Mode::Nptv6)
                     .build();
  EXPECT_EQ(router_state(other)["nptv6_prefix"], outside);
  EXPECT_THAT(routes_for(isp, outside), HasSubstr("via " + other.uplink_ip6()->to_string()));
}

TEST_F(Nat6Test, TranslationWithoutIpv6IsRefusedAndLeavesNothingBehind) {
  expect_invalid(
      [&] {
        (void)lab().add_router("r").ip_support(IpSupport::V4Only).nat_v6(NatV6Mode::Nptv6).build();
      },
      "router 'r': nat_v6 nptv6 needs IPv6 on the uplink and the LAN (ip_support is v4-only)");
  EXPECT_FALSE(lab().router("r"));

  Router v4isp = lab().add_router("v4isp").preset(RouterPreset::PublicV4).build();
  expect_invalid(
      [&] {
        (void)lab()
            .add_router("home")
            .preset(RouterPreset::Home)
            .upstream(v4isp)
            .nat_v6(NatV6Mode::Masquerade)
            .build();
      },
      "router 'home': nat_v6 masquerade needs IPv6 on the uplink and the LAN (upstream router "
      "'v4isp' has no IPv6)");

  // At runtime the router keeps its mode.
  expect_invalid([&] { v4isp.set_nat_v6(NatV6Mode::Nptv6); },
                 "router 'v4isp': nat_v6 nptv6 needs IPv6 on the uplink and the LAN");
  EXPECT_EQ(v4isp.nat_v6(), NatV6Mode::None);

  // None of the refusals took a prefix from the pool.
  Router ok = lab().add_router("ok").preset(RouterPreset::Home).nat_v6(NatV6Mode::Nptv6).build();
  EXPECT_EQ(router_state(ok)["nptv6_prefix"], "2001:db8:ff00:1::/64");
}

}  // namespace
