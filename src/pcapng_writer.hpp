// PcapngWriter: writes packet captures as pcapng (draft-ietf-opsawg-pcapng), the format Wireshark
// and tcpdump (libpcap >= 1.1) read natively, with nanosecond timestamps, the original length of
// truncated packets, a direction per packet and free-text comments.
//
//   PcapngWriter w("/tmp/run/device.a.eth0.pcap", "a/eth0");   // truncates, writes the SHB
//   std::uint32_t eth0 = w.add_interface({.name = "eth0", .description = "device a"});
//   w.write_packet(eth0, {.timestamp_ns = ns_since_epoch, .data = frame,
//                         .original_length = wire_len, .flags = epb_flags_for_pkttype(type)});
//   w.close();  // flushes; errors (disk full, ...) are thrown here, not lost in the destructor
//
// One section; blocks are written in host byte order (the section's byte-order magic tells
// readers which). Every interface gets if_tsresol = 9, so timestamps are nanoseconds since the
// Unix epoch. The block encoders are public so tests can check the bytes against the spec.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "unique_fd.hpp"

namespace patchbay::internal {

inline constexpr std::uint32_t kPcapngSectionHeaderBlock = 0x0A0D0D0A;
inline constexpr std::uint32_t kPcapngInterfaceDescriptionBlock = 1;
inline constexpr std::uint32_t kPcapngInterfaceStatisticsBlock = 5;
inline constexpr std::uint32_t kPcapngEnhancedPacketBlock = 6;
inline constexpr std::uint32_t kPcapngByteOrderMagic = 0x1A2B3C4D;
inline constexpr std::uint16_t kLinktypeEthernet = 1;

// Option codes used here (pcapng sections 3.5, 4.1, 4.2, 4.3, 4.6).
inline constexpr std::uint16_t kOptEndOfOpt = 0;
inline constexpr std::uint16_t kOptComment = 1;
inline constexpr std::uint16_t kShbUserAppl = 4;
inline constexpr std::uint16_t kIfName = 2;
inline constexpr std::uint16_t kIfDescription = 3;
inline constexpr std::uint16_t kIfTsresol = 9;
inline constexpr std::uint16_t kEpbFlags = 2;
inline constexpr std::uint16_t kIsbFilterAccept = 6;
inline constexpr std::uint16_t kIsbOsDrop = 7;
inline constexpr std::uint16_t kIsbUsrDeliv = 8;

// epb_flags for a frame an AF_PACKET socket reported with `pkttype` (sll_pkttype): direction in
// bits 0-1 (1 inbound, 2 outbound) and reception type in bits 2-4 (1 unicast, 2 multicast,
// 3 broadcast, 4 promiscuous). Unknown types give 0 (no information).
std::uint32_t epb_flags_for_pkttype(std::uint8_t pkttype);

struct PcapngInterface {
  std::string name{};         // if_name, e.g. "eth0"; left out when empty
  std::string description{};  // if_description, e.g. "device a, towards router r"
  std::uint32_t snaplen = 0;  // the IDB's SnapLen; 0 means no limit
  std::uint16_t linktype = kLinktypeEthernet;
};

struct PcapngPacket {
  std::int64_t timestamp_ns = 0;  // since the Unix epoch
  // The captured bytes; `data_tail`, if not empty, continues them (a ring's wrap-around), so a
  // split packet is written without first joining it.
  std::span<const unsigned char> data{};
  std::span<const unsigned char> data_tail{};
  std::uint32_t original_length = 0;  // length on the wire; 0: the captured length
  std::uint32_t flags = 0;            // epb_flags; 0: the option is left out
  std::string_view comment{};         // opt_comment; left out when empty
};

// Counters of an Interface Statistics Block; unset ones are left out.
struct PcapngInterfaceStats {
  std::int64_t timestamp_ns = 0;
  std::optional<std::uint64_t> filter_accept{};   // isb_filteraccept: packets the capture saw
  std::optional<std::uint64_t> os_drop{};         // isb_osdrop: dropped by the kernel
  std::optional<std::uint64_t> user_delivered{};  // isb_usrdeliv: packets in this file
  std::string comment{};
};

// Block encoders: each appends one complete block (both length fields, options padded to 32
// bits, opt_endofopt when there are options) to `out`.
void append_section_header(std::vector<unsigned char>& out, std::string_view application);
void append_interface_description(std::vector<unsigned char>& out, const PcapngInterface& iface);
void append_enhanced_packet(std::vector<unsigned char>& out, std::uint32_t interface_id,
                            const PcapngPacket& packet);
void append_interface_statistics(std::vector<unsigned char>& out, std::uint32_t interface_id,
                                 const PcapngInterfaceStats& stats);
// Size of the block append_enhanced_packet writes, without encoding it.
std::size_t enhanced_packet_size(const PcapngPacket& packet);

// What read_pcapng() found in a file.
struct PcapngRecord {
  std::uint32_t interface_id = 0;
  std::int64_t timestamp_ns = 0;
  std::uint32_t original_length = 0;
  std::uint32_t flags = 0;  // epb_flags, 0 when absent
  std::string comment{};
  std::vector<unsigned char> data{};  // the captured bytes
};
struct PcapngFile {
  std::vector<PcapngInterface> interfaces{};
  std::vector<PcapngRecord> packets{};
  std::vector<PcapngInterfaceStats> statistics{};
  std::vector<std::uint32_t> block_types{};  // every block, in file order
};

// Reads a file written by PcapngWriter (one section in host byte order, if_tsresol 9), checking
// every block's framing: both length fields equal, a multiple of 4, inside the file, options
// well-formed. For tests and tools that assert on what was captured. Throws Error (culprit:
// the path) on anything else.
PcapngFile read_pcapng(const std::string& path);

class PcapngWriter {
 public:
  // Creates or truncates `path` and writes the section header block. `culprit` (the link or
  // interface being captured) names the capture in errors.
  PcapngWriter(std::string path, std::string culprit);
  // Flushes what is buffered, ignoring errors (call close() to see them).
  ~PcapngWriter();
  PcapngWriter(const PcapngWriter&) = delete;
  PcapngWriter& operator=(const PcapngWriter&) = delete;
  PcapngWriter(PcapngWriter&&) noexcept = default;
  PcapngWriter& operator=(PcapngWriter&&) noexcept = default;

  // Writes an interface description block; returns the interface's id for write_packet().
  std::uint32_t add_interface(const PcapngInterface& iface);
  // Appends an enhanced packet block; packets longer than the interface's snaplen are the
  // caller's business (they are written as given).
  void write_packet(std::uint32_t interface_id, const PcapngPacket& packet);
  void write_statistics(std::uint32_t interface_id, const PcapngInterfaceStats& stats);
  // Writes the buffered blocks out: afterwards the file ends with a complete block and is
  // readable up to here while writing continues.
  void flush();
  // flush(), then closes the file. Later writes throw.
  void close();

  // Bytes of all blocks so far, buffered or written: the file's size after flush().
  std::uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void check_interface(std::uint32_t interface_id) const;
  void maybe_flush();
  [[noreturn]] void fail(const std::string& what, int err) const;

  std::string path_;
  std::string culprit_;
  UniqueFd fd_;
  std::vector<unsigned char> buf_;
  std::uint64_t size_ = 0;
  std::uint32_t interfaces_ = 0;
};

}  // namespace patchbay::internal
