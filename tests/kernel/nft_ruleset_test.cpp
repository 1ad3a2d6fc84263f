// NftSocket against the real kernel, each test in a private network namespace. Results are
// checked through list_ruleset() and through the `nft` CLI (tests may run tools; the library
// never does). Traffic through the rules is tested with whole labs elsewhere.
#include "nft_ruleset.hpp"

#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "netns.hpp"
#include "patchbay/error.hpp"
#include "unique_fd.hpp"
#include "worker_thread.hpp"

namespace patchbay::internal {
namespace {

using boost::asio::ip::make_address_v4;

const char* find_nft() {
  for (const char* path : {"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"}) {
    if (::access(path, X_OK) == 0) return path;
  }
  return nullptr;
}

std::size_t count(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

RouterRules rules_for(Nat nat, Firewall firewall) {
  RouterRules rules;
  rules.wan_ifname = "wan";
  rules.lan_ifname = "br-lan";
  rules.wan_ipv4 = make_address_v4("203.0.113.2");
  rules.nat = nat;
  rules.firewall = firewall;
  return rules;
}

// Holds the test's `ip pb_nat` with NFT_TABLE_F_OWNER: while this socket is open, nobody else
// may touch the table, which lets a test make the kernel reject part of an apply batch.
class OwnedTable {
 public:
  OwnedTable() : sock_(mnl_socket_open(NETLINK_NETFILTER)) {
    if (!sock_) throw std::runtime_error("mnl_socket_open failed");
    if (mnl_socket_bind(sock_.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
      throw std::runtime_error("mnl_socket_bind failed");
    }
    std::unique_ptr<nftnl_table, void (*)(const nftnl_table*)> table(nftnl_table_alloc(),
                                                                     nftnl_table_free);
    nftnl_table_set_u32(table.get(), NFTNL_TABLE_FAMILY, NFPROTO_IPV4);
    nftnl_table_set_str(table.get(), NFTNL_TABLE_NAME, "pb_nat");
    nftnl_table_set_u32(table.get(), NFTNL_TABLE_FLAGS, NFT_TABLE_F_OWNER);

    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
    char* p = buf.data();
    nlmsghdr* nlh = nftnl_batch_begin(p, 1);
    p += nlh->nlmsg_len;
    nlh = nftnl_nlmsg_build_hdr(p, NFT_MSG_NEWTABLE, NFPROTO_IPV4, NLM_F_CREATE | NLM_F_ACK, 2);
    nftnl_table_nlmsg_build_payload(nlh, table.get());
    p += nlh->nlmsg_len;
    nlh = nftnl_batch_end(p, 3);
    p += nlh->nlmsg_len;
    if (mnl_socket_sendto(sock_.get(), buf.data(), static_cast<size_t>(p - buf.data())) < 0) {
      throw std::runtime_error("sending NEWTABLE failed");
    }
    ssize_t n = mnl_socket_recvfrom(sock_.get(), buf.data(), buf.size());
    if (n < 0 || mnl_cb_run(buf.data(), static_cast<size_t>(n), 2,
                            mnl_socket_get_portid(sock_.get()), nullptr, nullptr) < 0) {
      throw std::runtime_error(std::string("creating owned table failed: ") + std::strerror(errno));
    }
  }

 private:
  struct Close {
    void operator()(mnl_socket* s) const { mnl_socket_close(s); }
  };
  std::unique_ptr<mnl_socket, Close> sock_;
};

class NftRulesetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    worker_ = std::make_unique<WorkerThread>("nft-test",
                                             [this] { ns_ = create_netns_on_this_thread("r"); });
    worker_->call([this] { nft_.emplace(NftSocket::open_in_current_netns("r")); });
  }

  void TearDown() override {
    worker_->call([this] {
      nft_.reset();
      owned_.reset();
    });
    worker_.reset();
  }

  void apply(const RouterRules& rules) {
    worker_->call([&] { nft_->apply(rules); });
  }
  std::string list() {
    return worker_->invoke([&] { return nft_->list_ruleset(); });
  }

  // `nft <args>` run from the worker thread, i.e. inside the test namespace (the child
  // inherits the calling thread's network namespace). Returns stdout+stderr.
  std::string nft_cli(const std::string& args) {
    const char* nft = find_nft();
    if (nft == nullptr) return "<nft not installed>";
    return worker_->invoke([&] {
      std::string out;
      FILE* pipe = ::popen((std::string(nft) + " " + args + " 2>&1").c_str(), "r");
      if (pipe == nullptr) return std::string("<popen failed>");
      char buf[4096];
      std::size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
      int status = ::pclose(pipe);
      if (status != 0) out += "<nft exit status " + std::to_string(status) + ">";
      return out;
    });
  }
  std::string nft_ruleset() { return nft_cli("list ruleset"); }

  void require_nft() {
    if (find_nft() == nullptr) GTEST_SKIP() << "nft CLI not installed";
  }

  std::unique_ptr<WorkerThread> worker_;
  UniqueFd ns_;
  std::optional<NftSocket> nft_;
  std::optional<OwnedTable> owned_;
};

TEST_F(NftRulesetTest, EmptyNamespaceListsNoTables) { EXPECT_EQ(list(), "(no nftables tables)\n"); }

TEST_F(NftRulesetTest, HomeInstallsMasqueradeAndEstablishedOnlyInbound) {
  require_nft();
  apply(rules_for(Nat::Home, Firewall::None));

  std::string text = list();
  EXPECT_NE(text.find("table ip pb_nat\n"), std::string::npos) << text;
  EXPECT_NE(text.find("chain prerouting (type nat hook prerouting prio -100 policy accept)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("chain postrouting (type nat hook postrouting prio 100 policy accept)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("[ masq ]"), std::string::npos) << text;
  EXPECT_NE(text.find("table ip pb_filter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("chain forward (type filter hook forward prio 0 policy accept)"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("pb_fw"), std::string::npos) << text;

  std::string cli = nft_ruleset();
  EXPECT_NE(cli.find("table ip pb_nat {"), std::string::npos) << cli;
  EXPECT_NE(cli.find("type nat hook prerouting priority dstnat; policy accept;"), std::string::npos)
      << cli;
  EXPECT_NE(cli.find("type nat hook postrouting priority srcnat; policy accept;"),
            std::string::npos)
      << cli;
  EXPECT_NE(cli.find("oifname \"wan\" masquerade\n"), std::string::npos) << cli;
  EXPECT_EQ(cli.find("random"), std::string::npos) << cli;
  EXPECT_NE(cli.find("table ip pb_filter {"), std::string::npos) << cli;
  EXPECT_NE(cli.find("type filter hook forward priority filter; policy accept;"), std::string::npos)
      << cli;
  EXPECT_NE(cli.find("iifname \"wan\" ct state established,related accept\n"), std::string::npos)
      << cli;
  EXPECT_NE(cli.find("iifname \"wan\" drop\n"), std::string::npos) << cli;
  EXPECT_EQ(cli.find("pb_fw"), std::string::npos) << cli;
  EXPECT_EQ(cli.find("<nft exit"), std::string::npos) << cli;
}

TEST_F(NftRulesetTest, CorporateUsesRandomPortsAndPortPolicy) {
  require_nft();
  apply(rules_for(Nat::Corporate, Firewall::Corporate));
  std::string cli = nft_ruleset();
  EXPECT_NE(cli.find("oifname \"wan\" masquerade random\n"), std::string::npos) << cli;
  EXPECT_NE(cli.find("table ip pb_filter {"), std::string::npos) << cli;
  EXPECT_NE(cli.find("table inet pb_fw {"), std::string::npos) << cli;
  EXPECT_NE(cli.find("type filter hook forward priority filter + 10; policy accept;"),
            std::string::npos)
      << cli;
  for (const char* rule : {
           "\t\tct state established,related accept\n",
           "iifname \"wan\" drop\n",
           "iifname \"br-lan\" tcp dport 80 accept\n",
           "iifname \"br-lan\" tcp dport 443 accept\n",
           "iifname \"br-lan\" meta l4proto tcp drop\n",
           "iifname \"br-lan\" udp dport 53 accept\n",
           "iifname \"br-lan\" meta l4proto udp drop\n",
       }) {
    EXPECT_NE(cli.find(rule), std::string::npos) << rule << " missing in\n" << cli;
  }
  // The rules of pb_fw come in policy order: established first, then WAN, then LAN ports.
  std::size_t fw = cli.find("table inet pb_fw");
  ASSERT_NE(fw, std::string::npos);
  std::size_t est = cli.find("ct state established,related accept", fw);
  std::size_t wan = cli.find("iifname \"wan\" drop", fw);
  std::size_t http = cli.find("tcp dport 80 accept", fw);
  std::size_t tcp_drop = cli.find("meta l4proto tcp drop", fw);
  EXPECT_LT(est, wan);
  EXPECT_LT(wan, http);
  EXPECT_LT(http, tcp_drop);

  std::string text = list();
  EXPECT_NE(text.find("[ masq flags 0x4 ]"), std::string::npos) << text;
  EXPECT_NE(text.find("table inet pb_fw\n"), std::string::npos) << text;
  EXPECT_NE(text.find("chain forward (type filter hook forward prio 10 policy accept)"),
            std::string::npos)
      << text;
}

TEST_F(NftRulesetTest, CloudNatIsRandomCgnatIsNot) {
  require_nft();
  apply(rules_for(Nat::CloudNat, Firewall::None));
  EXPECT_NE(nft_ruleset().find("masquerade random"), std::string::npos);
  apply(rules_for(Nat::Cgnat, Firewall::None));
  std::string cli = nft_ruleset();
  EXPECT_NE(cli.find("oifname \"wan\" masquerade\n"), std::string::npos) << cli;
  EXPECT_NE(cli.find("table ip pb_filter"), std::string::npos) << cli;
}

TEST_F(NftRulesetTest, FullConeHasNoInboundFilter) {
  require_nft();
  apply(rules_for(Nat::FullCone, Firewall::None));
  std::string cli = nft_ruleset();
  EXPECT_NE(cli.find("oifname \"wan\" masquerade\n"), std::string::npos) << cli;
  EXPECT_EQ(cli.find("pb_filter"), std::string::npos) << cli;
  EXPECT_EQ(cli.find("pb_fw"), std::string::npos) << cli;
}

TEST_F(NftRulesetTest, CaptivePortalOnlyRestrictsUdp) {
  require_nft();
  apply(rules_for(Nat::None, Firewall::CaptivePortal));
  std::string cli = nft_ruleset();
  EXPECT_EQ(cli.find("pb_nat"), std::string::npos) << cli;
  EXPECT_EQ(cli.find("pb_filter"), std::string::npos) << cli;
  EXPECT_NE(cli.find("iifname \"wan\" drop\n"), std::string::npos) << cli;
  EXPECT_NE(cli.find("iifname \"br-lan\" udp dport 53 accept\n"), std::string::npos) << cli;
  EXPECT_NE(cli.find("iifname \"br-lan\" meta l4proto udp drop\n"), std::string::npos) << cli;
  EXPECT_EQ(cli.find("tcp"), std::string::npos) << cli;
}

TEST_F(NftRulesetTest, BlockInboundHasNoPortPolicy) {
  require_nft();
  apply(rules_for(Nat::None, Firewall::BlockInbound));
  std::string cli = nft_ruleset();
  EXPECT_NE(cli.find("table inet pb_fw"), std::string::npos) << cli;
  EXPECT_NE(cli.find("ct state established,related accept\n"), std::string::npos) << cli;
  EXPECT_NE(cli.find("iifname \"wan\" drop\n"), std::string::npos) << cli;
  EXPECT_EQ(cli.find("br-lan"), std::string::npos) << cli;
}

TEST_F(NftRulesetTest, NatNeedsWanIpv4) {
  require_nft();
  RouterRules rules = rules_for(Nat::Home, Firewall::None);
  rules.wan_ipv4.reset();
  apply(rules);
  std::string cli = nft_ruleset();
  EXPECT_EQ(cli.find("pb_nat"), std::string::npos) << cli;
  // The inbound filter follows the NAT setting alone (harmless without an IPv4 uplink).
  EXPECT_NE(cli.find("table ip pb_filter"), std::string::npos) << cli;
}

TEST_F(NftRulesetTest, InstallOnAFreshNamespaceMatchesApply) {
  worker_->call([&] { nft_->install(rules_for(Nat::Corporate, Firewall::Corporate)); });
  std::string installed = list();
  apply(rules_for(Nat::Corporate, Firewall::Corporate));
  // Same tables and rules; only the kernel's rule handles may differ.
  auto strip_handles = [](std::string text) {
    std::string out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      auto at = line.find(" (handle ");
      out += (at == std::string::npos ? line : line.substr(0, at)) + "\n";
    }
    return out;
  };
  EXPECT_EQ(strip_handles(installed), strip_handles(list()));
  EXPECT_NE(installed.find("table inet pb_fw"), std::string::npos) << installed;
}

TEST_F(NftRulesetTest, ApplyTwiceReplacesInsteadOfAppending) {
  require_nft();
  apply(rules_for(Nat::Home, Firewall::Corporate));
  std::string first = nft_ruleset();
  apply(rules_for(Nat::Home, Firewall::Corporate));
  std::string second = nft_ruleset();
  EXPECT_EQ(first, second);
  EXPECT_EQ(count(second, "masquerade"), 1u) << second;
  EXPECT_EQ(count(second, "table ip pb_filter"), 1u) << second;
  EXPECT_EQ(count(second, "tcp dport 443 accept"), 1u) << second;

  // Changing the preset replaces the rules too.
  apply(rules_for(Nat::Corporate, Firewall::Corporate));
  std::string third = nft_ruleset();
  EXPECT_EQ(count(third, "masquerade"), 1u) << third;
  EXPECT_EQ(count(third, "masquerade random"), 1u) << third;
}

TEST_F(NftRulesetTest, SwitchingToNoneRemovesOurTables) {
  require_nft();
  apply(rules_for(Nat::Home, Firewall::BlockInbound));
  ASSERT_NE(nft_ruleset().find("pb_nat"), std::string::npos);
  apply(rules_for(Nat::None, Firewall::None));
  EXPECT_EQ(nft_ruleset(), "");
  EXPECT_EQ(list(), "(no nftables tables)\n");
}

TEST_F(NftRulesetTest, ClearRemovesOnlyOurTables) {
  require_nft();
  ASSERT_EQ(nft_cli("add table ip other"), "");
  ASSERT_EQ(nft_cli("add chain ip other regular"), "");
  ASSERT_EQ(nft_cli("add rule ip other regular counter"), "");
  apply(rules_for(Nat::Corporate, Firewall::Corporate));
  worker_->call([&] { nft_->clear(); });
  std::string cli = nft_ruleset();
  EXPECT_EQ(cli.find("pb_"), std::string::npos) << cli;
  EXPECT_NE(cli.find("table ip other"), std::string::npos) << cli;
  // Idempotent, and a later apply works again.
  worker_->call([&] { nft_->clear(); });
  apply(rules_for(Nat::Home, Firewall::None));
  EXPECT_NE(nft_ruleset().find("masquerade"), std::string::npos);
  // Foreign tables survive apply as well, and list_ruleset() shows them too.
  EXPECT_NE(nft_ruleset().find("table ip other"), std::string::npos);
  std::string text = list();
  EXPECT_NE(text.find("table ip other\n  chain regular\n    rule 1"), std::string::npos) << text;
  EXPECT_NE(text.find("[ counter pkts 0 bytes 0 ]"), std::string::npos) << text;
}

TEST_F(NftRulesetTest, OverlongWanNameIsRejectedUpFrontAndKeepsRuleset) {
  require_nft();
  apply(rules_for(Nat::Home, Firewall::None));
  std::string before = nft_ruleset();

  RouterRules bad = rules_for(Nat::Corporate, Firewall::Corporate);
  bad.wan_ifname = "wan-name-too-long";  // 17 bytes, IFNAMSIZ allows 15
  try {
    apply(bad);
    FAIL() << "apply accepted an overlong interface name";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_EQ(e.culprit(), "r");
    EXPECT_NE(std::string(e.what()).find("'wan-name-too-long'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("router 'r'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(nft_ruleset(), before);
}

TEST_F(NftRulesetTest, EmptyInterfaceNamesAreRejected) {
  RouterRules no_wan = rules_for(Nat::Home, Firewall::None);
  no_wan.wan_ifname.clear();
  EXPECT_THROW(apply(no_wan), Error);
  RouterRules no_lan = rules_for(Nat::None, Firewall::Corporate);
  no_lan.lan_ifname.clear();
  try {
    apply(no_lan);
    FAIL() << "apply accepted an empty LAN name";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("LAN interface name"), std::string::npos) << e.what();
  }
  // A firewall without port policy does not need the LAN name.
  RouterRules block = rules_for(Nat::None, Firewall::BlockInbound);
  block.lan_ifname.clear();
  EXPECT_NO_THROW(apply(block));
}

TEST_F(NftRulesetTest, KernelErrorNamesFailingMessageAndKeepsPreviousRuleset) {
  require_nft();
  apply(rules_for(Nat::None, Firewall::Corporate));
  std::string before = nft_ruleset();
  ASSERT_NE(before.find("table inet pb_fw"), std::string::npos) << before;

  // Another socket owns `ip pb_nat`, so the kernel refuses our NEWTABLE for it with EPERM.
  worker_->call([&] { owned_.emplace(); });
  std::string with_owned = nft_ruleset();
  try {
    apply(rules_for(Nat::Home, Firewall::BlockInbound));
    FAIL() << "apply succeeded despite the foreign-owned table";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kKernel);
    EXPECT_EQ(e.sys_errno(), EPERM);
    EXPECT_EQ(e.culprit(), "r");
    EXPECT_NE(std::string(e.what()).find("nftables apply failed in router 'r' (table ip pb_nat"),
              std::string::npos)
        << e.what();
  }
  // The whole batch was rolled back: pb_fw keeps its Corporate port policy, no pb_filter.
  EXPECT_EQ(nft_ruleset(), with_owned);
  std::string text = list();
  EXPECT_NE(text.find("table inet pb_fw"), std::string::npos) << text;
  EXPECT_EQ(text.find("pb_filter"), std::string::npos) << text;

  // Once the owner is gone the same apply succeeds on the same socket.
  worker_->call([&] { owned_.reset(); });
  apply(rules_for(Nat::Home, Firewall::BlockInbound));
  std::string after = nft_ruleset();
  EXPECT_NE(after.find("masquerade"), std::string::npos) << after;
  EXPECT_EQ(after.find("tcp dport"), std::string::npos) << after;
}

TEST_F(NftRulesetTest, MovedSocketKeepsWorking) {
  require_nft();
  worker_->call([&] {
    NftSocket moved(std::move(*nft_));
    NftSocket assigned = NftSocket::open_in_current_netns("r");
    assigned = std::move(moved);
    assigned.apply(rules_for(Nat::Home, Firewall::None));
    nft_.emplace(std::move(assigned));
  });
  EXPECT_NE(list().find("pb_nat"), std::string::npos);
}

}  // namespace
}  // namespace patchbay::internal
