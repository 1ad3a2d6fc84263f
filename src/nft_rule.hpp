// Our nftables tables as plain data, and a builder that writes rule expressions with libnftnl.
//
// A ruleset part (NAT, firewall, IPv6 NAT) plans TableSpecs; NftSocket renders them into one
// netlink batch. Rules are callables over a RuleBuilder so each part can use any expression:
//
//   chain.rules.push_back([](RuleBuilder& r) {
//     r.iifname("wan").ct_state(kCtNew).ct_status(IPS_DST_NAT).accept();
//   });
//
// Registers: keys are loaded into the 32-bit registers from NFT_REG_1 on, map data from
// NFT_REG_2 on, so a key next to map data may be at most 16 bytes (load() refuses longer ones).
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

struct nftnl_rule;

namespace patchbay::internal {

// Components of set keys and values, with the type id nft uses to print them.
enum class NftType : std::uint8_t {
  kInetProto,    // 1 byte, padded to 4
  kIpv4Addr,     // 4 bytes
  kIpv6Addr,     // 16 bytes
  kInetService,  // 2 bytes (network order), padded to 4
};

struct NftSetSpec {
  std::string name;
  std::vector<NftType> key{};
  std::vector<NftType> data{};  // empty: a set, else a map
  // Maximum number of elements; 0: unbounded. The kernel also sizes the initial hash table from
  // it, and a 65535-element table costs ~1 ms to allocate and to validate map lookups against,
  // so our dynamic sets start small and grow (their elements expire with conntrack's flows).
  std::uint32_t size = 0;
};

class RuleBuilder;
using RuleFn = std::function<void(RuleBuilder&)>;

struct NftChainSpec {
  std::string name;
  const char* type;  // "nat" or "filter"
  std::uint32_t hook;
  std::int32_t priority;
  std::vector<RuleFn> rules{};
};

struct NftTableSpec {
  std::uint16_t family;
  const char* name;
  bool wanted = false;  // false: the table is only deleted
  std::vector<NftSetSpec> sets{};
  std::vector<NftChainSpec> chains{};
};

// Hook priorities under the names nft gives them (NF_IP_PRI_* of <linux/netfilter_ipv4.h>).
inline constexpr std::int32_t kPrioDstNat = -100;  // "dstnat"
inline constexpr std::int32_t kPrioFilter = 0;     // "filter"
inline constexpr std::int32_t kPrioSrcNat = 100;   // "srcnat"

// A value loaded into a register: a packet field, a conntrack field or a constant.
struct NftField {
  enum class Kind {
    kL4Proto,          // meta l4proto
    kIpSaddr,          // ip saddr / ip6 saddr (by the table's family)
    kIpDaddr,          // ip daddr / ip6 daddr
    kThSport,          // transport header bytes 0..1
    kThDport,          // transport header bytes 2..3
    kCtOrigSaddr,      // ct original saddr
    kCtOrigProtoSrc,   // ct original proto-src
    kCtOrigDaddr,      // ct original daddr
    kCtReplyDaddr,     // ct reply daddr (the address after source NAT)
    kCtReplyProtoDst,  // ct reply proto-dst (the port after source NAT)
    kConstant,         // `bytes`
  };
  Kind kind;
  std::vector<std::uint8_t> bytes;  // kConstant only

  static NftField of(Kind k) { return {k, {}}; }
  static NftField constant(std::vector<std::uint8_t> b) { return {Kind::kConstant, std::move(b)}; }
};

// Bits of `ct state` (NF_CT_STATE_BIT of <linux/netfilter/nf_conntrack_common.h>).
inline constexpr std::uint32_t kCtInvalid = 1u;
inline constexpr std::uint32_t kCtEstablished = 1u << 1;
inline constexpr std::uint32_t kCtRelated = 1u << 2;
inline constexpr std::uint32_t kCtNew = 1u << 3;

class RuleBuilder {
 public:
  enum class Reg { kKey, kData };

  // `family` is the table's (NFPROTO_*): it decides what kIpSaddr/kIpDaddr load.
  RuleBuilder(nftnl_rule* rule, std::uint16_t family) : rule_(rule), family_(family) {}

  // --- matches (each one must hold for the rule to go on)
  RuleBuilder& iifname(const std::string& name);
  RuleBuilder& oifname(const std::string& name);
  RuleBuilder& ct_state(std::uint32_t any_of);   // kCt* bits
  RuleBuilder& ct_status(std::uint32_t any_of);  // IPS_* bits
  RuleBuilder& ct_direction_original();
  RuleBuilder& nfproto(std::uint8_t proto);  // for inet tables
  RuleBuilder& l4proto(std::uint8_t proto);
  RuleBuilder& dport_range(std::uint16_t first, std::uint16_t last);
  // ICMP / ICMPv6 type and code (the first two bytes of the transport header); pair it with
  // l4proto() so other protocols' ports never match.
  RuleBuilder& icmp_type_code(std::uint8_t type, std::uint8_t code);
  // Source/destination address inside `prefix` (address bytes in network order, v4 or v6).
  RuleBuilder& saddr_in(const std::vector<std::uint8_t>& prefix, unsigned prefix_len);
  RuleBuilder& daddr_in(const std::vector<std::uint8_t>& prefix, unsigned prefix_len);
  // The concatenation of `key` is an element of set `set`.
  RuleBuilder& in_set(const std::string& set, std::initializer_list<NftField> key);

  // --- loads for the actions below
  // Loads the concatenation into the key (NFT_REG_1...) or data (NFT_REG_2...) registers.
  RuleBuilder& load(Reg where, std::initializer_list<NftField> fields);
  // Looks the key registers up in map `map` and writes the value into the key registers
  // (addr at NFT_REG_1, port at the next 32-bit register). No element: the rule stops.
  RuleBuilder& map_lookup(const std::string& map);
  // Loads a per-rule counter: offset + (n++ mod modulus), as a network-order port, into the
  // data registers' second word (next to an address constant loaded with load()).
  RuleBuilder& sequential_port(std::uint32_t modulus, std::uint32_t offset);

  // --- actions
  // Adds/refreshes the element keyed by the key registers (value: the data registers, for maps)
  // with the given lifetime.
  RuleBuilder& update_set(const std::string& set, bool with_data, std::uint64_t timeout_ms);
  // NAT to the address in `reg` (and the port in the register after it, when `with_port`).
  RuleBuilder& nat(bool source, Reg reg, bool with_port, std::uint32_t flags = 0);
  // NAT of the whole prefix held in the key (min) and data (max) registers (NPTv6 style).
  RuleBuilder& nat_prefix(bool source);
  RuleBuilder& masquerade(std::uint32_t flags = 0);
  RuleBuilder& accept();
  RuleBuilder& drop();

 private:
  void compare_eq(const void* data, std::uint32_t len);
  void load_field(std::uint32_t reg32, const NftField& field);
  std::uint32_t field_len(const NftField& field) const;
  void address_in(bool source, const std::vector<std::uint8_t>& prefix, unsigned prefix_len);
  std::uint32_t load_concat(std::uint32_t first_reg32, std::initializer_list<NftField> fields);

  nftnl_rule* rule_;
  std::uint16_t family_;
  std::uint32_t key_end_ = 0;  // first 32-bit register after the loaded key
  bool data_loaded_ = false;
};

// nft's type id of a concatenation (for `nft list` to print elements), and its byte length in
// registers (each component padded to 4 bytes).
std::uint32_t nft_concat_type(const std::vector<NftType>& parts);
std::uint32_t nft_concat_len(const std::vector<NftType>& parts);

}  // namespace patchbay::internal
