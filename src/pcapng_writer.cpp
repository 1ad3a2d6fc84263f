#include "pcapng_writer.hpp"

#include <fcntl.h>
#include <linux/if_packet.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "patchbay/error.hpp"

namespace patchbay::internal {
namespace {

// Flushed to the file beyond this: few syscalls, yet a bounded amount lost on a crash.
constexpr std::size_t kFlushThreshold = 256u << 10;

constexpr std::size_t pad4(std::size_t n) { return (n + 3) & ~std::size_t{3}; }

template <class T>
void put(std::vector<unsigned char>& out, T value) {
  unsigned char bytes[sizeof value];
  std::memcpy(bytes, &value, sizeof value);
  out.insert(out.end(), bytes, bytes + sizeof value);
}

void put_bytes(std::vector<unsigned char>& out, const void* data, std::size_t len) {
  const auto* p = static_cast<const unsigned char*>(data);
  out.insert(out.end(), p, p + len);
}

void put_padding(std::vector<unsigned char>& out, std::size_t len) {
  out.insert(out.end(), pad4(len) - len, 0);
}

void put_option(std::vector<unsigned char>& out, std::uint16_t code, const void* value,
                std::size_t len) {
  put<std::uint16_t>(out, code);
  put<std::uint16_t>(out, static_cast<std::uint16_t>(len));
  put_bytes(out, value, len);
  put_padding(out, len);
}

void put_string_option(std::vector<unsigned char>& out, std::uint16_t code, std::string_view s) {
  // An option's length field is 16 bits; a longer text is cut rather than corrupting the block.
  put_option(out, code, s.data(), std::min<std::size_t>(s.size(), 0xfffc));
}

std::size_t string_option_size(std::string_view s) {
  return s.empty() ? 0 : 4 + pad4(std::min<std::size_t>(s.size(), 0xfffc));
}

// Starts a block: type and a length placeholder. finish_block() fills in both length fields.
std::size_t begin_block(std::vector<unsigned char>& out, std::uint32_t type) {
  const std::size_t start = out.size();
  put<std::uint32_t>(out, type);
  put<std::uint32_t>(out, 0);
  return start;
}

void finish_block(std::vector<unsigned char>& out, std::size_t start, bool has_options) {
  if (has_options) {
    put<std::uint16_t>(out, kOptEndOfOpt);
    put<std::uint16_t>(out, 0);
  }
  const auto total = static_cast<std::uint32_t>(out.size() - start + 4);
  put<std::uint32_t>(out, total);
  std::memcpy(out.data() + start + 4, &total, sizeof total);
}

void put_timestamp(std::vector<unsigned char>& out, std::int64_t ns) {
  // if_tsresol 9: one unit is a nanosecond; a 64-bit count split into high and low words.
  const auto t = static_cast<std::uint64_t>(ns < 0 ? 0 : ns);
  put<std::uint32_t>(out, static_cast<std::uint32_t>(t >> 32));
  put<std::uint32_t>(out, static_cast<std::uint32_t>(t));
}

}  // namespace

std::uint32_t epb_flags_for_pkttype(std::uint8_t pkttype) {
  constexpr std::uint32_t kInbound = 1, kOutbound = 2;
  constexpr std::uint32_t kUnicast = 1 << 2, kMulticast = 2 << 2, kBroadcast = 3 << 2,
                          kPromiscuous = 4 << 2;
  switch (pkttype) {
    case PACKET_HOST:
      return kInbound | kUnicast;
    case PACKET_BROADCAST:
      return kInbound | kBroadcast;
    case PACKET_MULTICAST:
      return kInbound | kMulticast;
    case PACKET_OTHERHOST:
      return kInbound | kPromiscuous;
    case PACKET_OUTGOING:
      return kOutbound;
    default:
      return 0;
  }
}

void append_section_header(std::vector<unsigned char>& out, std::string_view application) {
  const std::size_t start = begin_block(out, kPcapngSectionHeaderBlock);
  put<std::uint32_t>(out, kPcapngByteOrderMagic);
  put<std::uint16_t>(out, 1);  // major version
  put<std::uint16_t>(out, 0);  // minor version
  // Section length -1: not known in advance, and readers must not rely on it anyway.
  put<std::uint64_t>(out, ~std::uint64_t{0});
  if (!application.empty()) put_string_option(out, kShbUserAppl, application);
  finish_block(out, start, !application.empty());
}

void append_interface_description(std::vector<unsigned char>& out, const PcapngInterface& iface) {
  const std::size_t start = begin_block(out, kPcapngInterfaceDescriptionBlock);
  put<std::uint16_t>(out, iface.linktype);
  put<std::uint16_t>(out, 0);  // reserved
  put<std::uint32_t>(out, iface.snaplen);
  if (!iface.name.empty()) put_string_option(out, kIfName, iface.name);
  if (!iface.description.empty()) put_string_option(out, kIfDescription, iface.description);
  const std::uint8_t nanoseconds = 9;  // 10^-9 s, the resolution of put_timestamp()
  put_option(out, kIfTsresol, &nanoseconds, 1);
  finish_block(out, start, true);
}

std::size_t enhanced_packet_size(const PcapngPacket& packet) {
  const std::size_t caplen = packet.data.size() + packet.data_tail.size();
  std::size_t options = (packet.flags ? 8 : 0) + string_option_size(packet.comment);
  if (options) options += 4;  // opt_endofopt
  return 32 + pad4(caplen) + options;
}

void append_enhanced_packet(std::vector<unsigned char>& out, std::uint32_t interface_id,
                            const PcapngPacket& packet) {
  const std::size_t caplen = packet.data.size() + packet.data_tail.size();
  out.reserve(out.size() + enhanced_packet_size(packet));
  const std::size_t start = begin_block(out, kPcapngEnhancedPacketBlock);
  put<std::uint32_t>(out, interface_id);
  put_timestamp(out, packet.timestamp_ns);
  put<std::uint32_t>(out, static_cast<std::uint32_t>(caplen));
  put<std::uint32_t>(
      out, packet.original_length ? packet.original_length : static_cast<std::uint32_t>(caplen));
  put_bytes(out, packet.data.data(), packet.data.size());
  put_bytes(out, packet.data_tail.data(), packet.data_tail.size());
  put_padding(out, caplen);
  if (packet.flags) put_option(out, kEpbFlags, &packet.flags, sizeof packet.flags);
  if (!packet.comment.empty()) put_string_option(out, kOptComment, packet.comment);
  finish_block(out, start, packet.flags || !packet.comment.empty());
}

void append_interface_statistics(std::vector<unsigned char>& out, std::uint32_t interface_id,
                                 const PcapngInterfaceStats& stats) {
  const std::size_t start = begin_block(out, kPcapngInterfaceStatisticsBlock);
  put<std::uint32_t>(out, interface_id);
  put_timestamp(out, stats.timestamp_ns);
  bool options = false;
  auto counter = [&](std::uint16_t code, const std::optional<std::uint64_t>& value) {
    if (!value) return;
    put_option(out, code, &*value, sizeof *value);
    options = true;
  };
  counter(kIsbFilterAccept, stats.filter_accept);
  counter(kIsbOsDrop, stats.os_drop);
  counter(kIsbUsrDeliv, stats.user_delivered);
  if (!stats.comment.empty()) {
    put_string_option(out, kOptComment, stats.comment);
    options = true;
  }
  finish_block(out, start, options);
}

namespace {

class Reader {
 public:
  Reader(std::string path, std::vector<unsigned char> bytes)
      : path_(std::move(path)), bytes_(std::move(bytes)) {}

  template <class T>
  T get(std::size_t at) const {
    if (at + sizeof(T) > bytes_.size()) bad(at, "field past the end of the file");
    T v;
    std::memcpy(&v, bytes_.data() + at, sizeof v);
    return v;
  }
  std::string text(std::size_t at, std::size_t len) const {
    return std::string(reinterpret_cast<const char*>(bytes_.data() + at), len);
  }
  std::size_t size() const { return bytes_.size(); }
  const unsigned char* data(std::size_t at) const { return bytes_.data() + at; }

  // Calls fn(code, offset of value, length) for each option in [at, end).
  template <class F>
  void options(std::size_t at, std::size_t end, F&& fn) const {
    while (at + 4 <= end) {
      const auto code = get<std::uint16_t>(at);
      const auto len = get<std::uint16_t>(at + 2);
      if (code == kOptEndOfOpt) return;
      if (at + 4 + pad4(len) > end) bad(at, "option runs past its block");
      fn(code, at + 4, len);
      at += 4 + pad4(len);
    }
    if (at != end) bad(at, "options do not end at the block's end");
  }

  [[noreturn]] void bad(std::size_t at, const std::string& what) const {
    throw Error(ErrorKind::kInvalidArgument, path_,
                "pcapng file '" + path_ + "' at byte " + std::to_string(at) + ": " + what);
  }

 private:
  std::string path_;
  std::vector<unsigned char> bytes_;
};

std::vector<unsigned char> read_all(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) throw Error(ErrorKind::kNotFound, path, "cannot open '" + path + "'", errno);
  std::vector<unsigned char> out;
  unsigned char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(ErrorKind::kKernel, path, "cannot read '" + path + "'", errno);
    if (n == 0) return out;
    out.insert(out.end(), buf, buf + n);
  }
}

}  // namespace

PcapngFile read_pcapng(const std::string& path) {
  const Reader r(path, read_all(path));
  PcapngFile file;
  std::vector<std::int64_t> ns_per_unit;  // per interface, from if_tsresol
  auto timestamp = [&](std::size_t at, std::uint32_t iface) {
    const std::uint64_t units =
        (std::uint64_t{r.get<std::uint32_t>(at)} << 32) | r.get<std::uint32_t>(at + 4);
    return static_cast<std::int64_t>(units) * ns_per_unit[iface];
  };
  auto check_iface = [&](std::size_t at, std::uint32_t id) {
    if (id >= file.interfaces.size()) r.bad(at, "unknown interface " + std::to_string(id));
  };
  std::size_t pos = 0;
  while (pos < r.size()) {
    const auto type = r.get<std::uint32_t>(pos);
    const auto len = r.get<std::uint32_t>(pos + 4);
    if (len < 12 || len % 4 != 0 || pos + len > r.size()) r.bad(pos, "bad block length");
    if (r.get<std::uint32_t>(pos + len - 4) != len) r.bad(pos, "trailing length differs");
    const std::size_t body = pos + 8, end = pos + len - 4;
    if (pos == 0 && type != kPcapngSectionHeaderBlock) r.bad(0, "no section header first");
    file.block_types.push_back(type);
    switch (type) {
      case kPcapngSectionHeaderBlock:
        if (pos != 0) r.bad(pos, "more than one section");
        if (r.get<std::uint32_t>(body) != kPcapngByteOrderMagic) {
          r.bad(body, "byte-order magic is not this host's");
        }
        if (r.get<std::uint16_t>(body + 4) != 1) r.bad(body + 4, "major version is not 1");
        r.options(body + 16, end, [](std::uint16_t, std::size_t, std::size_t) {});
        break;
      case kPcapngInterfaceDescriptionBlock: {
        PcapngInterface iface;
        iface.linktype = r.get<std::uint16_t>(body);
        iface.snaplen = r.get<std::uint32_t>(body + 4);
        std::int64_t unit = 1000;  // the default resolution is microseconds
        r.options(body + 8, end, [&](std::uint16_t code, std::size_t at, std::size_t n) {
          if (code == kIfName) iface.name = r.text(at, n);
          if (code == kIfDescription) iface.description = r.text(at, n);
          if (code == kIfTsresol) {
            const auto res = r.get<std::uint8_t>(at);
            if (res == 9) {
              unit = 1;
            } else if (res != 6) {
              r.bad(at, "if_tsresol " + std::to_string(res) + " is not supported");
            }
          }
        });
        file.interfaces.push_back(iface);
        ns_per_unit.push_back(unit);
        break;
      }
      case kPcapngEnhancedPacketBlock: {
        PcapngRecord p;
        p.interface_id = r.get<std::uint32_t>(body);
        check_iface(body, p.interface_id);
        p.timestamp_ns = timestamp(body + 4, p.interface_id);
        const auto caplen = r.get<std::uint32_t>(body + 12);
        p.original_length = r.get<std::uint32_t>(body + 16);
        if (body + 20 + pad4(caplen) > end) r.bad(body + 12, "packet data runs past its block");
        p.data.assign(r.data(body + 20), r.data(body + 20) + caplen);
        r.options(body + 20 + pad4(caplen), end,
                  [&](std::uint16_t code, std::size_t at, std::size_t n) {
                    if (code == kEpbFlags && n == 4) p.flags = r.get<std::uint32_t>(at);
                    if (code == kOptComment) p.comment = r.text(at, n);
                  });
        file.packets.push_back(std::move(p));
        break;
      }
      case kPcapngInterfaceStatisticsBlock: {
        const auto id = r.get<std::uint32_t>(body);
        check_iface(body, id);
        PcapngInterfaceStats st;
        st.timestamp_ns = timestamp(body + 4, id);
        r.options(body + 12, end, [&](std::uint16_t code, std::size_t at, std::size_t n) {
          if (code == kIsbFilterAccept && n == 8) st.filter_accept = r.get<std::uint64_t>(at);
          if (code == kIsbOsDrop && n == 8) st.os_drop = r.get<std::uint64_t>(at);
          if (code == kIsbUsrDeliv && n == 8) st.user_delivered = r.get<std::uint64_t>(at);
          if (code == kOptComment) st.comment = r.text(at, n);
        });
        file.statistics.push_back(st);
        break;
      }
      default:
        break;  // other block types are legal; skipped like any reader does
    }
    pos += len;
  }
  if (file.block_types.empty()) r.bad(0, "empty file");
  return file;
}

PcapngWriter::PcapngWriter(std::string path, std::string culprit)
    : path_(std::move(path)), culprit_(std::move(culprit)) {
  fd_ = UniqueFd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd_.valid()) fail("cannot create", errno);
  append_section_header(buf_, "patchbay");
  size_ = buf_.size();
}

PcapngWriter::~PcapngWriter() {
  try {
    if (fd_.valid()) flush();
  } catch (const Error&) {
    // Nobody to tell; close() is the way to see write errors.
  }
}

void PcapngWriter::fail(const std::string& what, int err) const {
  throw Error(ErrorKind::kKernel, culprit_,
              "capture of '" + culprit_ + "': " + what + " '" + path_ + "'", err);
}

std::uint32_t PcapngWriter::add_interface(const PcapngInterface& iface) {
  if (!fd_.valid()) fail("write after close", EBADF);
  const std::size_t before = buf_.size();
  append_interface_description(buf_, iface);
  size_ += buf_.size() - before;
  maybe_flush();
  return interfaces_++;
}

void PcapngWriter::check_interface(std::uint32_t interface_id) const {
  if (!fd_.valid()) fail("write after close", EBADF);
  if (interface_id >= interfaces_) {
    throw Error(ErrorKind::kInvalidArgument, culprit_,
                "capture of '" + culprit_ + "': no interface " + std::to_string(interface_id) +
                    " in '" + path_ + "'");
  }
}

void PcapngWriter::write_packet(std::uint32_t interface_id, const PcapngPacket& packet) {
  check_interface(interface_id);
  const std::size_t before = buf_.size();
  append_enhanced_packet(buf_, interface_id, packet);
  size_ += buf_.size() - before;
  maybe_flush();
}

void PcapngWriter::write_statistics(std::uint32_t interface_id, const PcapngInterfaceStats& stats) {
  check_interface(interface_id);
  const std::size_t before = buf_.size();
  append_interface_statistics(buf_, interface_id, stats);
  size_ += buf_.size() - before;
  maybe_flush();
}

void PcapngWriter::maybe_flush() {
  if (buf_.size() >= kFlushThreshold) flush();
}

void PcapngWriter::flush() {
  if (!fd_.valid()) fail("write after close", EBADF);
  std::size_t done = 0;
  while (done < buf_.size()) {
    ssize_t n = ::write(fd_.get(), buf_.data() + done, buf_.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      buf_.clear();  // a later flush must not write a torn block after the failed one
      fail("cannot write", err);
    }
    done += static_cast<std::size_t>(n);
  }
  buf_.clear();
}

void PcapngWriter::close() {
  flush();
  const int fd = fd_.release();
  if (::close(fd) < 0 && errno != EINTR) fail("cannot close", errno);
}

}  // namespace patchbay::internal
