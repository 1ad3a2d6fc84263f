// NftSocket against the real kernel, each test in a private network namespace. Results are
// checked through list_ruleset(), through the kernel's own view of our sets and set elements
// (netlink dumps written here), and through the `nft` CLI (tests may run tools; the library
// never does): `nft list` decoding our sets and elements also proves we give nft the right
// datatype ids. A few tests send packets from the test namespace itself (bound to a LAN
// address, routed out of the WAN) so the NAT rules run and fill the mapping sets; whole labs
// with traffic between nodes are tested elsewhere.
#include <netinet/in.h>  // before the linux/ headers, which would define in_addr again

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "netns.hpp"
#include "nft_ruleset.hpp"
#include "patchbay/error.hpp"
#include "route_socket.hpp"
#include "unique_fd.hpp"
#include "worker_thread.hpp"

namespace patchbay::internal {
namespace {

using boost::asio::ip::make_address;
using boost::asio::ip::make_address_v4;
using std::chrono::seconds;

// The test router's addresses. Traffic tests send from LAN addresses to the "internet" range,
// which is routed out of the WAN to a gateway that never answers ARP: the packets pass
// postrouting (NAT and the record chain) and then die in the neighbour queue.
constexpr const char* kWanIp = "203.0.113.2";
constexpr const char* kLanIp1 = "10.0.0.1";
constexpr const char* kLanIp2 = "10.0.0.2";

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

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A block of `nft list` output: from "<header> {" up to its closing brace (exclusive), e.g.
// nft_block(text, "map out_map") or nft_chain(text, "forward").
std::string nft_block(const std::string& text, const std::string& header) {
  const std::size_t begin = text.find(header + " {\n");
  if (begin == std::string::npos) return "";
  const std::size_t end = text.find("\n\t}", begin);
  return text.substr(begin, end == std::string::npos ? std::string::npos : end + 1 - begin);
}
std::string nft_chain(const std::string& text, const std::string& name) {
  return nft_block(text, "chain " + name);
}

RouterRules rules_with(std::optional<NatConfig> nat, std::optional<FirewallConfig> firewall) {
  RouterRules rules;
  rules.wan_ifname = "wan";
  rules.lan_ifname = "br-lan";
  rules.wan_ipv4 = make_address_v4(kWanIp);
  rules.lan_v4 = Ipv4Net{make_address_v4("10.0.0.0"), 24};
  rules.nat = std::move(nat);
  rules.firewall = std::move(firewall);
  return rules;
}

RouterRules rules_for(Nat nat, Firewall firewall) {
  return rules_with(
      nat == Nat::None ? std::nullopt : std::optional(NatConfig::preset(nat)),
      firewall == Firewall::None ? std::nullopt : std::optional(FirewallConfig::preset(firewall)));
}

// What the kernel reports about one of our sets.
struct SetInfo {
  std::uint32_t family = 0;
  std::string table;
  std::string name;
  std::uint32_t flags = 0;
  std::uint32_t key_type = 0;
  std::uint32_t key_len = 0;
  std::uint32_t data_type = 0;
  std::uint32_t data_len = 0;  // 0 for a plain set
};

struct Element {
  std::vector<std::uint8_t> key;
  std::vector<std::uint8_t> data;
  std::uint64_t timeout_ms = 0;
};

// The 32-bit-register layout of concatenations: a 1-byte protocol or 2-byte port takes 4 bytes.
std::uint8_t proto_at(const std::vector<std::uint8_t>& v, std::size_t offset) {
  return v.at(offset);
}
std::uint16_t port_at(const std::vector<std::uint8_t>& v, std::size_t offset) {
  return static_cast<std::uint16_t>(v.at(offset) << 8 | v.at(offset + 1));
}
std::string ip_at(const std::vector<std::uint8_t>& v, std::size_t offset) {
  return std::to_string(v.at(offset)) + "." + std::to_string(v.at(offset + 1)) + "." +
         std::to_string(v.at(offset + 2)) + "." + std::to_string(v.at(offset + 3));
}

struct MnlClose {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};
using MnlPtr = std::unique_ptr<mnl_socket, MnlClose>;
using SetPtr = std::unique_ptr<nftnl_set, void (*)(const nftnl_set*)>;

MnlPtr open_nfnetlink() {
  MnlPtr sock(mnl_socket_open(NETLINK_NETFILTER));
  if (!sock) throw std::runtime_error("mnl_socket_open failed");
  if (mnl_socket_bind(sock.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    throw std::runtime_error("mnl_socket_bind failed");
  }
  return sock;
}

// One NLM_F_DUMP request from the calling thread's namespace; `build` adds the request's
// attributes, `each` sees every answer.
void dump(std::uint16_t msg_type, std::uint16_t family, const std::function<void(nlmsghdr*)>& build,
          const std::function<void(const nlmsghdr*)>& each) {
  MnlPtr sock = open_nfnetlink();
  std::vector<char> buf(64 * 1024);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), msg_type, family, NLM_F_DUMP, 1);
  build(nlh);
  if (mnl_socket_sendto(sock.get(), nlh, nlh->nlmsg_len) < 0) {
    throw std::runtime_error(std::string("dump request failed: ") + std::strerror(errno));
  }
  auto cb = [](const nlmsghdr* msg, void* data) {
    (*static_cast<const std::function<void(const nlmsghdr*)>*>(data))(msg);
    return MNL_CB_OK;
  };
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(sock.get(), buf.data(), buf.size());
    if (n < 0) throw std::runtime_error(std::string("dump recv: ") + std::strerror(errno));
    int rc =
        mnl_cb_run(buf.data(), static_cast<std::size_t>(n), 1, mnl_socket_get_portid(sock.get()),
                   cb, const_cast<std::function<void(const nlmsghdr*)>*>(&each));
    if (rc == MNL_CB_STOP) return;
    if (rc < 0) throw std::runtime_error(std::string("dump failed: ") + std::strerror(errno));
  }
}

std::vector<SetInfo> dump_sets() {
  std::vector<SetInfo> out;
  dump(
      NFT_MSG_GETSET, NFPROTO_UNSPEC, [](nlmsghdr*) {},
      [&](const nlmsghdr* nlh) {
        SetPtr s(nftnl_set_alloc(), nftnl_set_free);
        if (nftnl_set_nlmsg_parse(nlh, s.get()) < 0) throw std::runtime_error("set parse");
        SetInfo info;
        info.family = nftnl_set_get_u32(s.get(), NFTNL_SET_FAMILY);
        info.table = nftnl_set_get_str(s.get(), NFTNL_SET_TABLE);
        info.name = nftnl_set_get_str(s.get(), NFTNL_SET_NAME);
        info.flags = nftnl_set_get_u32(s.get(), NFTNL_SET_FLAGS);
        info.key_type = nftnl_set_get_u32(s.get(), NFTNL_SET_KEY_TYPE);
        info.key_len = nftnl_set_get_u32(s.get(), NFTNL_SET_KEY_LEN);
        if (nftnl_set_is_set(s.get(), NFTNL_SET_DATA_LEN)) {
          info.data_type = nftnl_set_get_u32(s.get(), NFTNL_SET_DATA_TYPE);
          info.data_len = nftnl_set_get_u32(s.get(), NFTNL_SET_DATA_LEN);
        }
        out.push_back(std::move(info));
      });
  std::sort(out.begin(), out.end(),
            [](const SetInfo& a, const SetInfo& b) { return a.name < b.name; });
  return out;
}

std::vector<Element> dump_elements(const char* set_name) {
  SetPtr request(nftnl_set_alloc(), nftnl_set_free);
  nftnl_set_set_str(request.get(), NFTNL_SET_TABLE, kNatTable);
  nftnl_set_set_str(request.get(), NFTNL_SET_NAME, set_name);
  SetPtr answers(nftnl_set_alloc(), nftnl_set_free);
  dump(
      NFT_MSG_GETSETELEM, NFPROTO_IPV4,
      [&](nlmsghdr* nlh) { nftnl_set_elems_nlmsg_build_payload(nlh, request.get()); },
      [&](const nlmsghdr* nlh) {
        if (nftnl_set_elems_nlmsg_parse(nlh, answers.get()) < 0) {
          throw std::runtime_error("element parse");
        }
      });
  std::vector<Element> out;
  auto each = [](nftnl_set_elem* e, void* data) {
    Element el;
    auto bytes = [&](std::uint16_t attr) {
      std::uint32_t len = 0;
      if (!nftnl_set_elem_is_set(e, attr)) return std::vector<std::uint8_t>{};
      const auto* p = static_cast<const std::uint8_t*>(nftnl_set_elem_get(e, attr, &len));
      return std::vector<std::uint8_t>(p, p + len);
    };
    el.key = bytes(NFTNL_SET_ELEM_KEY);
    el.data = bytes(NFTNL_SET_ELEM_DATA);
    if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_TIMEOUT)) {
      el.timeout_ms = nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_TIMEOUT);
    }
    static_cast<std::vector<Element>*>(data)->push_back(std::move(el));
    return 0;
  };
  nftnl_set_elem_foreach(answers.get(), each, &out);
  return out;
}

const SetInfo* find_set(const std::vector<SetInfo>& sets, const std::string& name) {
  for (const SetInfo& s : sets) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

// Holds a test table `family name` with NFT_TABLE_F_OWNER: while this socket is open, nobody
// else may touch the table, which lets a test make the kernel reject part of an apply batch.
class OwnedTable {
 public:
  OwnedTable(std::uint16_t family, const char* name) : sock_(open_nfnetlink()) {
    std::unique_ptr<nftnl_table, void (*)(const nftnl_table*)> table(nftnl_table_alloc(),
                                                                     nftnl_table_free);
    nftnl_table_set_u32(table.get(), NFTNL_TABLE_FAMILY, family);
    nftnl_table_set_str(table.get(), NFTNL_TABLE_NAME, name);
    nftnl_table_set_u32(table.get(), NFTNL_TABLE_FLAGS, NFT_TABLE_F_OWNER);

    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
    char* p = buf.data();
    nlmsghdr* nlh = nftnl_batch_begin(p, 1);
    p += nlh->nlmsg_len;
    nlh = nftnl_nlmsg_build_hdr(p, NFT_MSG_NEWTABLE, family, NLM_F_CREATE | NLM_F_ACK, 2);
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
  MnlPtr sock_;
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
  std::vector<SetInfo> sets() {
    return worker_->invoke([] { return dump_sets(); });
  }
  std::vector<Element> elements(const char* set) {
    return worker_->invoke([set] { return dump_elements(set); });
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

  // wan (203.0.113.2/24, a veth whose peer stays silent), br-lan (10.0.0.1 and 10.0.0.2) and
  // 198.51.100.0/24 routed out of the WAN.
  void add_links() {
    worker_->call([] {
      RouteSocket rs = RouteSocket::open_in_current_netns("r");
      rs.set_link_up(rs.link_index("lo"), true);
      rs.add_veth({"wan", -1, std::nullopt, true, 0, std::nullopt},
                  {"wan-peer", -1, std::nullopt, true, 0, std::nullopt});
      const int wan = rs.link_index("wan");
      rs.add_address(wan, {make_address(kWanIp), 24});
      const int lan = rs.add_bridge("br-lan", std::nullopt, true);
      rs.add_address(lan, {make_address(kLanIp1), 24});
      rs.add_address(lan, {make_address(kLanIp2), 24});
      rs.add_route({make_address("198.51.100.0"), 24}, make_address("203.0.113.1"), wan);
    });
  }

  // One packet of a new flow from src:sport: a UDP datagram, or a TCP SYN (a non-blocking
  // connect). The namespace's hooks run inside the send call, so its effects on the sets are
  // complete when this returns.
  void send(int type, const char* src, std::uint16_t sport, const char* dst, std::uint16_t dport) {
    worker_->call([&] {
      UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
      if (!fd.valid()) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
      sockaddr_in from{};
      from.sin_family = AF_INET;
      from.sin_port = htons(sport);
      ::inet_pton(AF_INET, src, &from.sin_addr);
      if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&from), sizeof from) < 0) {
        throw std::runtime_error(std::string("bind: ") + std::strerror(errno));
      }
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_port = htons(dport);
      ::inet_pton(AF_INET, dst, &to.sin_addr);
      if (type == SOCK_DGRAM) {
        const char payload[] = "x";
        if (::sendto(fd.get(), payload, 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) != 1) {
          throw std::runtime_error(std::string("sendto: ") + std::strerror(errno));
        }
      } else if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) == 0 ||
                 errno != EINPROGRESS) {
        throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
      }
    });
  }

  std::unique_ptr<WorkerThread> worker_;
  UniqueFd ns_;
  std::optional<NftSocket> nft_;
  std::optional<OwnedTable> owned_;
};

constexpr std::uint32_t kDynamicTimeout = NFT_SET_TIMEOUT | NFT_SET_EVAL;

TEST_F(NftRulesetTest, EmptyNamespaceListsNoTables) { EXPECT_EQ(list(), "(no nftables tables)\n"); }

// ---------------------------------------------------------------------------------------------
// NAT presets and configurations: tables, sets, chains, key rules.

TEST_F(NftRulesetTest, HomeHasEndpointMapsAndFourChains) {
  apply(rules_for(Nat::Home, Firewall::None));

  const std::vector<SetInfo> s = sets();
  ASSERT_EQ(s.size(), 2u);  // no peers set: filtering is address-and-port-dependent
  const SetInfo* in_map = find_set(s, "in_map");
  const SetInfo* out_map = find_set(s, "out_map");
  ASSERT_TRUE(in_map && out_map);
  // out_map: proto . internal ip . internal port -> external ip . port
  EXPECT_EQ(out_map->family, static_cast<std::uint32_t>(NFPROTO_IPV4));
  EXPECT_EQ(out_map->table, "pb_nat");
  EXPECT_EQ(out_map->key_len, 12u);
  EXPECT_EQ(out_map->data_len, 8u);
  EXPECT_EQ(out_map->flags & (kDynamicTimeout | NFT_SET_MAP), kDynamicTimeout | NFT_SET_MAP);
  EXPECT_EQ(out_map->key_type,
            nft_concat_type({NftType::kInetProto, NftType::kIpv4Addr, NftType::kInetService}));
  // in_map: proto . external port -> internal ip . port
  EXPECT_EQ(in_map->key_len, 8u);
  EXPECT_EQ(in_map->data_len, 8u);
  EXPECT_EQ(in_map->flags & (kDynamicTimeout | NFT_SET_MAP), kDynamicTimeout | NFT_SET_MAP);
  EXPECT_EQ(in_map->data_type, nft_concat_type({NftType::kIpv4Addr, NftType::kInetService}));

  const std::string text = list();
  for (
      const char* line : {
          "table ip pb_nat\n",
          "  chain prerouting (type nat hook prerouting prio -100 policy accept)\n",
          "  chain postrouting (type nat hook postrouting prio 100 policy accept)\n",
          "  chain record (type filter hook postrouting prio 110 policy accept)\n",
          "  chain forward (type filter hook forward prio 0 policy accept)\n",
          // Mapping state lives udp_stream (300 s) / tcp_established (7200 s) of the preset.
          "[ dynset update reg_key 1 set out_map sreg_data 2 timeout 300000ms ]",
          "[ dynset update reg_key 1 set out_map sreg_data 2 timeout 7200000ms ]",
          "[ dynset update reg_key 1 set in_map sreg_data 2 timeout 300000ms ]",
          "[ dynset update reg_key 1 set in_map sreg_data 2 timeout 7200000ms ]",
          "[ lookup reg 1 set out_map dreg 1 0x0 ]",
          "[ nat snat ip addr_min reg 1 addr_max reg 1 proto_min reg 9 proto_max reg 9 flags 0x3 ]",
          "[ nat dnat ip addr_min reg 1 addr_max reg 1 proto_min reg 9 proto_max reg 9 flags 0x3 ]",
      }) {
    EXPECT_TRUE(contains(text, line)) << line << " missing in\n" << text;
  }
  EXPECT_FALSE(contains(text, "pb_fw")) << text;
  EXPECT_FALSE(contains(text, "numgen")) << text;
}

TEST_F(NftRulesetTest, HomeRulesReadBackThroughNft) {
  require_nft();
  apply(rules_for(Nat::Home, Firewall::None));
  const std::string cli = nft_ruleset();
  ASSERT_FALSE(contains(cli, "<nft exit")) << cli;
  const std::string out_map = nft_block(cli, "map out_map");
  EXPECT_TRUE(contains(out_map,
                       "\t\ttype inet_proto . ipv4_addr . inet_service : ipv4_addr . "
                       "inet_service\n"))
      << cli;
  EXPECT_TRUE(contains(out_map, "\t\tflags dynamic,timeout\n")) << cli;
  const std::string in_map = nft_block(cli, "map in_map");
  EXPECT_TRUE(contains(in_map, "\t\ttype inet_proto . inet_service : ipv4_addr . inet_service\n"))
      << cli;
  EXPECT_TRUE(contains(in_map, "\t\tflags dynamic,timeout\n")) << cli;

  // Inbound: only from the WAN, only to the WAN address, through in_map.
  const std::string pre = nft_chain(cli, "prerouting");
  EXPECT_TRUE(contains(pre, "type nat hook prerouting priority dstnat; policy accept;")) << pre;
  EXPECT_EQ(count(pre, "iifname \"wan\" ip daddr 203.0.113.2 dnat ip to meta l4proto . "), 2u)
      << pre;
  EXPECT_TRUE(contains(pre, ". udp dport map @in_map\n")) << pre;
  EXPECT_TRUE(contains(pre, ". tcp dport map @in_map\n")) << pre;

  // Outbound: reuse the endpoint's mapping, move ports that are already external elsewhere,
  // else keep the port (plain masquerade, also for ICMP).
  const std::string post = nft_chain(cli, "postrouting");
  for (const char* rule : {
           "oifname \"wan\" snat ip to meta l4proto . ip saddr . udp sport map @out_map\n",
           "oifname \"wan\" meta l4proto . udp sport @in_map masquerade random\n",
           "oifname \"wan\" snat ip to meta l4proto . ip saddr . tcp sport map @out_map\n",
           "oifname \"wan\" meta l4proto . tcp sport @in_map masquerade random\n",
           "oifname \"wan\" masquerade\n",
       }) {
    EXPECT_TRUE(contains(post, rule)) << rule << " missing in\n" << post;
  }
  EXPECT_LT(post.find("udp sport map @out_map"), post.find("udp sport @in_map masquerade"));
  EXPECT_LT(post.find("tcp sport @in_map masquerade"), post.find("oifname \"wan\" masquerade\n"));

  const std::string record = nft_chain(cli, "record");
  EXPECT_TRUE(contains(record, "type filter hook postrouting priority srcnat + 10;")) << record;
  EXPECT_TRUE(contains(record,
                       "ct direction original ct status snat meta l4proto udp update @out_map { "
                       "meta l4proto . ct original ip saddr . ct original proto-src timeout 5m : "
                       "ct reply ip daddr . ct reply proto-dst }"))
      << record;
  EXPECT_TRUE(contains(record,
                       "ct direction original ct status snat meta l4proto tcp update @in_map { "
                       "meta l4proto . ct reply proto-dst timeout 2h : ct original ip saddr . ct "
                       "original proto-src }"))
      << record;

  // Filtering: address-and-port-dependent, i.e. established flows only from the WAN.
  const std::string fwd = nft_chain(cli, "forward");
  EXPECT_TRUE(contains(fwd,
                       "type filter hook forward priority filter; policy accept;\n\t\tct "
                       "state established,related accept\n\t\tiifname \"wan\" drop\n"))
      << fwd;
  EXPECT_FALSE(contains(fwd, "ct status dnat accept")) << fwd;
  // No hairpin rules.
  EXPECT_FALSE(contains(cli, "br-lan")) << cli;
}

TEST_F(NftRulesetTest, CorporateHasNoOutMapAndPicksRandomPorts) {
  require_nft();
  apply(rules_for(Nat::Corporate, Firewall::None));
  const std::vector<SetInfo> s = sets();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].name, "in_map");

  const std::string cli = nft_ruleset();
  EXPECT_FALSE(contains(cli, "out_map")) << cli;
  const std::string post = nft_chain(cli, "postrouting");
  EXPECT_TRUE(contains(post, "oifname \"wan\" meta l4proto udp masquerade random\n")) << post;
  EXPECT_TRUE(contains(post, "oifname \"wan\" meta l4proto tcp masquerade random\n")) << post;
  // Corporate timeouts: udp_stream 120 s, tcp_established 3600 s.
  const std::string record = nft_chain(cli, "record");
  EXPECT_TRUE(contains(record,
                       "meta l4proto udp update @in_map { meta l4proto . ct reply "
                       "proto-dst timeout 2m :"))
      << record;
  EXPECT_TRUE(contains(record,
                       "meta l4proto tcp update @in_map { meta l4proto . ct reply "
                       "proto-dst timeout 1h :"))
      << record;
  EXPECT_TRUE(contains(nft_chain(cli, "forward"), "iifname \"wan\" drop\n")) << cli;
  EXPECT_TRUE(contains(list(), "[ masq flags 0x4 ]"));
}

TEST_F(NftRulesetTest, CloudNatIsRandomAndCgnatIsEndpointIndependentAndOpen) {
  require_nft();
  apply(rules_for(Nat::CloudNat, Firewall::None));
  std::string cli = nft_ruleset();
  EXPECT_TRUE(contains(cli, "meta l4proto udp masquerade random\n")) << cli;
  EXPECT_TRUE(contains(cli, "timeout 5m50s")) << cli;  // udp_stream 350 s
  EXPECT_FALSE(contains(cli, "out_map")) << cli;

  apply(rules_for(Nat::Cgnat, Firewall::None));
  cli = nft_ruleset();
  EXPECT_TRUE(contains(cli, "map out_map {")) << cli;
  EXPECT_TRUE(contains(cli, "snat ip to meta l4proto . ip saddr . udp sport map @out_map\n"))
      << cli;
  // Endpoint-independent filtering: any new flow that in_map translated may enter.
  const std::string fwd = nft_chain(cli, "forward");
  EXPECT_TRUE(contains(fwd,
                       "iifname \"wan\" ct state new ct status dnat accept\n\t\tiifname "
                       "\"wan\" drop\n"))
      << fwd;
  EXPECT_FALSE(contains(cli, "br-lan")) << cli;  // no hairpin
}

TEST_F(NftRulesetTest, FullConeHairpinsLanFlowsToTheWanAddress) {
  require_nft();
  apply(rules_for(Nat::FullCone, Firewall::None));
  const std::string cli = nft_ruleset();
  // Inbound translation also for LAN hosts addressing the WAN IP: no iifname match.
  const std::string pre = nft_chain(cli, "prerouting");
  EXPECT_EQ(count(pre, "\t\tip daddr 203.0.113.2 dnat ip to meta l4proto . "), 2u) << pre;
  EXPECT_FALSE(contains(pre, "iifname")) << pre;
  // Hairpinned flows (from the LAN prefix, back out to the LAN, destination-translated) leave
  // with the sender's own mapping, else with the WAN address and the port kept.
  const std::string post = nft_chain(cli, "postrouting");
  for (const char* rule : {
           "oifname \"br-lan\" ip saddr 10.0.0.0/24 ct status dnat snat ip to meta l4proto . ip "
           "saddr . udp sport map @out_map\n",
           "oifname \"br-lan\" ip saddr 10.0.0.0/24 ct status dnat meta l4proto udp snat to "
           "203.0.113.2\n",
           "oifname \"br-lan\" ip saddr 10.0.0.0/24 ct status dnat snat ip to meta l4proto . ip "
           "saddr . tcp sport map @out_map\n",
           "oifname \"br-lan\" ip saddr 10.0.0.0/24 ct status dnat meta l4proto tcp snat to "
           "203.0.113.2\n",
       }) {
    EXPECT_TRUE(contains(post, rule)) << rule << " missing in\n" << post;
  }
  // Unsolicited inbound flows keep their real source: nothing matches on traffic from the WAN.
  EXPECT_FALSE(contains(post, "iifname")) << post;
  const std::string fwd = nft_chain(cli, "forward");
  EXPECT_TRUE(contains(fwd,
                       "\t\tct state established,related accept\n\t\tiifname \"wan\" ct "
                       "state new ct status dnat accept\n\t\tiifname \"wan\" drop\n"))
      << fwd;
}

TEST_F(NftRulesetTest, HairpinRulesExistOnlyWithHairpinOn) {
  require_nft();
  NatConfig config = NatConfig::preset(Nat::Home);
  apply(rules_with(config, std::nullopt));
  std::string cli = nft_ruleset();
  EXPECT_FALSE(contains(cli, "br-lan")) << cli;
  EXPECT_EQ(count(nft_chain(cli, "prerouting"), "iifname \"wan\""), 2u) << cli;

  apply(rules_with(config.with_hairpin(), std::nullopt));
  cli = nft_ruleset();
  EXPECT_EQ(count(nft_chain(cli, "prerouting"), "iifname"), 0u) << cli;
  // Two per protocol: reuse the sender's mapping, else the WAN address.
  EXPECT_EQ(count(nft_chain(cli, "postrouting"), "oifname \"br-lan\" ip saddr 10.0.0.0/24"), 4u)
      << cli;
  // Hairpinned flows are not filtered, so forward is the same as without hairpin.
  EXPECT_FALSE(contains(nft_chain(cli, "forward"), "br-lan")) << cli;
}

TEST_F(NftRulesetTest, HairpinWithRandomPortsTranslatesToRandomPorts) {
  require_nft();
  apply(rules_with(NatConfig::preset(Nat::Corporate).with_hairpin(), std::nullopt));
  const std::string post = nft_chain(nft_ruleset(), "postrouting");
  // Address-and-port-dependent mapping has no out_map to reuse: only the WAN-address rules.
  EXPECT_EQ(count(post, "oifname \"br-lan\""), 2u) << post;
  EXPECT_TRUE(contains(post, "ct status dnat meta l4proto udp snat to 203.0.113.2 random\n"))
      << post;
  EXPECT_TRUE(contains(post, "ct status dnat meta l4proto tcp snat to 203.0.113.2 random\n"))
      << post;
}

TEST_F(NftRulesetTest, SequentialPortsComeFromACounterInNetworkOrder) {
  apply(rules_with(NatConfig{}.with_ports(PortAssignment::Sequential), std::nullopt));
  const std::string text = list();
  // The WAN address as a constant, the counter next to it, byte-swapped into a port.
  EXPECT_EQ(count(text,
                  "      [ immediate reg 1 0x027100cb ]\n"
                  "      [ numgen reg 9 = inc mod 64512 offset 1024 ]\n"
                  "      [ byteorder reg 9 = hton(reg 9, 2, 2) ]\n"
                  "      [ nat snat ip addr_min reg 1 addr_max reg 1 proto_min reg 9 "
                  "proto_max reg 9 flags 0x3 ]\n"),
            2u)
      << text;
  EXPECT_FALSE(contains(text, "[ masq flags 0x4 ]")) << text;
  if (find_nft() != nullptr) {
    const std::string post = nft_chain(nft_ruleset(), "postrouting");
    EXPECT_TRUE(contains(post,
                         "meta l4proto udp snat to 203.0.113.2:numgen inc mod 64512 offset "
                         "1024\n"))
        << post;
  }
}

TEST_F(NftRulesetTest, AddressDependentFilteringKeepsAPeersSet) {
  require_nft();
  apply(rules_with(NatConfig{}.with_filtering(NatFiltering::AddressDependent), std::nullopt));
  const std::vector<SetInfo> s = sets();
  const SetInfo* peers = find_set(s, "peers");
  ASSERT_NE(peers, nullptr);
  EXPECT_EQ(peers->key_len, 16u);
  EXPECT_EQ(peers->data_len, 0u);
  EXPECT_EQ(peers->flags & (kDynamicTimeout | NFT_SET_MAP), kDynamicTimeout);

  const std::string cli = nft_ruleset();
  const std::string set = nft_block(cli, "set peers");
  EXPECT_TRUE(contains(set, "\t\ttype inet_proto . ipv4_addr . inet_service . ipv4_addr\n")) << cli;
  EXPECT_TRUE(contains(set, "\t\tflags dynamic,timeout\n")) << cli;
  EXPECT_TRUE(contains(nft_chain(cli, "record"),
                       "meta l4proto udp update @peers { meta l4proto . ct original ip saddr . "
                       "ct original proto-src . ct original ip daddr timeout 5m }"))
      << cli;
  EXPECT_TRUE(contains(nft_chain(cli, "forward"),
                       "iifname \"wan\" ct state new ct status dnat meta l4proto . ip daddr . th "
                       "dport . ip saddr @peers accept\n\t\tiifname \"wan\" drop\n"))
      << cli;
}

TEST_F(NftRulesetTest, AddressDependentMappingKeysOutMapByDestination) {
  require_nft();
  apply(rules_with(NatConfig{}.with_mapping(NatMapping::AddressDependent), std::nullopt));
  const SetInfo* out_map = nullptr;
  const std::vector<SetInfo> s = sets();
  out_map = find_set(s, "out_map");
  ASSERT_NE(out_map, nullptr);
  EXPECT_EQ(out_map->key_len, 16u);
  EXPECT_EQ(find_set(s, "peers"), nullptr);
  const std::string cli = nft_ruleset();
  EXPECT_TRUE(contains(cli,
                       "type inet_proto . ipv4_addr . inet_service . ipv4_addr : ipv4_addr "
                       ". inet_service\n"))
      << cli;
  EXPECT_TRUE(contains(nft_chain(cli, "postrouting"),
                       "oifname \"wan\" snat ip to meta l4proto . ip saddr . udp sport . ip daddr "
                       "map @out_map\n"))
      << cli;
}

TEST_F(NftRulesetTest, MappingLifetimesFollowConfiguredTimeouts) {
  apply(rules_with(
      NatConfig{}.with_udp_timeouts(seconds(5), seconds(77)).with_tcp_timeout(seconds(90)),
      std::nullopt));
  const std::string text = list();
  EXPECT_EQ(count(text, "timeout 77000ms ]"), 2u) << text;  // out_map and in_map, UDP
  EXPECT_EQ(count(text, "timeout 90000ms ]"), 2u) << text;  // the same for TCP
  EXPECT_FALSE(contains(text, "timeout 5000ms")) << text;   // `udp` is conntrack's business
}

TEST_F(NftRulesetTest, NatWithoutWanIpv4InstallsNoNatTable) {
  RouterRules rules = rules_for(Nat::Home, Firewall::BlockInbound);
  rules.wan_ipv4.reset();
  apply(rules);
  const std::string text = list();
  EXPECT_FALSE(contains(text, "pb_nat")) << text;
  EXPECT_TRUE(contains(text, "table inet pb_fw\n")) << text;
  EXPECT_TRUE(sets().empty());

  rules.firewall.reset();
  apply(rules);
  EXPECT_EQ(list(), "(no nftables tables)\n");
}

// ---------------------------------------------------------------------------------------------
// Firewalls.

TEST_F(NftRulesetTest, CorporateFirewallChecksInPolicyOrder) {
  require_nft();
  apply(rules_for(Nat::Corporate, Firewall::Corporate));
  const std::string cli = nft_ruleset();
  const std::size_t fw = cli.find("table inet pb_fw {");
  ASSERT_NE(fw, std::string::npos) << cli;
  const std::string chain = nft_chain(cli.substr(fw), "forward");
  EXPECT_TRUE(contains(chain,
                       "type filter hook forward priority filter + 10; policy accept;\n"
                       "\t\tct state established,related accept\n"
                       "\t\tiifname \"wan\" drop\n"
                       "\t\tiifname \"br-lan\" ct state new tcp dport 80 accept\n"
                       "\t\tiifname \"br-lan\" ct state new tcp dport 443 accept\n"
                       "\t\tiifname \"br-lan\" ct state new meta l4proto tcp drop\n"
                       "\t\tiifname \"br-lan\" ct state new udp dport 53 accept\n"
                       "\t\tiifname \"br-lan\" ct state new meta l4proto udp drop"))
      << chain;
  const std::string text = list();
  EXPECT_TRUE(contains(text,
                       "table inet pb_fw\n  chain forward (type filter hook forward prio 10 "
                       "policy accept)\n"))
      << text;
}

TEST_F(NftRulesetTest, CaptivePortalOnlyRestrictsUdp) {
  require_nft();
  apply(rules_for(Nat::None, Firewall::CaptivePortal));
  const std::string cli = nft_ruleset();
  EXPECT_FALSE(contains(cli, "pb_nat")) << cli;
  EXPECT_TRUE(contains(cli, "iifname \"wan\" drop\n")) << cli;
  EXPECT_TRUE(contains(cli, "iifname \"br-lan\" ct state new udp dport 53 accept\n")) << cli;
  EXPECT_TRUE(contains(cli, "iifname \"br-lan\" ct state new meta l4proto udp drop\n")) << cli;
  EXPECT_FALSE(contains(cli, "tcp")) << cli;
}

TEST_F(NftRulesetTest, BlockInboundHasNoPortPolicy) {
  require_nft();
  apply(rules_for(Nat::None, Firewall::BlockInbound));
  const std::string cli = nft_ruleset();
  EXPECT_TRUE(contains(cli, "table inet pb_fw")) << cli;
  EXPECT_TRUE(contains(cli, "\t\tct state established,related accept\n\t\tiifname \"wan\" drop\n"))
      << cli;
  EXPECT_FALSE(contains(cli, "br-lan")) << cli;
}

TEST_F(NftRulesetTest, PortPoliciesOnlyJudgeFlowsFromTheLan) {
  require_nft();
  // Without block_inbound, a new flow from outside to a LAN server passes on any port.
  apply(rules_with(std::nullopt, FirewallConfig::builder().allow_tcp({443}).block_udp().build()));
  const std::string chain = nft_chain(nft_ruleset(), "forward");
  EXPECT_TRUE(contains(chain,
                       "\t\tct state established,related accept\n"
                       "\t\tiifname \"br-lan\" ct state new tcp dport 443 accept\n"
                       "\t\tiifname \"br-lan\" ct state new meta l4proto tcp drop\n"
                       "\t\tiifname \"br-lan\" ct state new meta l4proto udp drop\n"))
      << chain;
  EXPECT_EQ(count(chain, "ct state new"), 3u) << chain;
  EXPECT_FALSE(contains(chain, "wan")) << chain;
}

TEST_F(NftRulesetTest, CustomFirewallRulesComeFirstWithPrefixesRangesAndIcmp) {
  const FirewallConfig fw =
      FirewallConfig::builder()
          .block_inbound()
          .allow(
              FirewallRule::inbound(Protocol::Tcp).to_ports({{8000, 8100}}).remote("198.18.0.0/15"))
          .deny(FirewallRule::outbound(Protocol::Icmp).remote("2001:db8::/33"))
          .deny(FirewallRule::outbound(Protocol::Icmp))
          .build();
  apply(rules_with(std::nullopt, fw));

  // Prefixes that end inside a byte are masked: 198.18.0.0/15 and 2001:db8::/33.
  const std::string text = list();
  EXPECT_TRUE(contains(text,
                       "[ bitwise reg 1 = ( reg 1 & 0x0000feff ) ^ 0x00000000 ]\n"
                       "      [ cmp eq reg 1 0x000012c6 ]\n"))
      << text;
  EXPECT_TRUE(contains(text, "[ bitwise reg 1 = ( reg 1 & 0xffffffff 0x00000080")) << text;
  EXPECT_TRUE(contains(text, "[ cmp eq reg 1 0xb80d0120 0x00000000")) << text;

  if (find_nft() == nullptr) return;
  const std::string chain = nft_chain(nft_ruleset(), "forward");
  // In order: established, the explicit rules, then block_inbound.
  std::vector<std::size_t> at;
  for (const char* rule : {
           "\t\tct state established,related accept\n",
           "\t\tiifname \"wan\" ct state new ",  // the inbound allow with its prefix
           "tcp dport 8000-8100 accept\n",
           // An IPv6 remote gets only the ICMPv6 rule.
           "\t\tiifname \"br-lan\" ct state new ",
           "meta l4proto ipv6-icmp drop\n",
           // Without a remote, ICMP means both families' ICMP.
           "\t\tiifname \"br-lan\" ct state new meta l4proto icmp drop\n"
           "\t\tiifname \"br-lan\" ct state new meta l4proto ipv6-icmp drop\n"
           "\t\tiifname \"wan\" drop\n",
       }) {
    at.push_back(chain.find(rule, at.empty() ? 0 : at.back()));
    EXPECT_NE(at.back(), std::string::npos) << rule << " missing in order in\n" << chain;
  }
  EXPECT_EQ(count(chain, "icmp"), 3u) << chain;
}

TEST_F(NftRulesetTest, FirewallThatAllowsEverythingInstallsNoTable) {
  apply(rules_with(std::nullopt, FirewallConfig::builder().build()));
  EXPECT_EQ(list(), "(no nftables tables)\n");
}

// ---------------------------------------------------------------------------------------------
// Traffic through the NAT rules, and flushing the state it leaves.

TEST_F(NftRulesetTest, OutboundFlowsRecordTheirMappingWithTheConfiguredLifetimes) {
  add_links();
  apply(rules_with(NatConfig::preset(Nat::Home)
                       .with_udp_timeouts(seconds(30), seconds(77))
                       .with_tcp_timeout(seconds(90)),
                   std::nullopt));
  send(SOCK_DGRAM, kLanIp1, 40000, "198.51.100.7", 9);
  send(SOCK_STREAM, kLanIp1, 40001, "198.51.100.7", 9);

  const std::vector<Element> out = elements(kNatOutMap);
  ASSERT_EQ(out.size(), 2u);
  for (const Element& e : out) {
    ASSERT_EQ(e.key.size(), 12u);
    ASSERT_EQ(e.data.size(), 8u);
    const bool udp = proto_at(e.key, 0) == IPPROTO_UDP;
    EXPECT_EQ(ip_at(e.key, 4), kLanIp1);
    EXPECT_EQ(port_at(e.key, 8), udp ? 40000 : 40001);
    // Ports are kept when free.
    EXPECT_EQ(ip_at(e.data, 0), kWanIp);
    EXPECT_EQ(port_at(e.data, 4), udp ? 40000 : 40001);
    EXPECT_EQ(e.timeout_ms, udp ? 77000u : 90000u);
  }
  const std::vector<Element> in = elements(kNatInMap);
  ASSERT_EQ(in.size(), 2u);
  for (const Element& e : in) {
    const bool udp = proto_at(e.key, 0) == IPPROTO_UDP;
    EXPECT_EQ(port_at(e.key, 4), udp ? 40000 : 40001);
    EXPECT_EQ(ip_at(e.data, 0), kLanIp1);
    EXPECT_EQ(port_at(e.data, 4), udp ? 40000 : 40001);
  }

  if (find_nft() != nullptr) {
    const std::string map = nft_cli("list map ip pb_nat out_map");
    EXPECT_TRUE(contains(map, "udp . 10.0.0.1 . 40000 timeout 1m17s expires ")) << map;
    EXPECT_TRUE(contains(map, " : 203.0.113.2 . 40000")) << map;
    EXPECT_TRUE(contains(map, "tcp . 10.0.0.1 . 40001 timeout 1m30s expires ")) << map;
    const std::string in_text = nft_cli("list map ip pb_nat in_map");
    EXPECT_TRUE(contains(in_text, "udp . 40000 timeout 1m17s expires ")) << in_text;
    EXPECT_TRUE(contains(in_text, " : 10.0.0.1 . 40000")) << in_text;
  }
}

TEST_F(NftRulesetTest, EndpointKeepsItsMappingAndATakenPortIsNotReused) {
  add_links();
  apply(rules_for(Nat::Home, Firewall::None));
  send(SOCK_DGRAM, kLanIp1, 40000, "198.51.100.7", 9);
  // Same internal port from another host, to another destination: the 5-tuple would be free,
  // but 40000 already is an external port, so the new mapping must get another one.
  send(SOCK_DGRAM, kLanIp2, 40000, "198.51.100.8", 9);
  auto external_port_of = [&](const char* ip) -> int {
    for (const Element& e : elements(kNatOutMap)) {
      if (ip_at(e.key, 4) == ip && port_at(e.key, 8) == 40000) return port_at(e.data, 4);
    }
    return -1;
  };
  ASSERT_EQ(external_port_of(kLanIp1), 40000);
  const int second = external_port_of(kLanIp2);
  // A random port (1 in 64512 runs picks 40000 by chance; nothing else can make it equal).
  ASSERT_GE(second, 1024);
  EXPECT_NE(second, 40000);

  // Endpoint-independent: a new destination for the same internal endpoint gets its mapping.
  send(SOCK_DGRAM, kLanIp2, 40000, "198.51.100.9", 9);
  const std::vector<Element> in = elements(kNatInMap);
  EXPECT_EQ(in.size(), 2u);
  EXPECT_EQ(external_port_of(kLanIp2), second);
  EXPECT_EQ(elements(kNatOutMap).size(), 2u);
}

TEST_F(NftRulesetTest, SequentialPortsAreConsecutiveFromTheConfiguredStart) {
  add_links();
  apply(rules_with(NatConfig{}.with_ports(PortAssignment::Sequential), std::nullopt));
  send(SOCK_DGRAM, kLanIp1, 40000, "198.51.100.7", 9);
  send(SOCK_DGRAM, kLanIp1, 40001, "198.51.100.7", 9);
  std::vector<int> ports;
  for (const Element& e : elements(kNatInMap)) ports.push_back(port_at(e.key, 4));
  ASSERT_EQ(ports.size(), 2u);
  std::sort(ports.begin(), ports.end());
  // A counter read without the byteorder step would give 4 and 260 (1024 and 1025 with their
  // bytes swapped).
  EXPECT_GE(ports[0], 1024);
  EXPECT_EQ(ports[1], ports[0] + 1);
}

TEST_F(NftRulesetTest, AddressDependentSetsKeyTheDestinationAddress) {
  add_links();
  apply(rules_with(NatConfig{}
                       .with_mapping(NatMapping::AddressDependent)
                       .with_filtering(NatFiltering::AddressDependent),
                   std::nullopt));
  send(SOCK_DGRAM, kLanIp1, 40000, "198.51.100.7", 9);
  const std::vector<Element> out = elements(kNatOutMap);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].key.size(), 16u);
  EXPECT_EQ(ip_at(out[0].key, 12), "198.51.100.7");
  EXPECT_EQ(ip_at(out[0].data, 0), kWanIp);
  const std::vector<Element> peers = elements(kNatPeers);
  ASSERT_EQ(peers.size(), 1u);
  EXPECT_EQ(proto_at(peers[0].key, 0), IPPROTO_UDP);
  EXPECT_EQ(ip_at(peers[0].key, 4), kLanIp1);
  EXPECT_EQ(port_at(peers[0].key, 8), 40000);
  EXPECT_EQ(ip_at(peers[0].key, 12), "198.51.100.7");
  EXPECT_TRUE(peers[0].data.empty());
  if (find_nft() != nullptr) {
    const std::string text = nft_cli("list set ip pb_nat peers");
    EXPECT_TRUE(contains(text, "udp . 10.0.0.1 . 40000 . 198.51.100.7 timeout 5m expires")) << text;
  }
}

TEST_F(NftRulesetTest, FlushNatSetsRemovesEveryMappingButKeepsTheRules) {
  add_links();
  const RouterRules rules =
      rules_with(NatConfig{}.with_filtering(NatFiltering::AddressDependent), std::nullopt);
  apply(rules);
  send(SOCK_DGRAM, kLanIp1, 40000, "198.51.100.7", 9);
  send(SOCK_STREAM, kLanIp2, 40001, "198.51.100.8", 9);
  ASSERT_EQ(elements(kNatOutMap).size(), 2u);
  ASSERT_EQ(elements(kNatInMap).size(), 2u);
  ASSERT_EQ(elements(kNatPeers).size(), 2u);
  const std::string before = list();

  worker_->call([&] { nft_->flush_nat_sets(rules); });
  EXPECT_TRUE(elements(kNatOutMap).empty());
  EXPECT_TRUE(elements(kNatInMap).empty());
  EXPECT_TRUE(elements(kNatPeers).empty());
  EXPECT_EQ(list(), before);
  if (find_nft() != nullptr) {
    const std::string text = nft_cli("list map ip pb_nat out_map");
    EXPECT_FALSE(contains(text, "elements")) << text;
  }
  // Flushing empty sets is fine too.
  EXPECT_NO_THROW(worker_->call([&] { nft_->flush_nat_sets(rules); }));
}

TEST_F(NftRulesetTest, FlushNatSetsWithoutNatTouchesNothing) {
  apply(rules_for(Nat::None, Firewall::BlockInbound));
  const std::string before = list();
  EXPECT_NO_THROW(
      worker_->call([&] { nft_->flush_nat_sets(rules_for(Nat::None, Firewall::None)); }));
  EXPECT_EQ(list(), before);
}

// ---------------------------------------------------------------------------------------------
// Replacing rulesets atomically, and errors.

TEST_F(NftRulesetTest, InstallOnAFreshNamespaceMatchesApply) {
  worker_->call([&] { nft_->install(rules_for(Nat::Home, Firewall::Corporate)); });
  std::string installed = list();
  apply(rules_for(Nat::Home, Firewall::Corporate));
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
  EXPECT_TRUE(contains(installed, "table ip pb_nat\n")) << installed;
  EXPECT_TRUE(contains(installed, "table inet pb_fw\n")) << installed;
}

TEST_F(NftRulesetTest, ApplyTwiceReplacesInsteadOfAppending) {
  require_nft();
  apply(rules_for(Nat::Home, Firewall::Corporate));
  const std::string first = nft_ruleset();
  apply(rules_for(Nat::Home, Firewall::Corporate));
  const std::string second = nft_ruleset();
  EXPECT_EQ(first, second);
  EXPECT_EQ(count(second, "table ip pb_nat"), 1u) << second;
  EXPECT_EQ(count(second, "map out_map {"), 1u) << second;
  EXPECT_EQ(count(second, "oifname \"wan\" masquerade\n"), 1u) << second;
  EXPECT_EQ(count(second, "tcp dport 443 accept"), 1u) << second;

  // Changing the preset replaces the rules and sets too.
  apply(rules_for(Nat::Corporate, Firewall::Corporate));
  const std::string third = nft_ruleset();
  EXPECT_EQ(count(third, "out_map"), 0u) << third;
  EXPECT_EQ(count(third, "map in_map {"), 1u) << third;
  EXPECT_EQ(count(third, "masquerade random"), 2u) << third;
  EXPECT_EQ(count(third, "oifname \"wan\" masquerade\n"), 1u) << third;
  EXPECT_EQ(sets().size(), 1u);
}

TEST_F(NftRulesetTest, SwitchingToNoneRemovesOurTables) {
  apply(rules_for(Nat::Home, Firewall::BlockInbound));
  ASSERT_TRUE(contains(list(), "pb_nat"));
  apply(rules_for(Nat::None, Firewall::None));
  EXPECT_EQ(list(), "(no nftables tables)\n");
  EXPECT_TRUE(sets().empty());
  if (find_nft() != nullptr) {
    EXPECT_EQ(nft_ruleset(), "");
  }
}

TEST_F(NftRulesetTest, ClearRemovesOnlyOurTables) {
  require_nft();
  ASSERT_EQ(nft_cli("add table ip other"), "");
  ASSERT_EQ(nft_cli("add chain ip other regular"), "");
  ASSERT_EQ(nft_cli("add rule ip other regular counter"), "");
  apply(rules_for(Nat::Corporate, Firewall::Corporate));
  worker_->call([&] { nft_->clear(); });
  std::string cli = nft_ruleset();
  EXPECT_FALSE(contains(cli, "pb_")) << cli;
  EXPECT_TRUE(contains(cli, "table ip other")) << cli;
  // Idempotent, and a later apply works again.
  worker_->call([&] { nft_->clear(); });
  apply(rules_for(Nat::Home, Firewall::None));
  cli = nft_ruleset();
  EXPECT_TRUE(contains(cli, "table ip pb_nat")) << cli;
  // Foreign tables survive apply as well, and list_ruleset() shows them too.
  EXPECT_TRUE(contains(cli, "table ip other")) << cli;
  const std::string text = list();
  EXPECT_TRUE(contains(text, "table ip other\n  chain regular\n    rule 1")) << text;
  EXPECT_TRUE(contains(text, "[ counter pkts 0 bytes 0 ]")) << text;
}

TEST_F(NftRulesetTest, OverlongWanNameIsRejectedUpFrontAndKeepsRuleset) {
  apply(rules_for(Nat::Home, Firewall::None));
  const std::string before = list();

  RouterRules bad = rules_for(Nat::Corporate, Firewall::Corporate);
  bad.wan_ifname = "wan-name-too-long";  // 17 bytes, IFNAMSIZ allows 15
  try {
    apply(bad);
    FAIL() << "apply accepted an overlong interface name";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_EQ(e.culprit(), "r");
    EXPECT_TRUE(contains(e.what(), "'wan-name-too-long'")) << e.what();
    EXPECT_TRUE(contains(e.what(), "router 'r'")) << e.what();
  }
  EXPECT_EQ(list(), before);
}

TEST_F(NftRulesetTest, EmptyInterfaceNamesAreRejectedWhenAnyTableIsPlanned) {
  RouterRules no_wan = rules_for(Nat::Home, Firewall::None);
  no_wan.wan_ifname.clear();
  try {
    apply(no_wan);
    FAIL() << "apply accepted an empty WAN name";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_EQ(e.culprit(), "r");
    EXPECT_TRUE(contains(e.what(), "router 'r' need a WAN interface name")) << e.what();
  }
  RouterRules no_lan = rules_for(Nat::None, Firewall::Corporate);
  no_lan.lan_ifname.clear();
  try {
    apply(no_lan);
    FAIL() << "apply accepted an empty LAN name";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_TRUE(contains(e.what(), "router 'r' need a LAN interface name")) << e.what();
  }
  EXPECT_EQ(list(), "(no nftables tables)\n");
  // Rules that plan no table need no interface at all (removing everything).
  RouterRules nothing = rules_for(Nat::None, Firewall::None);
  nothing.wan_ifname.clear();
  nothing.lan_ifname.clear();
  EXPECT_NO_THROW(apply(nothing));
}

TEST_F(NftRulesetTest, KernelErrorNamesRouterAndMessageAndRollsBackTheWholeBatch) {
  require_nft();
  apply(rules_for(Nat::Home, Firewall::None));
  // Another socket owns `inet pb_fw`, so the kernel refuses our NEWTABLE for it with EPERM.
  // The batch replaces pb_nat first: that part must be rolled back too.
  worker_->call([&] { owned_.emplace(NFPROTO_INET, kFirewallTable); });
  const std::string before = nft_ruleset();
  ASSERT_TRUE(contains(before, "map out_map {")) << before;
  try {
    apply(rules_for(Nat::Corporate, Firewall::Corporate));
    FAIL() << "apply succeeded despite the foreign-owned table";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kKernel);
    EXPECT_EQ(e.sys_errno(), EPERM);
    EXPECT_EQ(e.culprit(), "r");
    EXPECT_TRUE(contains(e.what(), "nftables apply failed in router 'r' (table inet pb_fw)"))
        << e.what();
    EXPECT_TRUE(contains(e.what(), std::strerror(EPERM))) << e.what();
  }
  EXPECT_EQ(nft_ruleset(), before);
  EXPECT_EQ(sets().size(), 2u);

  // Once the owner is gone the same apply succeeds on the same socket.
  worker_->call([&] { owned_.reset(); });
  apply(rules_for(Nat::Corporate, Firewall::Corporate));
  const std::string after = nft_ruleset();
  EXPECT_FALSE(contains(after, "out_map")) << after;
  EXPECT_TRUE(contains(after, "tcp dport 443 accept")) << after;
}

TEST_F(NftRulesetTest, KernelErrorOnTheNatTableKeepsThePreviousFirewall) {
  apply(rules_for(Nat::None, Firewall::Corporate));
  const std::string before = list();
  worker_->call([&] { owned_.emplace(NFPROTO_IPV4, kNatTable); });
  try {
    apply(rules_for(Nat::Home, Firewall::BlockInbound));
    FAIL() << "apply succeeded despite the foreign-owned table";
  } catch (const Error& e) {
    EXPECT_EQ(e.sys_errno(), EPERM);
    EXPECT_TRUE(contains(e.what(), "(table ip pb_nat)")) << e.what();
  }
  // Still the Corporate port policy; the owned (empty) pb_nat is the other socket's.
  const std::string text = list();
  EXPECT_TRUE(contains(text, "table inet pb_fw\n")) << text;
  EXPECT_EQ(count(text, "[ cmp eq reg 1 0x0000bb01 ]"), 1u) << text;  // tcp dport 443
  EXPECT_FALSE(contains(text, "chain postrouting")) << text;
}

TEST_F(NftRulesetTest, MovedSocketKeepsWorking) {
  worker_->call([&] {
    NftSocket moved(std::move(*nft_));
    NftSocket assigned = NftSocket::open_in_current_netns("r");
    assigned = std::move(moved);
    assigned.apply(rules_for(Nat::Home, Firewall::None));
    nft_.emplace(std::move(assigned));
  });
  EXPECT_TRUE(contains(list(), "pb_nat"));
}

}  // namespace
}  // namespace patchbay::internal
