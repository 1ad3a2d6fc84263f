// MTUs and path-MTU discovery: a router's LAN MTU reaches every port and attached interface, an
// oversized don't-fragment packet is answered with ICMP "fragmentation needed" / ICMPv6
// "packet too big" by the router in front of the small link, and a router that blocks those
// errors makes a PMTU black hole. Real pings with -M do.
#include <gtest/gtest.h>

#include <string>

#include "patchbay/gtest.hpp"
#include "patchbay/patchbay.hpp"

namespace {

using patchbay::Device;
using patchbay::IpSupport;
using patchbay::Router;

class MtuTest : public patchbay::testing::LabTest {
 protected:
  // From `ip -o link` ("3: eth0@if4: <...> mtu 1400 qdisc ..."); /sys would show the sysfs
  // of whatever namespace mounted it, not the node's.
  std::string mtu_of(const patchbay::Node& node, const std::string& ifname) {
    std::string out = node.run_command({"ip", "-o", "link", "show", "dev", ifname}).stdout_text;
    std::size_t m = out.find(" mtu ");
    if (m == std::string::npos) return "no mtu in: " + out;
    return out.substr(m + 5, out.find(' ', m + 5) - (m + 5));
  }
  // One don't-fragment ping of `payload` bytes; ping's whole output.
  std::string df_ping(const Device& from, const std::string& to, int payload, bool v6 = false) {
    patchbay::CommandResult r =
        from.run_command({"ping", v6 ? "-6" : "-4", "-n", "-c", "1", "-W", "1", "-M", "do", "-s",
                          std::to_string(payload), to});
    return r.stdout_text + r.stderr_text + (r.success() ? "\nREPLIED" : "\nNO REPLY");
  }
};

TEST_F(MtuTest, RouterMtuCoversItsLanSegmentButNotItsUplink) {
  Router small = lab().add_router("small").mtu(1400).build();
  Device d = lab().add_device("d").iface("eth0", small).build();
  Device own = lab().add_device("own").iface("eth0", small).mtu(1300).build();
  EXPECT_EQ(mtu_of(d, "eth0"), "1400") << "devices inherit their LAN's MTU";
  EXPECT_EQ(mtu_of(own, "eth0"), "1300") << "an explicit device MTU wins";
  EXPECT_EQ(mtu_of(small, "br-lan"), "1400");
  EXPECT_EQ(mtu_of(small, "ix"), "1500") << "the uplink belongs to the IX segment";
  EXPECT_EQ(small.mtu(), 1400);
  // A router below inherits the LAN MTU on its uplink.
  Router below = lab().add_router("below").upstream(small).build();
  EXPECT_EQ(mtu_of(below, "wan"), "1400");
}

TEST_F(MtuTest, PathMtuDiscoveryLearnsTheSmallerLink) {
  Router dc = lab().add_router("dc").ip_support(IpSupport::DualStack).build();
  Router small = lab().add_router("small").ip_support(IpSupport::DualStack).mtu(1400).build();
  Device client = lab().add_device("client").iface("eth0", dc).build();
  Device server = lab().add_device("server").iface("eth0", small).build();
  const std::string v4 = server.ip()->to_string();
  // 1472 + 28 = 1500 bytes: too big for the 1400-byte LAN; small says so.
  std::string first = df_ping(client, v4, 1472);
  EXPECT_NE(first.find("mtu = 1400"), std::string::npos) << first;
  // The sender now knows the path MTU: it refuses the big packet itself...
  std::string again = df_ping(client, v4, 1472);
  EXPECT_NE(again.find("mtu=1400"), std::string::npos) << again;
  // ...and a packet that fits gets through.
  EXPECT_NE(df_ping(client, v4, 1372).find("REPLIED"), std::string::npos);

  const std::string v6 = server.ip6()->to_string();
  std::string big6 = df_ping(client, v6, 1452, true);  // 1452 + 48 = 1500
  EXPECT_NE(big6.find("mtu=1400"), std::string::npos) << big6;
  EXPECT_NE(df_ping(client, v6, 1352, true).find("REPLIED"), std::string::npos);
}

TEST_F(MtuTest, BlockingFragNeededMakesABlackHoleAndUnblockingEndsIt) {
  // client -> fw (drops forwarded frag-needed) -> IX -> small (LAN MTU 1400) -> server
  Router fw =
      lab().add_router("fw").ip_support(IpSupport::DualStack).block_icmp_frag_needed().build();
  Router small = lab().add_router("small").ip_support(IpSupport::DualStack).mtu(1400).build();
  Device client = lab().add_device("client").iface("eth0", fw).build();
  Device server = lab().add_device("server").iface("eth0", small).build();
  EXPECT_TRUE(fw.blocks_icmp_frag_needed());
  const std::string v4 = server.ip()->to_string();
  const std::string v6 = server.ip6()->to_string();
  EXPECT_NE(df_ping(client, v4, 1372).find("REPLIED"), std::string::npos) << "path works";

  for (int i = 0; i < 2; ++i) {
    std::string out = df_ping(client, v4, 1472);
    EXPECT_EQ(out.find("mtu"), std::string::npos) << "the sender must never learn: " << out;
    EXPECT_NE(out.find("NO REPLY"), std::string::npos) << out;
    std::string out6 = df_ping(client, v6, 1452, true);
    EXPECT_EQ(out6.find("mtu"), std::string::npos) << out6;
    EXPECT_NE(out6.find("NO REPLY"), std::string::npos) << out6;
  }
  std::string ruleset = fw.run_command({"nft", "list", "table", "inet", "pb_pmtu"}).stdout_text;
  EXPECT_NE(ruleset.find("drop"), std::string::npos) << ruleset;

  fw.set_block_icmp_frag_needed(false);
  EXPECT_FALSE(fw.blocks_icmp_frag_needed());
  std::string out = df_ping(client, v4, 1472);
  EXPECT_NE(out.find("mtu = 1400"), std::string::npos) << out;
  EXPECT_EQ(fw.run_command({"nft", "list", "tables"}).stdout_text.find("pb_pmtu"),
            std::string::npos);
}

TEST_F(MtuTest, NatChangesKeepTheBlackHole) {
  Router fw = lab().add_router("fw").block_icmp_frag_needed().build();
  fw.set_nat(patchbay::Nat::Home);
  fw.set_nat(patchbay::Nat::None);
  std::string tables = fw.run_command({"nft", "list", "tables"}).stdout_text;
  EXPECT_NE(tables.find("pb_pmtu"), std::string::npos) << tables;
}

}  // namespace
