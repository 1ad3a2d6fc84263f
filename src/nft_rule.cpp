#include "nft_rule.hpp"

#include <arpa/inet.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <net/if.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>

namespace patchbay::internal {
namespace {

// First 32-bit register of the key and data areas (NFT_REG_1 and NFT_REG_2 alias them).
constexpr std::uint32_t kKeyReg32 = NFT_REG32_00;
constexpr std::uint32_t kDataReg32 = NFT_REG32_04;

nftnl_expr* new_expr(nftnl_rule* rule, const char* name) {
  nftnl_expr* expr = nftnl_expr_alloc(name);
  if (!expr) throw std::bad_alloc();
  // The rule owns the expression from here on (nftnl_rule_add_expr cannot fail).
  nftnl_rule_add_expr(rule, expr);
  return expr;
}

std::uint32_t padded(std::uint32_t len) { return (len + 3) / 4 * 4; }

std::uint32_t type_len(NftType t) {
  switch (t) {
    case NftType::kInetProto:
      return 1;
    case NftType::kIpv4Addr:
      return 4;
    case NftType::kIpv6Addr:
      return 16;
    case NftType::kInetService:
      return 2;
  }
  return 4;
}

// nft's datatype ids (enum datatypes in nftables' datatype.h).
std::uint32_t type_id(NftType t) {
  switch (t) {
    case NftType::kInetProto:
      return 12;
    case NftType::kIpv4Addr:
      return 7;
    case NftType::kIpv6Addr:
      return 8;
    case NftType::kInetService:
      return 13;
  }
  return 0;
}

}  // namespace

std::uint32_t nft_concat_type(const std::vector<NftType>& parts) {
  constexpr std::uint32_t kTypeBits = 6;  // nft's TYPE_BITS
  std::uint32_t type = 0;
  for (NftType t : parts) type = (type << kTypeBits) | type_id(t);
  return type;
}

std::uint32_t nft_concat_len(const std::vector<NftType>& parts) {
  std::uint32_t len = 0;
  for (NftType t : parts) len += padded(type_len(t));
  return len;
}

void RuleBuilder::compare_eq(const void* data, std::uint32_t len) {
  nftnl_expr* e = new_expr(rule_, "cmp");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
  nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
}

// Like nft: compare the whole zero-padded IFNAMSIZ buffer, so "wan" matches exactly "wan" and
// not "wan0".
RuleBuilder& RuleBuilder::iifname(const std::string& name) {
  char buf[IFNAMSIZ] = {};
  std::memcpy(buf, name.data(), std::min(name.size(), sizeof buf - 1));
  nftnl_expr* e = new_expr(rule_, "meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, NFT_META_IIFNAME);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
  compare_eq(buf, sizeof buf);
  return *this;
}

RuleBuilder& RuleBuilder::oifname(const std::string& name) {
  char buf[IFNAMSIZ] = {};
  std::memcpy(buf, name.data(), std::min(name.size(), sizeof buf - 1));
  nftnl_expr* e = new_expr(rule_, "meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, NFT_META_OIFNAME);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
  compare_eq(buf, sizeof buf);
  return *this;
}

namespace {
// (reg & mask) != 0 for a host-order 32-bit conntrack field.
void any_bit_of(nftnl_rule* rule, std::uint32_t ct_key, std::uint32_t mask) {
  nftnl_expr* ct = new_expr(rule, "ct");
  nftnl_expr_set_u32(ct, NFTNL_EXPR_CT_KEY, ct_key);
  nftnl_expr_set_u32(ct, NFTNL_EXPR_CT_DREG, NFT_REG_1);
  std::uint32_t zero = 0;
  nftnl_expr* bw = new_expr(rule, "bitwise");
  nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
  nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
  nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_LEN, sizeof mask);
  nftnl_expr_set(bw, NFTNL_EXPR_BITWISE_MASK, &mask, sizeof mask);
  nftnl_expr_set(bw, NFTNL_EXPR_BITWISE_XOR, &zero, sizeof zero);
  nftnl_expr* cmp = new_expr(rule, "cmp");
  nftnl_expr_set_u32(cmp, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
  nftnl_expr_set_u32(cmp, NFTNL_EXPR_CMP_OP, NFT_CMP_NEQ);
  nftnl_expr_set(cmp, NFTNL_EXPR_CMP_DATA, &zero, sizeof zero);
}
}  // namespace

RuleBuilder& RuleBuilder::ct_state(std::uint32_t any_of) {
  any_bit_of(rule_, NFT_CT_STATE, any_of);
  return *this;
}

RuleBuilder& RuleBuilder::ct_status(std::uint32_t any_of) {
  any_bit_of(rule_, NFT_CT_STATUS, any_of);
  return *this;
}

RuleBuilder& RuleBuilder::ct_direction_original() {
  nftnl_expr* ct = new_expr(rule_, "ct");
  nftnl_expr_set_u32(ct, NFTNL_EXPR_CT_KEY, NFT_CT_DIRECTION);
  nftnl_expr_set_u32(ct, NFTNL_EXPR_CT_DREG, NFT_REG_1);
  std::uint8_t original = IP_CT_DIR_ORIGINAL;
  compare_eq(&original, sizeof original);
  return *this;
}

RuleBuilder& RuleBuilder::nfproto(std::uint8_t proto) {
  nftnl_expr* e = new_expr(rule_, "meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, NFT_META_NFPROTO);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
  compare_eq(&proto, sizeof proto);
  return *this;
}

RuleBuilder& RuleBuilder::l4proto(std::uint8_t proto) {
  nftnl_expr* e = new_expr(rule_, "meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, NFT_META_L4PROTO);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
  compare_eq(&proto, sizeof proto);
  return *this;
}

RuleBuilder& RuleBuilder::dport_range(std::uint16_t first, std::uint16_t last) {
  nftnl_expr* e = new_expr(rule_, "payload");
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, 2);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, sizeof(std::uint16_t));
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
  const std::uint16_t lo = htons(first);
  const std::uint16_t hi = htons(last);
  if (first == last) {
    compare_eq(&lo, sizeof lo);
    return *this;
  }
  // Ports are compared as network-order byte strings, which orders them numerically.
  nftnl_expr* ge = new_expr(rule_, "cmp");
  nftnl_expr_set_u32(ge, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
  nftnl_expr_set_u32(ge, NFTNL_EXPR_CMP_OP, NFT_CMP_GTE);
  nftnl_expr_set(ge, NFTNL_EXPR_CMP_DATA, &lo, sizeof lo);
  nftnl_expr* le = new_expr(rule_, "cmp");
  nftnl_expr_set_u32(le, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
  nftnl_expr_set_u32(le, NFTNL_EXPR_CMP_OP, NFT_CMP_LTE);
  nftnl_expr_set(le, NFTNL_EXPR_CMP_DATA, &hi, sizeof hi);
  return *this;
}

RuleBuilder& RuleBuilder::icmp_type_code(std::uint8_t type, std::uint8_t code) {
  nftnl_expr* e = new_expr(rule_, "payload");
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, 0);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, 2);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
  const std::uint8_t want[2] = {type, code};
  compare_eq(want, sizeof want);
  return *this;
}

void RuleBuilder::address_in(bool source, const std::vector<std::uint8_t>& prefix,
                             unsigned prefix_len) {
  const bool v6 = prefix.size() == 16;
  if (family_ == NFPROTO_INET) nfproto(v6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
  if (prefix_len == 0) return;
  const std::uint32_t offset = v6 ? (source ? 8 : 24) : (source ? 12 : 16);
  const std::uint32_t bytes = (prefix_len + 7) / 8;
  nftnl_expr* e = new_expr(rule_, "payload");
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, bytes);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
  std::vector<std::uint8_t> want(prefix.begin(), prefix.begin() + bytes);
  if (prefix_len % 8 != 0) {
    std::vector<std::uint8_t> mask(bytes, 0xff);
    mask.back() = static_cast<std::uint8_t>(0xff << (8 - prefix_len % 8));
    want.back() &= mask.back();
    std::vector<std::uint8_t> zero(bytes, 0);
    nftnl_expr* bw = new_expr(rule_, "bitwise");
    nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
    nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
    nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_LEN, bytes);
    nftnl_expr_set(bw, NFTNL_EXPR_BITWISE_MASK, mask.data(), bytes);
    nftnl_expr_set(bw, NFTNL_EXPR_BITWISE_XOR, zero.data(), bytes);
  }
  compare_eq(want.data(), bytes);
}

RuleBuilder& RuleBuilder::saddr_in(const std::vector<std::uint8_t>& prefix, unsigned prefix_len) {
  address_in(true, prefix, prefix_len);
  return *this;
}

RuleBuilder& RuleBuilder::daddr_in(const std::vector<std::uint8_t>& prefix, unsigned prefix_len) {
  address_in(false, prefix, prefix_len);
  return *this;
}

std::uint32_t RuleBuilder::field_len(const NftField& field) const {
  const bool v6 = family_ == NFPROTO_IPV6;
  switch (field.kind) {
    case NftField::Kind::kL4Proto:
      return 1;
    case NftField::Kind::kIpSaddr:
    case NftField::Kind::kIpDaddr:
    case NftField::Kind::kCtOrigSaddr:
    case NftField::Kind::kCtOrigDaddr:
    case NftField::Kind::kCtReplyDaddr:
      return v6 ? 16 : 4;
    case NftField::Kind::kThSport:
    case NftField::Kind::kThDport:
    case NftField::Kind::kCtOrigProtoSrc:
    case NftField::Kind::kCtReplyProtoDst:
      return 2;
    case NftField::Kind::kConstant:
      return static_cast<std::uint32_t>(field.bytes.size());
  }
  return 4;
}

void RuleBuilder::load_field(std::uint32_t reg32, const NftField& field) {
  const bool v6 = family_ == NFPROTO_IPV6;
  auto payload = [&](std::uint32_t base, std::uint32_t offset, std::uint32_t len) {
    nftnl_expr* e = new_expr(rule_, "payload");
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, reg32);
  };
  auto ct = [&](std::uint32_t key, std::uint8_t dir) {
    nftnl_expr* e = new_expr(rule_, "ct");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, key);
    nftnl_expr_set_u8(e, NFTNL_EXPR_CT_DIR, dir);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, reg32);
  };
  switch (field.kind) {
    case NftField::Kind::kL4Proto: {
      nftnl_expr* e = new_expr(rule_, "meta");
      nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, NFT_META_L4PROTO);
      nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, reg32);
      return;
    }
    case NftField::Kind::kIpSaddr:
      return payload(NFT_PAYLOAD_NETWORK_HEADER, v6 ? 8 : 12, v6 ? 16 : 4);
    case NftField::Kind::kIpDaddr:
      return payload(NFT_PAYLOAD_NETWORK_HEADER, v6 ? 24 : 16, v6 ? 16 : 4);
    case NftField::Kind::kThSport:
      return payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2);
    case NftField::Kind::kThDport:
      return payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
    case NftField::Kind::kCtOrigSaddr:
      return ct(v6 ? NFT_CT_SRC_IP6 : NFT_CT_SRC_IP, IP_CT_DIR_ORIGINAL);
    case NftField::Kind::kCtOrigProtoSrc:
      return ct(NFT_CT_PROTO_SRC, IP_CT_DIR_ORIGINAL);
    case NftField::Kind::kCtOrigDaddr:
      return ct(v6 ? NFT_CT_DST_IP6 : NFT_CT_DST_IP, IP_CT_DIR_ORIGINAL);
    case NftField::Kind::kCtReplyDaddr:
      return ct(v6 ? NFT_CT_DST_IP6 : NFT_CT_DST_IP, IP_CT_DIR_REPLY);
    case NftField::Kind::kCtReplyProtoDst:
      return ct(NFT_CT_PROTO_DST, IP_CT_DIR_REPLY);
    case NftField::Kind::kConstant: {
      nftnl_expr* e = new_expr(rule_, "immediate");
      nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, reg32);
      nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, field.bytes.data(),
                     static_cast<std::uint32_t>(field.bytes.size()));
      return;
    }
  }
}

std::uint32_t RuleBuilder::load_concat(std::uint32_t first_reg32,
                                       std::initializer_list<NftField> fields) {
  std::uint32_t reg = first_reg32;
  for (const NftField& f : fields) {
    load_field(reg, f);
    reg += padded(field_len(f)) / 4;
  }
  return reg;
}

RuleBuilder& RuleBuilder::in_set(const std::string& set, std::initializer_list<NftField> key) {
  load_concat(kKeyReg32, key);
  nftnl_expr* e = new_expr(rule_, "lookup");
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, kKeyReg32);
  nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set.c_str());
  return *this;
}

RuleBuilder& RuleBuilder::load(Reg where, std::initializer_list<NftField> fields) {
  const std::uint32_t end = load_concat(where == Reg::kKey ? kKeyReg32 : kDataReg32, fields);
  if (where == Reg::kKey) key_end_ = end;
  // A key longer than 16 bytes (an IPv6 concatenation, say) shares registers with the data.
  if (key_end_ > kDataReg32 && (where == Reg::kData || data_loaded_)) {
    throw std::logic_error("nftables key concatenation longer than 16 bytes next to map data");
  }
  if (where == Reg::kData) data_loaded_ = true;
  return *this;
}

RuleBuilder& RuleBuilder::map_lookup(const std::string& map) {
  nftnl_expr* e = new_expr(rule_, "lookup");
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, kKeyReg32);
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, kKeyReg32);
  nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, map.c_str());
  return *this;
}

RuleBuilder& RuleBuilder::sequential_port(std::uint32_t modulus, std::uint32_t offset) {
  const std::uint32_t reg = kKeyReg32 + 1;
  nftnl_expr* ng = new_expr(rule_, "numgen");
  nftnl_expr_set_u32(ng, NFTNL_EXPR_NG_DREG, reg);
  nftnl_expr_set_u32(ng, NFTNL_EXPR_NG_TYPE, NFT_NG_INCREMENTAL);
  nftnl_expr_set_u32(ng, NFTNL_EXPR_NG_MODULUS, modulus);
  nftnl_expr_set_u32(ng, NFTNL_EXPR_NG_OFFSET, offset);
  // numgen writes a host-order u32; NAT reads the register's first two bytes as a network-order
  // port. Convert the low 16 bits (nft itself omits this and gets byte-swapped ports).
  nftnl_expr* bo = new_expr(rule_, "byteorder");
  nftnl_expr_set_u32(bo, NFTNL_EXPR_BYTEORDER_SREG, reg);
  nftnl_expr_set_u32(bo, NFTNL_EXPR_BYTEORDER_DREG, reg);
  nftnl_expr_set_u32(bo, NFTNL_EXPR_BYTEORDER_OP, NFT_BYTEORDER_HTON);
  nftnl_expr_set_u32(bo, NFTNL_EXPR_BYTEORDER_LEN, 2);
  nftnl_expr_set_u32(bo, NFTNL_EXPR_BYTEORDER_SIZE, 2);
  return *this;
}

RuleBuilder& RuleBuilder::update_set(const std::string& set, bool with_data,
                                     std::uint64_t timeout_ms) {
  nftnl_expr* e = new_expr(rule_, "dynset");
  nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_KEY, kKeyReg32);
  if (with_data) nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_DATA, kDataReg32);
  nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_OP, NFT_DYNSET_OP_UPDATE);
  nftnl_expr_set_str(e, NFTNL_EXPR_DYNSET_SET_NAME, set.c_str());
  nftnl_expr_set_u64(e, NFTNL_EXPR_DYNSET_TIMEOUT, timeout_ms);
  return *this;
}

RuleBuilder& RuleBuilder::nat(bool source, Reg reg, bool with_port, std::uint32_t flags) {
  const bool v6 = family_ == NFPROTO_IPV6;
  const std::uint32_t addr = reg == Reg::kKey ? kKeyReg32 : kDataReg32;
  nftnl_expr* e = new_expr(rule_, "nat");
  nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, source ? NFT_NAT_SNAT : NFT_NAT_DNAT);
  nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, v6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
  nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, addr);
  if (with_port) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, addr + (v6 ? 4 : 1));
    flags |= NF_NAT_RANGE_PROTO_SPECIFIED;
  }
  if (flags != 0) nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FLAGS, flags);
  return *this;
}

RuleBuilder& RuleBuilder::nat_prefix(bool source) {
  nftnl_expr* e = new_expr(rule_, "nat");
  nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, source ? NFT_NAT_SNAT : NFT_NAT_DNAT);
  nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY,
                     family_ == NFPROTO_IPV6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
  nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, kKeyReg32);
  nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MAX, kDataReg32);
  nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FLAGS, NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_NETMAP);
  return *this;
}

RuleBuilder& RuleBuilder::masquerade(std::uint32_t flags) {
  nftnl_expr* e = new_expr(rule_, "masq");
  if (flags != 0) nftnl_expr_set_u32(e, NFTNL_EXPR_MASQ_FLAGS, flags);
  return *this;
}

namespace {
void verdict(nftnl_rule* rule, int v) {
  nftnl_expr* e = new_expr(rule, "immediate");
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, static_cast<std::uint32_t>(v));
}
}  // namespace

RuleBuilder& RuleBuilder::accept() {
  verdict(rule_, NF_ACCEPT);
  return *this;
}

RuleBuilder& RuleBuilder::drop() {
  verdict(rule_, NF_DROP);
  return *this;
}

}  // namespace patchbay::internal
