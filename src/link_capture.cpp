#include "link_capture.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <future>
#include <optional>
#include <utility>
#include <variant>

#include "capture_ring.hpp"
#include "patchbay/error.hpp"
#include "pcapng_writer.hpp"
#include "worker_thread.hpp"

namespace patchbay::internal {
namespace {

// Messages per recvmmsg call, and calls per wakeup per link: one busy link cannot starve the
// others, and the loop gets back to commands (flush, stats) within a bounded time.
constexpr unsigned kBatch = 32;
constexpr int kRoundsPerWake = 8;
// flush() reads until the queue is empty, but under a flood it never is: this many packets
// cover a full receive buffer of small frames.
constexpr int kDrainRounds = 4096;
// Room for a burst while the loop is busy (writing a streamed file, copying a ring snapshot).
// FORCE works with CAP_NET_ADMIN over the namespace; otherwise take what rmem_max allows.
constexpr int kSocketBuffer = 16 << 20;
constexpr std::size_t kVlanTagLen = 4;
// PACKET_AUXDATA and SCM_TIMESTAMPNS, with room to spare.
constexpr std::size_t kControlLen = 256;

[[noreturn]] void kernel_error(const std::string& culprit, const std::string& what, int err) {
  throw Error(ErrorKind::kKernel, culprit, "capture of '" + culprit + "': " + what, err);
}

std::int64_t realtime_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// The kernel cuts each frame to the filter's return value before queueing it (recording the
// original length for PACKET_AUXDATA): big frames beyond the snap length are never copied.
void attach_snaplen_filter(int fd, std::uint32_t snaplen, const std::string& culprit) {
  sock_filter keep[] = {BPF_STMT(BPF_RET | BPF_K, snaplen)};
  sock_fprog prog{1, keep};
  if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) {
    kernel_error(culprit, "SO_ATTACH_FILTER", errno);
  }
}

// Copies the first `size` bytes of `from` to `to` (a streamed file that keeps growing behind
// that point).
void copy_prefix(const std::string& from, const std::string& to, std::uint64_t size,
                 const std::string& culprit) {
  UniqueFd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) kernel_error(culprit, "cannot open '" + from + "'", errno);
  UniqueFd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!out.valid()) kernel_error(culprit, "cannot create '" + to + "'", errno);
  std::vector<unsigned char> buf(1u << 20);
  while (size > 0) {
    ssize_t n = ::read(in.get(), buf.data(), std::min<std::uint64_t>(buf.size(), size));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) kernel_error(culprit, "cannot read '" + from + "'", n < 0 ? errno : EIO);
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::write(out.get(), buf.data() + done, static_cast<std::size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) kernel_error(culprit, "cannot write '" + to + "'", errno);
      done += w;
    }
    size -= static_cast<std::uint64_t>(n);
  }
  if (::close(out.release()) < 0 && errno != EINTR) {
    kernel_error(culprit, "cannot close '" + to + "'", errno);
  }
}

}  // namespace

UniqueFd open_capture_socket(int ifindex, const std::string& culprit) {
  // Protocol 0 until bound, so no frame of another interface slips in before bind().
  UniqueFd fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) kernel_error(culprit, "cannot open AF_PACKET socket", errno);
  int one = 1;
  // The original length of frames cut by the snap length, and the VLAN tag the kernel strips.
  if (::setsockopt(fd.get(), SOL_PACKET, PACKET_AUXDATA, &one, sizeof one) < 0) {
    kernel_error(culprit, "PACKET_AUXDATA", errno);
  }
  // The time the kernel saw the frame, not the time the loop got round to reading it.
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0) {
    kernel_error(culprit, "SO_TIMESTAMPNS", errno);
  }
  int buf = kSocketBuffer;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) < 0) {
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  }
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = ifindex;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) < 0) {
    kernel_error(culprit, "cannot bind AF_PACKET socket to ifindex " + std::to_string(ifindex),
                 errno);
  }
  return fd;
}

struct LinkCapture::Link {
  Link(std::string key_in, std::uint32_t snaplen_in, PcapngInterface iface_in,
       std::variant<CaptureRing, CaptureStream> sink_in)
      : key(std::move(key_in)),
        snaplen(snaplen_in),
        iface(std::move(iface_in)),
        sink(std::move(sink_in)) {}

  std::string key;
  UniqueFd fd;
  std::uint32_t snaplen = 0;
  PcapngInterface iface;
  std::variant<CaptureRing, CaptureStream> sink;
  bool watched = true;
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
  std::uint64_t kernel_drops = 0;
  // A streamed file could not be written: reading goes on (so the kernel does not pile up
  // frames), flush() and remove() report this.
  std::exception_ptr error;

  CaptureRing* ring() { return std::get_if<CaptureRing>(&sink); }
  CaptureStream* stream() { return std::get_if<CaptureStream>(&sink); }
};

// recvmmsg's buffers: kBatch frames of the largest snap length of any link (plus a VLAN tag).
struct LinkCapture::Slots {
  std::size_t size = 0;
  std::unique_ptr<unsigned char[]> data;
  mmsghdr msgs[kBatch]{};
  iovec iov[kBatch]{};
  sockaddr_ll names[kBatch]{};
  alignas(cmsghdr) unsigned char control[kBatch][kControlLen]{};
};

LinkCapture::LinkCapture() {
  // Cheap to make, and made here so add() cannot fail half-way for want of them; the thread
  // itself waits for the first capture.
  epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) kernel_error("link capture", "epoll", errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &commands_;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, commands_.fd(), &ev) < 0) {
    kernel_error("link capture", "epoll_ctl eventfd", errno);
  }
}

LinkCapture::~LinkCapture() {
  if (!running()) return;
  try {
    commands_.call([this] { stopping_ = true; });
  } catch (...) {
    // The loop is gone already; nothing else to stop.
  }
  thread_.join();
}

bool LinkCapture::running() const {
  std::lock_guard lock(start_mu_);
  return thread_.joinable();
}

LinkCapture::Link& LinkCapture::find(const std::string& key, const char* what) {
  auto it = links_.find(key);
  if (it == links_.end()) {
    throw Error(ErrorKind::kNotFound, key,
                std::string("capture ") + what + ": no capture of '" + key + "'");
  }
  return *it->second;
}

void LinkCapture::ensure_slots(std::uint32_t snaplen) {
  const std::size_t size = snaplen + kVlanTagLen;
  if (slots_ && slots_->size >= size) return;
  auto s = std::make_unique<Slots>();
  s->size = size;
  // Default-initialised, not zeroed: the pages are touched only as big frames arrive.
  s->data.reset(new unsigned char[size * kBatch]);
  for (unsigned i = 0; i < kBatch; ++i) {
    s->iov[i] = iovec{s->data.get() + i * size, size};
  }
  slots_ = std::move(s);
}

void LinkCapture::add(const std::string& key, UniqueFd socket, const CaptureOptions& options) {
  const bool streaming = !options.file.empty();
  if (!socket.valid()) {
    throw Error(ErrorKind::kInvalidArgument, key, "capture of '" + key + "': no socket");
  }
  if (options.snaplen == 0) {
    throw Error(ErrorKind::kInvalidArgument, key, "capture of '" + key + "': snaplen 0");
  }
  if (!streaming && options.ring_bytes == 0) {
    throw Error(ErrorKind::kInvalidArgument, key,
                "capture of '" + key + "': ring_bytes 0 (give a size or a file)");
  }
  {
    std::lock_guard lock(start_mu_);
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  }
  commands_.call([&] {
    if (links_.count(key)) {
      throw Error(ErrorKind::kAlreadyExists, key, "capture of '" + key + "' already exists");
    }
    PcapngInterface iface{.name = options.interface_name.empty() ? key : options.interface_name,
                          .description = options.interface_description,
                          .snaplen = options.snaplen};
    attach_snaplen_filter(socket.get(), options.snaplen, key);
    auto link = streaming ? std::make_unique<Link>(
                                key, options.snaplen, iface,
                                CaptureStream(options.file, iface, options.max_file_bytes, key))
                          : std::make_unique<Link>(key, options.snaplen, iface,
                                                   CaptureRing(options.ring_bytes));
    ensure_slots(options.snaplen);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = link.get();
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, socket.get(), &ev) < 0) {
      kernel_error(key, "epoll_ctl", errno);
    }
    link->fd = std::move(socket);
    links_.emplace(key, std::move(link));
  });
}

void LinkCapture::read_kernel_drops(Link& link) {
  // Reading the counters resets them: keep the running total here.
  tpacket_stats st{};
  socklen_t len = sizeof st;
  if (::getsockopt(link.fd.get(), SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0) {
    link.kernel_drops += st.tp_drops;
  }
}

CaptureStats LinkCapture::stats_of(Link& link) {
  read_kernel_drops(link);
  CaptureStats s;
  s.packets = link.packets;
  s.bytes = link.bytes;
  s.kernel_drops = link.kernel_drops;
  if (CaptureRing* ring = link.ring()) {
    s.budget_drops = ring->dropped_packets();
    s.held_packets = ring->packets();
    s.held_bytes = ring->bytes();
  } else {
    CaptureStream& stream = *link.stream();
    s.budget_drops = stream.dropped_packets();
    s.held_packets = stream.packets();
    s.held_bytes = stream.bytes();
    s.file_bytes = stream.file_bytes();
  }
  return s;
}

namespace {

PcapngInterfaceStats isb_for(const CaptureStats& s) {
  return PcapngInterfaceStats{.timestamp_ns = realtime_ns(),
                              .filter_accept = s.packets,
                              .os_drop = s.kernel_drops,
                              .user_delivered = std::nullopt,
                              .comment = {}};
}

}  // namespace

void LinkCapture::remove(const std::string& key) {
  if (!running()) find(key, "remove");  // nothing was ever added: throws
  std::exception_ptr error;
  commands_.call([&] {
    Link& link = find(key, "remove");
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, link.fd.get(), nullptr);
    if (CaptureStream* stream = link.stream()) {
      // What the kernel queued before remove() belongs in the file.
      drain(link);
      error = link.error;
      if (!error) {
        try {
          stream->close(isb_for(stats_of(link)));
        } catch (...) {
          error = std::current_exception();
        }
      }
    }
    links_.erase(key);  // closes the socket
  });
  if (error) std::rethrow_exception(error);
}

void LinkCapture::flush(const std::string& key, const std::string& path) {
  if (!running()) find(key, "flush");
  std::optional<CaptureRing> snapshot;
  PcapngInterface iface;
  PcapngInterfaceStats isb;
  std::string stream_path;
  std::uint64_t stream_size = 0;
  commands_.call([&] {
    Link& link = find(key, "flush");
    drain(link);
    if (link.error) std::rethrow_exception(link.error);
    isb = isb_for(stats_of(link));
    if (CaptureRing* ring = link.ring()) {
      snapshot.emplace(ring->snapshot());
      iface = link.iface;
    } else {
      try {
        stream_size = link.stream()->flush();
      } catch (...) {
        link.error = std::current_exception();
        throw;
      }
      stream_path = link.stream()->path();
    }
  });
  if (snapshot) {
    if (path.empty()) {
      throw Error(ErrorKind::kInvalidArgument, key,
                  "capture of '" + key + "': flush of a ring needs a file path");
    }
    write_pcapng(*snapshot, path, iface, isb, key);
    return;
  }
  if (path.empty()) return;
  std::error_code ec;
  if (std::filesystem::equivalent(path, stream_path, ec)) return;
  copy_prefix(stream_path, path, stream_size, key);
}

CaptureStats LinkCapture::stats(const std::string& key) {
  if (!running()) find(key, "stats");
  CaptureStats out;
  commands_.call([&] { out = stats_of(find(key, "stats")); });
  return out;
}

std::vector<std::string> LinkCapture::keys() {
  std::vector<std::string> out;
  if (!running()) return out;
  commands_.call([&] {
    for (const auto& [key, link] : links_) out.push_back(key);
  });
  return out;
}

void LinkCapture::drain(Link& link) {
  for (int i = 0; i < kDrainRounds && link.watched; ++i) {
    const std::size_t before = link.packets;
    on_readable(link);
    // Less than a full wakeup's worth: the queue ran dry.
    if (link.packets - before < kBatch * kRoundsPerWake) break;
  }
}

void LinkCapture::on_readable(Link& link) {
  Slots& s = *slots_;
  for (int round = 0; round < kRoundsPerWake; ++round) {
    for (unsigned i = 0; i < kBatch; ++i) {
      msghdr& h = s.msgs[i].msg_hdr;
      h = msghdr{};
      h.msg_name = &s.names[i];
      h.msg_namelen = sizeof s.names[i];
      h.msg_iov = &s.iov[i];
      h.msg_iovlen = 1;
      // A tag the kernel stripped goes back in front of the frame: keep room for it.
      s.iov[i].iov_len = std::min<std::size_t>(link.snaplen, s.size - kVlanTagLen);
      h.msg_control = s.control[i];
      h.msg_controllen = kControlLen;
    }
    int n = ::recvmmsg(link.fd.get(), s.msgs, kBatch, MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      // The device went away or flapped: AF_PACKET reports it once, then reads on.
      if (errno == ENETDOWN) continue;
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, link.fd.get(), nullptr);
      link.watched = false;
      return;
    }
    for (int i = 0; i < n; ++i) {
      msghdr& h = s.msgs[i].msg_hdr;
      unsigned char* frame = static_cast<unsigned char*>(s.iov[i].iov_base);
      std::size_t caplen = s.msgs[i].msg_len;
      std::uint32_t original = static_cast<std::uint32_t>(caplen);
      std::int64_t ts = 0;
      std::optional<tpacket_auxdata> aux;
      for (cmsghdr* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
        if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA) {
          aux.emplace();
          std::memcpy(&*aux, CMSG_DATA(c), sizeof *aux);
        } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
          timespec t;
          std::memcpy(&t, CMSG_DATA(c), sizeof t);
          ts = std::int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec;
        }
      }
      if (ts == 0) ts = realtime_ns();
      if (aux) {
        original = aux->tp_len;
        if ((aux->tp_status & TP_STATUS_VLAN_VALID) && caplen >= 2 * ETH_ALEN) {
          const std::uint16_t tpid = (aux->tp_status & TP_STATUS_VLAN_TPID_VALID)
                                         ? aux->tp_vlan_tpid
                                         : static_cast<std::uint16_t>(ETH_P_8021Q);
          std::memmove(frame + 2 * ETH_ALEN + kVlanTagLen, frame + 2 * ETH_ALEN,
                       caplen - 2 * ETH_ALEN);
          const std::uint16_t tag[2] = {htons(tpid), htons(aux->tp_vlan_tci)};
          std::memcpy(frame + 2 * ETH_ALEN, tag, sizeof tag);
          caplen += kVlanTagLen;
          original += kVlanTagLen;
        }
      }
      caplen = std::min<std::size_t>(caplen, link.snaplen);
      ++link.packets;
      link.bytes += original;
      const CapturedPacket meta{
          .timestamp_ns = ts, .original_length = original, .pkttype = s.names[i].sll_pkttype};
      const std::span<const unsigned char> data(frame, caplen);
      if (CaptureRing* ring = link.ring()) {
        ring->push(meta, data);
      } else if (!link.error) {
        try {
          link.stream()->push(meta, data);
        } catch (...) {
          link.error = std::current_exception();
        }
      }
    }
    if (static_cast<unsigned>(n) < kBatch) return;  // the queue ran dry
  }
}

void LinkCapture::run() {
  set_current_thread_name("link-capture");
  constexpr int kMaxEvents = 64;
  epoll_event events[kMaxEvents];
  while (!stopping_) {
    int n = ::epoll_wait(epoll_.get(), events, kMaxEvents, -1);
    if (n < 0) continue;  // EINTR
    bool woken = false;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == &commands_) {
        woken = true;
      } else {
        on_readable(*static_cast<Link*>(events[i].data.ptr));
      }
    }
    // Commands last: one may remove a link whose socket appears later in `events`.
    if (woken) commands_.run_pending();
  }
  // Streamed files are completed; sockets close with their links, before join() returns.
  for (auto& [key, link] : links_) {
    if (CaptureStream* stream = link->stream(); stream && !link->error) {
      try {
        drain(*link);
        stream->close(isb_for(stats_of(*link)));
      } catch (...) {
        // Destruction has nobody to tell; remove() is the way to see this.
      }
    }
  }
  links_.clear();
}

}  // namespace patchbay::internal
