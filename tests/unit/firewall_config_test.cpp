// FirewallConfig as data: the presets, the builder, validation and its messages, to_string, and
// what the planner makes of explicit rules (without a kernel).
#include "patchbay/firewall.hpp"

#include <netinet/in.h>  // before the linux/ headers, which would define in_addr again

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/netfilter.h>

#include <sstream>
#include <string>

#include "patchbay/error.hpp"
#include "router_rules.hpp"

namespace patchbay {
namespace {

using ::testing::HasSubstr;
using Kind = PortPolicy::Kind;

// Runs `fn`, which must throw Error(kInvalidArgument); returns it for the message checks.
template <class F>
Error invalid_argument(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
    return e;
  }
  ADD_FAILURE() << "no Error thrown";
  return Error(ErrorKind::kKernel, "", "not thrown");
}

FirewallConfig with_rule(FirewallConfig::Verdict verdict, FirewallRule rule) {
  FirewallConfig c;
  c.rules.push_back({verdict, std::move(rule)});
  return c;
}

// ---- presets ----

TEST(FirewallPresets, NoneIsTheEmptyConfigThatLetsEverythingThrough) {
  FirewallConfig none = FirewallConfig::preset(Firewall::None);
  EXPECT_EQ(none, FirewallConfig{});
  EXPECT_FALSE(none.block_inbound);
  EXPECT_EQ(none.outbound_tcp.kind(), Kind::AllowAll);
  EXPECT_EQ(none.outbound_udp.kind(), Kind::AllowAll);
  EXPECT_TRUE(none.rules.empty());
}

TEST(FirewallPresets, BlockInboundOnlyBlocksInbound) {
  FirewallConfig c = FirewallConfig::preset(Firewall::BlockInbound);
  EXPECT_TRUE(c.block_inbound);
  EXPECT_EQ(c.outbound_tcp, PortPolicy::allow_all());
  EXPECT_EQ(c.outbound_udp, PortPolicy::allow_all());
  EXPECT_TRUE(c.rules.empty());
}

TEST(FirewallPresets, CorporateAllowsWebAndDnsOnly) {
  FirewallConfig c = FirewallConfig::preset(Firewall::Corporate);
  EXPECT_TRUE(c.block_inbound);
  EXPECT_EQ(c.outbound_tcp.kind(), Kind::AllowList);
  EXPECT_EQ(c.outbound_tcp.ports(), (std::vector<std::uint16_t>{80, 443}));
  EXPECT_EQ(c.outbound_udp.kind(), Kind::AllowList);
  EXPECT_EQ(c.outbound_udp.ports(), (std::vector<std::uint16_t>{53}));
  EXPECT_TRUE(c.rules.empty());
}

TEST(FirewallPresets, CaptivePortalAllowsAllTcpButOnlyDnsOverUdp) {
  FirewallConfig c = FirewallConfig::preset(Firewall::CaptivePortal);
  EXPECT_TRUE(c.block_inbound);
  EXPECT_EQ(c.outbound_tcp, PortPolicy::allow_all());
  EXPECT_EQ(c.outbound_udp, PortPolicy::allow({53}));
  EXPECT_TRUE(c.rules.empty());
}

TEST(FirewallPresets, CustomHasNoPresetConfig) {
  Error e = invalid_argument([] { (void)FirewallConfig::preset(Firewall::Custom); });
  EXPECT_THAT(e.what(), HasSubstr("Firewall::custom"));
}

TEST(FirewallPresets, EveryPresetPassesValidation) {
  for (Firewall f :
       {Firewall::None, Firewall::BlockInbound, Firewall::Corporate, Firewall::CaptivePortal}) {
    EXPECT_NO_THROW(FirewallConfig::preset(f).validate()) << to_string(f);
  }
}

// ---- builder ----

TEST(FirewallBuilder, DefaultsLetEverythingThrough) {
  EXPECT_EQ(FirewallConfig::builder().build(), FirewallConfig{});
}

TEST(FirewallBuilder, ShortcutsSetThePortPolicies) {
  FirewallConfig c = FirewallConfig::builder().block_tcp().allow_udp({5000}).build();
  EXPECT_FALSE(c.block_inbound);
  EXPECT_EQ(c.outbound_tcp, PortPolicy::block_all());
  EXPECT_EQ(c.outbound_udp, PortPolicy::allow({5000}));

  FirewallConfig d = FirewallConfig::builder()
                         .outbound_tcp(PortPolicy::allow({22}))
                         .outbound_udp(PortPolicy::block_all())
                         .build();
  EXPECT_EQ(d.outbound_tcp, PortPolicy::allow({22}));
  EXPECT_EQ(d.outbound_udp, PortPolicy::block_all());
  EXPECT_EQ(FirewallConfig::builder().block_udp().build().outbound_udp, PortPolicy::block_all());
}

TEST(FirewallBuilder, ThePresetsAreExpressibleWithTheBuilder) {
  EXPECT_EQ(FirewallConfig::builder().block_inbound().allow_tcp({80, 443}).allow_udp({53}).build(),
            FirewallConfig::preset(Firewall::Corporate));
  EXPECT_EQ(FirewallConfig::builder().block_inbound().allow_udp({53}).build(),
            FirewallConfig::preset(Firewall::CaptivePortal));
}

TEST(FirewallBuilder, RulesKeepTheirOrderAndVerdicts) {
  FirewallConfig c = FirewallConfig::builder()
                         .allow(FirewallRule::outbound(Protocol::Udp).to_ports({5000}))
                         .deny(FirewallRule::inbound().remote("198.18.5.0/24"))
                         .build();
  ASSERT_EQ(c.rules.size(), 2u);
  EXPECT_EQ(c.rules[0].verdict, FirewallConfig::Verdict::Allow);
  EXPECT_EQ(c.rules[0].rule.direction, FlowDirection::Outbound);
  EXPECT_EQ(c.rules[0].rule.protocol, Protocol::Udp);
  EXPECT_EQ(c.rules[0].rule.ports, (std::vector<PortRange>{PortRange(5000)}));
  EXPECT_EQ(c.rules[1].verdict, FirewallConfig::Verdict::Deny);
  EXPECT_EQ(c.rules[1].rule.direction, FlowDirection::Inbound);
  EXPECT_EQ(c.rules[1].rule.protocol, Protocol::Any);
  EXPECT_EQ(c.rules[1].rule.remotes, (std::vector<std::string>{"198.18.5.0/24"}));
}

TEST(FirewallBuilder, BracesMakeSinglePortsOrOneRange) {
  EXPECT_EQ(FirewallRule::outbound(Protocol::Tcp).to_ports({8000, 8100}).ports,
            (std::vector<PortRange>{PortRange(8000, 8000), PortRange(8100, 8100)}));
  EXPECT_EQ(FirewallRule::outbound(Protocol::Tcp).to_ports({{8000, 8100}}).ports,
            (std::vector<PortRange>{PortRange(8000, 8100)}));
}

TEST(FirewallBuilder, RemotesAccumulate) {
  FirewallRule r = FirewallRule::outbound().remote("198.18.1.0/24").remote("2001:db8:1::/48");
  EXPECT_EQ(r.remotes, (std::vector<std::string>{"198.18.1.0/24", "2001:db8:1::/48"}));
}

// ---- validation ----

TEST(FirewallValidation, AcceptsAddressesPrefixesAndRangesOfBothFamilies) {
  EXPECT_NO_THROW(FirewallConfig::builder()
                      .deny(FirewallRule::outbound(Protocol::Tcp)
                                .to_ports({1, {1000, 2000}, 65535})
                                .remote("198.18.1.2")
                                .remote("198.18.0.0/15")
                                .remote("0.0.0.0/0")
                                .remote("2001:db8::1")
                                .remote("2001:db8::/32")
                                .remote("::/0"))
                      .allow(FirewallRule::inbound(Protocol::Icmp).remote("10.0.0.0/8"))
                      .build());
}

TEST(FirewallValidation, EmptyPortRangeNamesRuleAndRange) {
  Error e = invalid_argument([] {
    (void)FirewallConfig::builder()
        .allow(FirewallRule::outbound(Protocol::Udp))
        .deny(FirewallRule::outbound(Protocol::Tcp).to_ports({{9000, 8000}}))
        .build();
  });
  EXPECT_STREQ(e.what(),
               "FirewallConfig: rule 1 deny(outbound tcp port 9000-8000): port range 9000-8000 "
               "is empty (first > last; write it as 8000-9000)");
  EXPECT_EQ(e.culprit(), "rules[1].ports[0]");
}

TEST(FirewallValidation, PortZeroIsRejectedInRulesAndPolicies) {
  Error single = invalid_argument([] {
    (void)FirewallConfig::builder()
        .deny(FirewallRule::inbound(Protocol::Udp).to_ports({0}))
        .build();
  });
  EXPECT_STREQ(single.what(),
               "FirewallConfig: rule 0 deny(inbound udp port 0): port 0 is not a destination port "
               "(1..65535)");
  EXPECT_EQ(single.culprit(), "rules[0].ports[0]");

  Error range = invalid_argument([] {
    (void)FirewallConfig::builder()
        .deny(FirewallRule::inbound(Protocol::Udp).to_ports({53, {0, 100}}))
        .build();
  });
  EXPECT_THAT(range.what(),
              HasSubstr("rule 0 deny(inbound udp port 53 port 0-100): port range 0-100 includes "
                        "port 0, which is not a destination port (1..65535)"));
  EXPECT_EQ(range.culprit(), "rules[0].ports[1]");

  Error tcp = invalid_argument([] { (void)FirewallConfig::builder().allow_tcp({80, 0}).build(); });
  EXPECT_STREQ(tcp.what(),
               "FirewallConfig: outbound_tcp = allow[80,0]: port 0 is not a destination port "
               "(1..65535)");
  EXPECT_EQ(tcp.culprit(), "outbound_tcp");
  Error udp = invalid_argument([] { (void)FirewallConfig::builder().allow_udp({0}).build(); });
  EXPECT_EQ(udp.culprit(), "outbound_udp");
}

TEST(FirewallValidation, PortsNeedTcpOrUdp) {
  Error any = invalid_argument([] {
    (void)FirewallConfig::builder().deny(FirewallRule::outbound().to_ports({22})).build();
  });
  EXPECT_STREQ(any.what(),
               "FirewallConfig: rule 0 deny(outbound any port 22): destination ports need "
               "protocol tcp or udp, not any");
  EXPECT_EQ(any.culprit(), "rules[0].ports");

  Error icmp = invalid_argument([] {
    (void)FirewallConfig::builder()
        .allow(FirewallRule::inbound(Protocol::Icmp).to_ports({{1, 10}}))
        .build();
  });
  EXPECT_THAT(icmp.what(), HasSubstr("rule 0 allow(inbound icmp port 1-10): destination ports "
                                     "need protocol tcp or udp, not icmp"));
}

TEST(FirewallValidation, UnparsableRemoteNamesRuleAndValue) {
  Error e = invalid_argument([] {
    (void)FirewallConfig::builder()
        .deny(FirewallRule::outbound(Protocol::Tcp).remote("198.18.0.0/16").remote("example.com"))
        .build();
  });
  EXPECT_STREQ(e.what(),
               "FirewallConfig: rule 0 deny(outbound tcp remote 198.18.0.0/16 remote "
               "example.com): remote 'example.com' is not an address or prefix (like "
               "198.18.0.0/16 or 2001:db8::/32): 'example.com' is not an IPv4 or IPv6 address");
  EXPECT_EQ(e.culprit(), "rules[0].remotes[1]");

  for (const char* bad : {"", "198.18.0/16", "198.18.0.256", "/8", "fe80::1%eth0/64"}) {
    Error b = invalid_argument([&] {
      (void)FirewallConfig::builder().deny(FirewallRule::outbound().remote(bad)).build();
    });
    EXPECT_THAT(b.what(), HasSubstr(std::string("remote '") + bad + "' is not an address"));
  }
}

TEST(FirewallValidation, PrefixLengthOutOfRangeIsReportedPerFamily) {
  Error v4 = invalid_argument([] {
    (void)FirewallConfig::builder().deny(FirewallRule::inbound().remote("10.0.0.0/33")).build();
  });
  EXPECT_THAT(v4.what(), HasSubstr("rule 0 deny(inbound any remote 10.0.0.0/33): remote "
                                   "'10.0.0.0/33' is not an address or prefix"));
  EXPECT_THAT(v4.what(), HasSubstr("prefix length '33' is out of range for IPv4 (0..32)"));

  Error v6 = invalid_argument([] {
    (void)FirewallConfig::builder().deny(FirewallRule::inbound().remote("2001:db8::/129")).build();
  });
  EXPECT_THAT(v6.what(), HasSubstr("prefix length '129' is out of range for IPv6 (0..128)"));

  for (const char* bad : {"10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/x", "10.0.0.0/1000"}) {
    Error b = invalid_argument(
        [&] { (void)FirewallConfig::builder().deny(FirewallRule::inbound().remote(bad)).build(); });
    EXPECT_THAT(b.what(), HasSubstr("is out of range for IPv4")) << bad;
  }
  Error zeros = invalid_argument([] {
    (void)FirewallConfig::builder().deny(FirewallRule::inbound().remote("10.0.0.0/08")).build();
  });
  EXPECT_THAT(zeros.what(), HasSubstr("prefix length '08' is malformed"));
}

TEST(FirewallValidation, ConfigsMadeWithoutTheBuilderAreCheckedByValidate) {
  // Aggregate-built, never through build(): validate() finds the same faults.
  FirewallConfig c = with_rule(
      FirewallConfig::Verdict::Allow,
      FirewallRule{FlowDirection::Inbound, Protocol::Tcp, {PortRange(443)}, {"198.18.1.0/33"}});
  Error e = invalid_argument([&] { c.validate(); });
  EXPECT_THAT(e.what(), HasSubstr("rule 0 allow(inbound tcp port 443 remote 198.18.1.0/33)"));
  EXPECT_EQ(e.culprit(), "rules[0].remotes[0]");
}

// ---- to_string ----

TEST(FirewallToString, ShowsPoliciesThenRulesInOrder) {
  EXPECT_EQ(to_string(FirewallConfig{}),
            "block_inbound=no outbound_tcp=allow_all outbound_udp=allow_all");
  EXPECT_EQ(to_string(FirewallConfig::preset(Firewall::Corporate)),
            "block_inbound=yes outbound_tcp=allow[80,443] outbound_udp=allow[53]");
  FirewallConfig c = FirewallConfig::builder()
                         .block_tcp()
                         .outbound_udp(PortPolicy::allow({}))
                         .allow(FirewallRule::outbound(Protocol::Tcp).to_ports({22, {8000, 8100}}))
                         .deny(FirewallRule::inbound(Protocol::Icmp).remote("2001:db8::/32"))
                         .build();
  EXPECT_EQ(to_string(c),
            "block_inbound=no outbound_tcp=block_all outbound_udp=allow[] "
            "allow(outbound tcp port 22 port 8000-8100) deny(inbound icmp remote 2001:db8::/32)");
  std::ostringstream os;
  os << c;
  EXPECT_EQ(os.str(), to_string(c));
  EXPECT_EQ(to_string(c.rules[1]), "deny(inbound icmp remote 2001:db8::/32)");
}

TEST(FirewallToString, NamesProtocolsAndDirections) {
  EXPECT_EQ(to_string(Protocol::Any), "any");
  EXPECT_EQ(to_string(Protocol::Tcp), "tcp");
  EXPECT_EQ(to_string(Protocol::Udp), "udp");
  EXPECT_EQ(to_string(Protocol::Icmp), "icmp");
  EXPECT_EQ(to_string(FlowDirection::Outbound), "outbound");
  EXPECT_EQ(to_string(FlowDirection::Inbound), "inbound");
}

// ---- the planner (rules as data, before any kernel) ----

internal::RouterRules router_with(const FirewallConfig& fw) {
  internal::RouterRules r;
  r.wan_ifname = "ix";
  r.lan_ifname = "br-lan";
  r.firewall = fw;
  return r;
}

TEST(FirewallPlan, AConfigThatFiltersNothingInstallsNoTable) {
  EXPECT_FALSE(internal::plan_firewall(router_with(FirewallConfig{})).wanted);
  internal::NftTableSpec t =
      internal::plan_firewall(router_with(FirewallConfig::preset(Firewall::BlockInbound)));
  EXPECT_TRUE(t.wanted);
  EXPECT_EQ(t.family, NFPROTO_INET);
  ASSERT_EQ(t.chains.size(), 1u);
  EXPECT_EQ(t.chains[0].priority, 10);
  EXPECT_EQ(t.chains[0].rules.size(), 2u);  // established/related, then the uplink drop
}

TEST(FirewallPlan, RulesExpandPerFamilyRemoteAndPortRange) {
  auto rules_for = [](FirewallRule rule) {
    FirewallConfig c = with_rule(FirewallConfig::Verdict::Deny, std::move(rule));
    // established/related comes first; the rest are the expansion of the one explicit rule
    return internal::plan_firewall(router_with(c)).chains.at(0).rules.size() - 1;
  };
  EXPECT_EQ(rules_for(FirewallRule::outbound()), 1u);
  EXPECT_EQ(rules_for(FirewallRule::outbound(Protocol::Icmp)), 2u);  // ICMP and ICMPv6
  // A v4 remote cannot match ICMPv6: only the ICMP rule is left.
  EXPECT_EQ(rules_for(FirewallRule::outbound(Protocol::Icmp).remote("198.18.0.0/16")), 1u);
  EXPECT_EQ(rules_for(FirewallRule::outbound(Protocol::Tcp)
                          .to_ports({22, {8000, 8100}})
                          .remote("198.18.0.0/16")
                          .remote("2001:db8::/32")),
            4u);
}

TEST(FirewallPlan, InvalidConfigMadeWithoutTheBuilderFailsAtPlanTime) {
  FirewallConfig c = with_rule(FirewallConfig::Verdict::Deny,
                               FirewallRule{FlowDirection::Outbound, Protocol::Any, {}, {"nope"}});
  Error e = invalid_argument([&] { (void)internal::plan_firewall(router_with(c)); });
  EXPECT_THAT(e.what(), HasSubstr("rule 0 deny(outbound any remote nope): remote 'nope' is not "
                                  "an address or prefix"));
}

// ---- the examples of docs/firewalls.md, compiled ----

TEST(FirewallDocs, BuilderExamplesCompileAndMeanWhatTheGuideSays) {
  // docs/firewalls.md "Custom firewalls"
  patchbay::FirewallConfig office = patchbay::FirewallConfig::builder()
                                        .block_inbound()
                                        .allow_tcp({80, 443})
                                        .allow_udp({53})
                                        .build();
  EXPECT_EQ(office, FirewallConfig::preset(Firewall::Corporate));

  // docs/firewalls.md "Explicit rules"
  patchbay::FirewallConfig fw =
      patchbay::FirewallConfig::builder()
          .block_inbound()
          // no SMTP and nothing in 6660-6669 (IRC), anywhere
          .deny(patchbay::FirewallRule::outbound(patchbay::Protocol::Tcp)
                    .to_ports({25, {6660, 6669}}))
          // nothing at all to one network, IPv4 and IPv6
          .deny(patchbay::FirewallRule::outbound()
                    .remote("198.18.7.0/24")
                    .remote("2001:db8:1:7::/64"))
          // ssh from the admin network into the LAN, despite block_inbound
          .allow(patchbay::FirewallRule::inbound(patchbay::Protocol::Tcp)
                     .to_ports({22})
                     .remote("198.18.9.0/24"))
          .build();
  EXPECT_EQ(fw.rules.size(), 3u);
  EXPECT_EQ(to_string(fw),
            "block_inbound=yes outbound_tcp=allow_all outbound_udp=allow_all "
            "deny(outbound tcp port 25 port 6660-6669) "
            "deny(outbound any remote 198.18.7.0/24 remote 2001:db8:1:7::/64) "
            "allow(inbound tcp port 22 remote 198.18.9.0/24)");

  // docs/firewalls.md "First match decides"
  patchbay::FirewallConfig only_5000 =
      patchbay::FirewallConfig::builder()
          .allow(patchbay::FirewallRule::outbound(patchbay::Protocol::Udp).to_ports({5000}))
          .deny(patchbay::FirewallRule::outbound(patchbay::Protocol::Udp))
          .build();
  EXPECT_EQ(only_5000.rules[0].verdict, FirewallConfig::Verdict::Allow);

  // include/patchbay/firewall.hpp, usage example
  patchbay::FirewallConfig header =
      patchbay::FirewallConfig::builder()
          .block_inbound()
          .allow_tcp({80, 443})
          .allow_udp({53})
          .deny(patchbay::FirewallRule::outbound(patchbay::Protocol::Tcp)
                    .to_ports({25})
                    .remote("198.18.0.0/16"))
          .build();
  EXPECT_EQ(to_string(header),
            "block_inbound=yes outbound_tcp=allow[80,443] outbound_udp=allow[53] "
            "deny(outbound tcp port 25 remote 198.18.0.0/16)");

  // docs/firewalls.md "Validation"
  try {
    patchbay::FirewallConfig::builder()
        .deny(patchbay::FirewallRule::outbound(patchbay::Protocol::Tcp).to_ports({{9000, 8000}}))
        .build();
    ADD_FAILURE() << "an empty range was accepted";
  } catch (const patchbay::Error& e) {
    // e.kind() == kInvalidArgument, e.culprit() == "rules[0].ports[0]"
    EXPECT_EQ(e.culprit(), "rules[0].ports[0]");
    EXPECT_THAT(e.what(), HasSubstr("rule 0 deny(outbound tcp port 9000-8000): port range "
                                    "9000-8000 is empty"));
  }
}

}  // namespace
}  // namespace patchbay
