// pcapng blocks byte by byte against the specification (draft-ietf-opsawg-pcapng: section header
// 4.1, interface description 4.2, enhanced packet 4.3, interface statistics 4.6, options 3.5),
// then whole files as tcpdump reads them.
#include "pcapng_writer.hpp"
#include "../temp_dir.hpp"

#include <linux/if_packet.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "patchbay/error.hpp"

namespace patchbay::internal {
namespace {

using Bytes = std::vector<unsigned char>;

std::uint32_t u32(const Bytes& b, std::size_t at) {
  std::uint32_t v;
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}
std::uint16_t u16(const Bytes& b, std::size_t at) {
  std::uint16_t v;
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}
std::uint64_t u64(const Bytes& b, std::size_t at) {
  std::uint64_t v;
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}
std::string str(const Bytes& b, std::size_t at, std::size_t len) {
  return std::string(reinterpret_cast<const char*>(b.data() + at), len);
}
bool zeros(const Bytes& b, std::size_t at, std::size_t len) {
  for (std::size_t i = 0; i < len; ++i) {
    if (b[at + i] != 0) return false;
  }
  return true;
}

using pbtest::TempDir;

// stdout and stderr of a shell command.
std::string run(const std::string& command) {
  std::string out;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  ::pclose(p);
  return out;
}

bool have_tcpdump() { return ::access("/usr/bin/tcpdump", X_OK) == 0; }

int count_lines_with(const std::string& text, const std::string& needle) {
  int n = 0;
  std::size_t pos = 0;
  while ((pos = text.find(needle, pos)) != std::string::npos) {
    ++n;
    pos += needle.size();
  }
  return n;
}

// An Ethernet + IPv4 + UDP frame 192.0.2.1:1234 -> 192.0.2.2:5678 carrying `payload`, with a
// correct IPv4 header checksum (tcpdump -v would complain otherwise).
Bytes udp_frame(const std::string& payload) {
  Bytes f = {0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00};
  const std::size_t ip_len = 20 + 8 + payload.size();
  Bytes ip = {0x45,
              0,
              static_cast<unsigned char>(ip_len >> 8),
              static_cast<unsigned char>(ip_len),
              0,
              0,
              0x40,
              0,
              64,
              17,
              0,
              0,
              192,
              0,
              2,
              1,
              192,
              0,
              2,
              2};
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < ip.size(); i += 2) sum += (ip[i] << 8) | ip[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  ip[10] = static_cast<unsigned char>(~sum >> 8);
  ip[11] = static_cast<unsigned char>(~sum);
  f.insert(f.end(), ip.begin(), ip.end());
  const std::size_t udp_len = 8 + payload.size();
  Bytes udp = {0x04,
               0xd2,
               0x16,
               0x2e,
               static_cast<unsigned char>(udp_len >> 8),
               static_cast<unsigned char>(udp_len),
               0,
               0};  // checksum 0: none (IPv4)
  f.insert(f.end(), udp.begin(), udp.end());
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

TEST(PcapngBlocksTest, SectionHeaderHasMagicVersionUnknownLengthAndApplicationOption) {
  Bytes b;
  append_section_header(b, "patchbay");
  // 24 fixed bytes + shb_userappl (4 + 8) + opt_endofopt (4) + trailing length (4).
  ASSERT_EQ(b.size(), 44u);
  EXPECT_EQ(u32(b, 0), 0x0A0D0D0Au);
  EXPECT_EQ(u32(b, 4), 44u);
  EXPECT_EQ(u32(b, 8), 0x1A2B3C4Du);
  EXPECT_EQ(u16(b, 12), 1);  // major
  EXPECT_EQ(u16(b, 14), 0);  // minor
  EXPECT_EQ(u64(b, 16), ~std::uint64_t{0});
  EXPECT_EQ(u16(b, 24), 4);  // shb_userappl
  EXPECT_EQ(u16(b, 26), 8);
  EXPECT_EQ(str(b, 28, 8), "patchbay");
  EXPECT_EQ(u16(b, 36), 0);  // opt_endofopt
  EXPECT_EQ(u16(b, 38), 0);
  EXPECT_EQ(u32(b, 40), 44u);
}

TEST(PcapngBlocksTest, SectionHeaderWithoutOptionsIsTwentyEightBytes) {
  Bytes b;
  append_section_header(b, "");
  ASSERT_EQ(b.size(), 28u);
  EXPECT_EQ(u32(b, 4), 28u);
  EXPECT_EQ(u32(b, 24), 28u);
}

TEST(PcapngBlocksTest, InterfaceDescriptionPadsNameAndDescriptionAndSetsNanoseconds) {
  Bytes b{0xee};  // blocks append: the encoder must not assume an empty buffer
  append_interface_description(
      b,
      PcapngInterface{
          .name = "eth0", .description = "dev a", .snaplen = 65536, .linktype = kLinktypeEthernet});
  b.erase(b.begin());
  // 16 fixed + if_name (4+4) + if_description (4+5+3 pad) + if_tsresol (4+1+3 pad) + end (4) +
  // trailing length (4).
  ASSERT_EQ(b.size(), 52u);
  EXPECT_EQ(u32(b, 0), 1u);
  EXPECT_EQ(u32(b, 4), 52u);
  EXPECT_EQ(u16(b, 8), 1);  // LINKTYPE_ETHERNET
  EXPECT_EQ(u16(b, 10), 0);
  EXPECT_EQ(u32(b, 12), 65536u);
  EXPECT_EQ(u16(b, 16), 2);  // if_name
  EXPECT_EQ(u16(b, 18), 4);
  EXPECT_EQ(str(b, 20, 4), "eth0");
  EXPECT_EQ(u16(b, 24), 3);  // if_description
  EXPECT_EQ(u16(b, 26), 5);
  EXPECT_EQ(str(b, 28, 5), "dev a");
  EXPECT_TRUE(zeros(b, 33, 3));
  EXPECT_EQ(u16(b, 36), 9);  // if_tsresol
  EXPECT_EQ(u16(b, 38), 1);
  EXPECT_EQ(b[40], 9);  // 10^-9 s
  EXPECT_TRUE(zeros(b, 41, 3));
  EXPECT_EQ(u32(b, 44), 0u);  // opt_endofopt
  EXPECT_EQ(u32(b, 48), 52u);
}

TEST(PcapngBlocksTest, EnhancedPacketPadsDataAndCarriesTimeLengthsFlagsAndComment) {
  const Bytes data = {1, 2, 3, 4, 5};
  const std::int64_t ts = 1'700'000'000'123'456'789;
  const PcapngPacket p{.timestamp_ns = ts,
                       .data = data,
                       .data_tail = {},
                       .original_length = 60,
                       .flags = epb_flags_for_pkttype(PACKET_OUTGOING),
                       .comment = "hi"};
  Bytes b;
  append_enhanced_packet(b, 3, p);
  // 28 fixed + data (5 + 3 pad) + epb_flags (4+4) + comment (4+2+2 pad) + end (4) + trailing.
  ASSERT_EQ(b.size(), 60u);
  EXPECT_EQ(enhanced_packet_size(p), b.size());
  EXPECT_EQ(u32(b, 0), 6u);
  EXPECT_EQ(u32(b, 4), 60u);
  EXPECT_EQ(u32(b, 8), 3u);  // interface id
  EXPECT_EQ(u32(b, 12), static_cast<std::uint32_t>(static_cast<std::uint64_t>(ts) >> 32));
  EXPECT_EQ(u32(b, 16), static_cast<std::uint32_t>(ts));
  EXPECT_EQ(u32(b, 20), 5u);   // captured
  EXPECT_EQ(u32(b, 24), 60u);  // original
  EXPECT_EQ(Bytes(b.begin() + 28, b.begin() + 33), data);
  EXPECT_TRUE(zeros(b, 33, 3));
  EXPECT_EQ(u16(b, 36), 2);  // epb_flags
  EXPECT_EQ(u16(b, 38), 4);
  EXPECT_EQ(u32(b, 40), 2u);  // outbound
  EXPECT_EQ(u16(b, 44), 1);   // opt_comment
  EXPECT_EQ(u16(b, 46), 2);
  EXPECT_EQ(str(b, 48, 2), "hi");
  EXPECT_TRUE(zeros(b, 50, 2));
  EXPECT_EQ(u32(b, 52), 0u);
  EXPECT_EQ(u32(b, 56), 60u);
}

TEST(PcapngBlocksTest, EnhancedPacketWithoutOptionsHasNoEndMarkerAndJoinsSplitData) {
  const Bytes head = {1, 2, 3}, tail = {4, 5, 6, 7, 8};
  const PcapngPacket p{.timestamp_ns = 5, .data = head, .data_tail = tail};
  Bytes b;
  append_enhanced_packet(b, 0, p);
  ASSERT_EQ(b.size(), 40u);  // 28 + 8 data + trailing length
  EXPECT_EQ(enhanced_packet_size(p), 40u);
  EXPECT_EQ(u32(b, 20), 8u);
  EXPECT_EQ(u32(b, 24), 8u);  // original length defaults to the captured one
  EXPECT_EQ(Bytes(b.begin() + 28, b.begin() + 36), (Bytes{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(u32(b, 36), 40u);
}

TEST(PcapngBlocksTest, FlagsGiveDirectionAndReceptionTypeOfEachPacketType) {
  EXPECT_EQ(epb_flags_for_pkttype(PACKET_HOST), 0b00101u);       // inbound unicast
  EXPECT_EQ(epb_flags_for_pkttype(PACKET_MULTICAST), 0b01001u);  // inbound multicast
  EXPECT_EQ(epb_flags_for_pkttype(PACKET_BROADCAST), 0b01101u);  // inbound broadcast
  EXPECT_EQ(epb_flags_for_pkttype(PACKET_OTHERHOST), 0b10001u);  // inbound promiscuous
  EXPECT_EQ(epb_flags_for_pkttype(PACKET_OUTGOING), 0b00010u);   // outbound
  EXPECT_EQ(epb_flags_for_pkttype(PACKET_LOOPBACK), 0u);         // not known: no option
}

TEST(PcapngBlocksTest, InterfaceStatisticsCarryCountersAndComment) {
  Bytes b;
  append_interface_statistics(b, 0,
                              PcapngInterfaceStats{.timestamp_ns = (std::int64_t{7} << 32) | 9,
                                                   .filter_accept = 10,
                                                   .os_drop = 2,
                                                   .user_delivered = 8,
                                                   .comment = "abc"});
  // 20 fixed + three counters (12 each) + comment (4+3+1 pad) + end (4) + trailing length.
  ASSERT_EQ(b.size(), 72u);
  EXPECT_EQ(u32(b, 0), 5u);
  EXPECT_EQ(u32(b, 4), 72u);
  EXPECT_EQ(u32(b, 12), 7u);
  EXPECT_EQ(u32(b, 16), 9u);
  EXPECT_EQ(u16(b, 20), 6);  // isb_filteraccept
  EXPECT_EQ(u16(b, 22), 8);
  EXPECT_EQ(u64(b, 24), 10u);
  EXPECT_EQ(u16(b, 32), 7);  // isb_osdrop
  EXPECT_EQ(u64(b, 36), 2u);
  EXPECT_EQ(u16(b, 44), 8);  // isb_usrdeliv
  EXPECT_EQ(u64(b, 48), 8u);
  EXPECT_EQ(u16(b, 56), 1);
  EXPECT_EQ(str(b, 60, 3), "abc");
  EXPECT_EQ(b[63], 0);
  EXPECT_EQ(u32(b, 64), 0u);
  EXPECT_EQ(u32(b, 68), 72u);
}

TEST(PcapngWriterTest, FileIsTheBlocksInOrderAndReadsBack) {
  TempDir dir;
  const std::string path = dir.file("a.pcapng");
  const Bytes frame = udp_frame("abcd");
  {
    PcapngWriter w(path, "a/eth0");
    const std::uint32_t eth0 = w.add_interface({.name = "eth0", .snaplen = 100});
    const std::uint32_t eth1 = w.add_interface({.name = "eth1"});
    EXPECT_EQ(eth0, 0u);
    EXPECT_EQ(eth1, 1u);
    w.write_packet(eth1, {.timestamp_ns = 1'000'000'001, .data = frame, .original_length = 99});
    w.write_packet(eth0, {.timestamp_ns = 2'000'000'002, .data = frame, .flags = 2});
    w.write_statistics(eth0, {.timestamp_ns = 3, .os_drop = 4});
    w.close();
    EXPECT_EQ(w.size(), std::filesystem::file_size(path));
  }
  const PcapngFile f = read_pcapng(path);
  EXPECT_EQ(f.block_types, (std::vector<std::uint32_t>{0x0A0D0D0A, 1, 1, 6, 6, 5}));
  ASSERT_EQ(f.interfaces.size(), 2u);
  EXPECT_EQ(f.interfaces[0].name, "eth0");
  EXPECT_EQ(f.interfaces[0].snaplen, 100u);
  EXPECT_EQ(f.interfaces[1].name, "eth1");
  ASSERT_EQ(f.packets.size(), 2u);
  EXPECT_EQ(f.packets[0].interface_id, 1u);
  EXPECT_EQ(f.packets[0].timestamp_ns, 1'000'000'001);
  EXPECT_EQ(f.packets[0].original_length, 99u);
  EXPECT_EQ(f.packets[0].data, frame);
  EXPECT_EQ(f.packets[1].flags, 2u);
  ASSERT_EQ(f.statistics.size(), 1u);
  EXPECT_EQ(f.statistics[0].os_drop, 4u);
}

TEST(PcapngWriterTest, FlushMakesTheFileCompleteWhileItStaysOpen) {
  TempDir dir;
  const std::string path = dir.file("a.pcapng");
  PcapngWriter w(path, "a/eth0");
  w.add_interface({.name = "eth0"});
  const Bytes frame = udp_frame("x");
  w.write_packet(0, {.timestamp_ns = 1, .data = frame});
  w.flush();
  EXPECT_EQ(std::filesystem::file_size(path), w.size());
  EXPECT_EQ(read_pcapng(path).packets.size(), 1u);
  w.write_packet(0, {.timestamp_ns = 2, .data = frame});
  w.flush();
  EXPECT_EQ(read_pcapng(path).packets.size(), 2u);
}

TEST(PcapngWriterTest, UncreatableFileIsAnErrorNamingCaptureAndPath) {
  try {
    PcapngWriter w("/nonexistent-dir/a.pcapng", "dev1/eth0");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kKernel);
    EXPECT_EQ(e.culprit(), "dev1/eth0");
    EXPECT_EQ(e.sys_errno(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/a.pcapng"), std::string::npos);
  }
}

TEST(PcapngWriterTest, PacketForAnUndeclaredInterfaceIsRejected) {
  TempDir dir;
  PcapngWriter w(dir.file("a.pcapng"), "a/eth0");
  const Bytes frame = udp_frame("x");
  try {
    w.write_packet(0, {.timestamp_ns = 1, .data = frame});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  }
}

TEST(PcapngWriterTest, ReaderRejectsATornBlock) {
  TempDir dir;
  const std::string path = dir.file("a.pcapng");
  {
    PcapngWriter w(path, "a/eth0");
    w.add_interface({.name = "eth0"});
    const Bytes frame = udp_frame("abc");
    w.write_packet(0, {.timestamp_ns = 1, .data = frame});
    w.close();
  }
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 4);
  EXPECT_THROW(read_pcapng(path), Error);
}

TEST(PcapngWriterTest, TcpdumpShowsEveryPacketWithNanosecondTimes) {
  if (!have_tcpdump()) GTEST_SKIP() << "tcpdump not installed";
  TempDir dir;
  const std::string path = dir.file("a.pcap");
  {
    PcapngWriter w(path, "a/eth0");
    w.add_interface({.name = "eth0", .description = "test interface", .snaplen = 65536});
    for (int i = 0; i < 3; ++i) {
      const Bytes frame = udp_frame("marker-" + std::to_string(i));
      w.write_packet(0, {.timestamp_ns = 1'700'000'000'000'000'000 + i * 1'000'000'001LL,
                         .data = frame,
                         .flags = epb_flags_for_pkttype(i == 1 ? PACKET_OUTGOING : PACKET_HOST),
                         .comment = i == 2 ? "a comment" : ""});
    }
    w.close();
  }
  const std::string out = run("tcpdump -r " + path + " -n --nano -tt -A");
  EXPECT_EQ(count_lines_with(out, "IP 192.0.2.1.1234 > 192.0.2.2.5678: UDP, length 8"), 3) << out;
  EXPECT_NE(out.find("1700000000.000000000 IP"), std::string::npos) << out;
  EXPECT_NE(out.find("1700000001.000000001 IP"), std::string::npos) << out;
  EXPECT_NE(out.find("1700000002.000000002 IP"), std::string::npos) << out;
  for (int i = 0; i < 3; ++i) {
    EXPECT_NE(out.find("marker-" + std::to_string(i)), std::string::npos) << out;
  }
  EXPECT_EQ(out.find("truncated"), std::string::npos) << out;
  EXPECT_EQ(out.find("invalid"), std::string::npos) << out;
}

}  // namespace
}  // namespace patchbay::internal
