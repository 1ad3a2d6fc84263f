#include "frame_pump.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <future>
#include <iterator>
#include <limits>
#include <utility>

#include "gso_segment.hpp"
#include "patchbay/error.hpp"
#include "virtio_net_hdr.hpp"
#include "worker_thread.hpp"

namespace patchbay::internal {
namespace {

// Frames read from one endpoint per wakeup, so one busy link cannot starve the others.
constexpr int kReadBatch = 64;
// Held frames sent between two looks at the endpoints while a burst of them is due.
constexpr std::size_t kWritesBetweenReads = 4;
// How long the loop polls for more frames after it handled some, before it sleeps.
constexpr std::int64_t kBusyPollNs = 50'000;
constexpr int kSocketBuffer = 16 << 20;

std::int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

[[noreturn]] void kernel_error(const std::string& culprit, const std::string& what) {
  int err = errno;
  throw Error(ErrorKind::kKernel, culprit, "link emulator for '" + culprit + "': " + what, err);
}

void set_nonblocking(int fd, const std::string& culprit) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    kernel_error(culprit, "cannot make fd non-blocking");
  }
}

// A classic BPF program decides in the kernel, before a frame is queued: kSent keeps frames
// whose packet type is OUTGOING (a bridge device's socket also sees what its ports deliver to
// the stack), kNothing keeps none.
void attach_capture_filter(int fd, PacketCapture capture, const std::string& culprit) {
  sock_filter sent_only[] = {
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, static_cast<std::uint32_t>(SKF_AD_OFF + SKF_AD_PKTTYPE)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),  // the whole frame
      BPF_STMT(BPF_RET | BPF_K, 0),
  };
  sock_filter none[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
  sock_fprog prog{};
  if (capture == PacketCapture::kSent) {
    prog = {static_cast<unsigned short>(std::size(sent_only)), sent_only};
  } else {
    prog = {static_cast<unsigned short>(std::size(none)), none};
  }
  if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) {
    kernel_error(culprit, "SO_ATTACH_FILTER");
  }
}

}  // namespace

UniqueFd open_tap(const std::string& name, const std::string& culprit) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    throw Error(ErrorKind::kInvalidArgument, culprit,
                "link emulator for '" + culprit + "': bad TAP name '" + name + "'");
  }
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) kernel_error(culprit, "cannot open /dev/net/tun");
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) kernel_error(culprit, "TUNSETIFF '" + name + "'");
  int hdr_len = static_cast<int>(kVnetHdrLen);
  if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr_len) < 0) {
    kernel_error(culprit, "TUNSETVNETHDRSZ '" + name + "'");
  }
  // Without these the kernel segments and checksums every frame before handing it to us, and
  // the pump becomes CPU-bound at ~2 Gbit/s.
  unsigned long offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
  if (::ioctl(fd.get(), TUNSETOFFLOAD, offloads) < 0) {
    kernel_error(culprit, "TUNSETOFFLOAD '" + name + "'");
  }
  return fd;
}

UniqueFd open_packet_socket(int ifindex, const std::string& culprit, PacketCapture capture) {
  // Protocol 0 until bound, so no frame of another interface slips in before bind().
  UniqueFd fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) kernel_error(culprit, "cannot open AF_PACKET socket");
  int one = 1;
  if (::setsockopt(fd.get(), SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) {
    kernel_error(culprit, "PACKET_VNET_HDR");
  }
  if (capture == PacketCapture::kReceived &&
      ::setsockopt(fd.get(), SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) {
    kernel_error(culprit, "PACKET_IGNORE_OUTGOING");
  }
  // Before bind(): from the first frame on, only the wanted ones are queued.
  if (capture != PacketCapture::kReceived) attach_capture_filter(fd.get(), capture, culprit);
  // Straight to the driver: a veth has no queue worth passing through, and the emulator is
  // the link's queue anyway. Best effort (an older kernel just keeps the qdisc path).
  ::setsockopt(fd.get(), SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
  // The default 208 KiB holds three GSO superpackets or ~250 small frames: a burst arriving
  // while the loop is busy would be lost before the model sees it. FORCE works with
  // CAP_NET_ADMIN over the namespace; otherwise take what rmem_max allows.
  int buf = kSocketBuffer;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) < 0) {
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  }
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) < 0) {
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  }
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = ifindex;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) < 0) {
    kernel_error(culprit, "cannot bind AF_PACKET socket to ifindex " + std::to_string(ifindex));
  }
  return fd;
}

struct FramePump::Endpoint {
  Link* link;
  int side;  // 0: a, 1: b; frames read here go out of the other side
  bool watched = true;
  // Its socket's send buffer was full: frames for it wait (held) until EPOLLOUT.
  bool write_blocked = false;
};

struct FramePump::Link {
  struct Held {
    std::int64_t at;
    std::uint64_t seq;  // ties keep arrival order
    FrameBuffer frame;
  };
  struct Direction {
    LinkModel model;
    // Min-heap on (at, seq): without reorder_pct the model's departures are already in order
    // and this is a FIFO; with it, reordered frames overtake held ones.
    std::vector<Held> held;
    std::size_t held_bytes = 0;
    std::uint64_t next_seq = 0;
    DirectionStats stats;
  };
  static bool later(const Held& x, const Held& y) {
    return x.at != y.at ? x.at > y.at : x.seq > y.seq;
  }

  LinkId id;
  UniqueFd fd[2];
  Endpoint ep[2];
  Direction dir[2];  // dir[s]: frames read from side s
};

FramePump::FramePump() : read_buf_(pool_.take(FrameBufferPool::kLarge)) {
  epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) kernel_error("frame pump", "cannot create epoll");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &commands_;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, commands_.fd(), &ev) < 0) {
    kernel_error("frame pump", "epoll_ctl eventfd");
  }
  thread_ = std::thread([this] { run(); });
}

FramePump::~FramePump() {
  try {
    commands_.call([this] { stopping_ = true; });
  } catch (...) {
    // The loop is gone already; nothing else to stop.
  }
  if (thread_.joinable()) thread_.join();
}

FramePump::Link& FramePump::find(LinkId id, const char* what) {
  auto it = links_.find(id);
  if (it == links_.end()) {
    throw Error(ErrorKind::kNotFound, "link " + std::to_string(id),
                std::string("link emulator: ") + what + ": no link " + std::to_string(id));
  }
  return *it->second;
}

FramePump::LinkId FramePump::add_link(UniqueFd a, UniqueFd b, const LinkModelParams& a_to_b,
                                      const LinkModelParams& b_to_a, std::uint64_t seed) {
  LinkId id = 0;
  commands_.call([&] {
    id = next_id_++;
    const std::string culprit = "link " + std::to_string(id);
    set_nonblocking(a.get(), culprit);
    set_nonblocking(b.get(), culprit);
    auto link = std::unique_ptr<Link>(new Link{
        id,
        {std::move(a), std::move(b)},
        {Endpoint{nullptr, 0, true}, Endpoint{nullptr, 1, true}},
        {Link::Direction{LinkModel(a_to_b, derive_seed(seed, 0, 0)), {}, 0, 0, {}},
         Link::Direction{LinkModel(b_to_a, derive_seed(seed, 0, 1)), {}, 0, 0, {}}},
    });
    for (int s = 0; s < 2; ++s) {
      link->ep[s].link = link.get();
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = &link->ep[s];
      if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, link->fd[s].get(), &ev) < 0) {
        if (s == 1) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, link->fd[0].get(), nullptr);
        kernel_error(culprit, "epoll_ctl endpoint");
      }
    }
    links_.emplace(id, std::move(link));
  });
  return id;
}

void FramePump::set_params(LinkId id, const LinkModelParams& a_to_b,
                           const LinkModelParams& b_to_a) {
  commands_.call([&] {
    Link& link = find(id, "set_params");
    link.dir[0].model.set_params(a_to_b);
    link.dir[1].model.set_params(b_to_a);
  });
}

void FramePump::remove_link(LinkId id) {
  commands_.call([&] {
    Link& link = find(id, "remove_link");
    for (int s = 0; s < 2; ++s) {
      if (link.ep[s].watched) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, link.fd[s].get(), nullptr);
    }
    links_.erase(id);
  });
}

FramePump::LinkStats FramePump::stats(LinkId id) {
  LinkStats out;
  commands_.call([&] {
    Link& link = find(id, "stats");
    for (int side = 0; side < 2; ++side) {
      // AF_PACKET counts what overflowed its receive buffer before we read it (the counters
      // reset on every read, hence the sum). Fails harmlessly on a TAP fd.
      tpacket_stats st{};
      socklen_t len = sizeof st;
      if (::getsockopt(link.fd[side].get(), SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0) {
        link.dir[side].stats.socket_drops += st.tp_drops;
      }
    }
    out = LinkStats{link.dir[0].stats, link.dir[1].stats};
  });
  return out;
}

namespace {

// Loss, duplication, corruption, reordering and rate act on wire packets: a superpacket must be
// split into the segments the kernel would have sent. Pure delay does not care.
bool needs_wire_packets(const LinkModelParams& p) {
  return p.loss_pct > 0 || p.duplicate_pct > 0 || p.corrupt_pct > 0 || p.reorder_pct > 0 ||
         p.rate_bps > 0;
}

}  // namespace

void FramePump::on_readable(Endpoint& ep) {
  Link& link = *ep.link;
  Link::Direction& dir = link.dir[ep.side];
  for (int i = 0; i < kReadBatch; ++i) {
    ssize_t n = ::read(link.fd[ep.side].get(), read_buf_.data(), read_buf_.capacity);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      if (errno == ENETDOWN) continue;  // AF_PACKET reports a link flap once; keep going
      // The endpoint is gone (e.g. its device was deleted): stop watching it rather than spin.
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, link.fd[ep.side].get(), nullptr);
      ep.watched = false;
      return;
    }
    if (static_cast<std::size_t>(n) < kVnetHdrLen) continue;
    const std::size_t len = static_cast<std::size_t>(n);
    VirtioNetHdr hdr;
    std::memcpy(&hdr, read_buf_.data(), kVnetHdrLen);
    const bool gso = (hdr.gso_type & ~kVnetGsoEcn) != kVnetGsoNone;
    ++dir.stats.frames_in;
    ++frames_read_;
    const std::int64_t now = now_ns();
    if (gso) {
      ++dir.stats.gso_frames;
      if (needs_wire_packets(dir.model.params()) &&
          segmenter_.split(read_buf_.data(), len) == GsoStatus::kSegmented) {
        ++dir.stats.gso_split;
        for (std::size_t k = 0; k < segmenter_.count(); ++k) {
          std::span<unsigned char> seg = segmenter_.segment(k);
          admit(link, ep.side, seg.data(), seg.size(), false, now, nullptr);
        }
        continue;
      }
    }
    admit(link, ep.side, read_buf_.data(), len, gso, now, &read_buf_);
  }
}

void FramePump::admit(Link& link, int side, const unsigned char* record, std::size_t len, bool gso,
                      std::int64_t now, FrameBuffer* owner) {
  Link::Direction& dir = link.dir[side];
  const int out_fd = link.fd[1 - side].get();
  std::vector<LinkModel::Departure> departures =
      dir.model.admit(LinkModel::Time(now), len - kVnetHdrLen);
  if (departures.empty()) ++dir.stats.model_drops;
  for (std::size_t k = 0; k < departures.size(); ++k) {
    const LinkModel::Departure& d = departures[k];
    const std::int64_t at = d.at.count();
    Endpoint& out = link.ep[1 - side];
    if (!d.corrupt_bit && at <= now && dir.held.empty() && !out.write_blocked) {
      // Due now and nothing ahead of it: straight out, no copy (the common 0 ms case).
      if (::write(out_fd, record, len) >= 0) {
        ++dir.stats.frames_out;
        continue;
      }
      if (errno != EAGAIN && errno != ENOBUFS) {
        ++dir.stats.write_errors;
        continue;
      }
      // The far socket is full: the frame waits in line like a held one.
      block_writes(out);
    }
    if (dir.held_bytes + len > kMaxHeldBytes) {
      ++dir.stats.backlog_drops;
      continue;
    }
    // A held superpacket keeps the buffer it was read into (the last departure takes it, the
    // reader gets a fresh one); small frames and copies go into pooled buffers.
    FrameBuffer frame;
    if (owner && k + 1 == departures.size() && len > FrameBufferPool::kSmall) {
      frame = std::exchange(*owner, pool_.take(FrameBufferPool::kLarge));
      frame.len = len;
    } else {
      frame = pool_.take(len);
      std::memcpy(frame.data(), record, len);
    }
    if (d.corrupt_bit) {
      VirtioNetHdr h;
      std::memcpy(&h, frame.data(), kVnetHdrLen);
      unsigned char* eth = frame.data() + kVnetHdrLen;
      const std::size_t eth_len = len - kVnetHdrLen;
      // A superpacket that could not be split would flip one bit in ~45 packets' worth; and a
      // partial checksum must be completed first, or the receiver's kernel would checksum the
      // flipped bit in and never notice.
      if (gso || !complete_partial_checksum(eth, eth_len, h)) {
        ++dir.stats.corrupt_gso_drops;
        pool_.give(std::move(frame));
        continue;
      }
      std::memcpy(frame.data(), &h, kVnetHdrLen);
      const std::size_t bit = *d.corrupt_bit % (8 * eth_len);
      eth[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
      if (at <= now && dir.held.empty() && !out.write_blocked &&
          ::write(out_fd, frame.data(), frame.len) >= 0) {
        ++dir.stats.frames_out;
        pool_.give(std::move(frame));
        continue;
      }
    }
    dir.held_bytes += len;
    dir.held.push_back(Link::Held{at, dir.next_seq++, std::move(frame)});
    std::push_heap(dir.held.begin(), dir.held.end(), Link::later);
  }
}

void FramePump::flush_due(Link& link, int side, std::int64_t now) {
  Link::Direction& dir = link.dir[side];
  const int out_fd = link.fd[1 - side].get();
  Endpoint& out = link.ep[1 - side];
  std::size_t writes = 0;
  while (!out.write_blocked && !dir.held.empty() && dir.held.front().at <= now) {
    if (::write(out_fd, dir.held.front().frame.data(), dir.held.front().frame.len) < 0) {
      if (errno == EAGAIN || errno == ENOBUFS) {
        block_writes(out);  // the frame stays first in line
        return;
      }
      ++dir.stats.write_errors;
    } else {
      ++dir.stats.frames_out;
    }
    std::pop_heap(dir.held.begin(), dir.held.end(), Link::later);
    Link::Held& h = dir.held.back();
    dir.held_bytes -= h.frame.len;
    pool_.give(std::move(h.frame));
    dir.held.pop_back();
    // Each write also runs the receiver's (and, for ACKs, the sender's) stack in this thread,
    // so a burst of due frames takes long; meanwhile arrivals would overflow the endpoints'
    // receive buffers (rmem_max-bound, a few MiB) and be lost. Taking them in between moves
    // the queue into held frames, bounded by kMaxHeldBytes instead.
    if (++writes % kWritesBetweenReads == 0) {
      for (Endpoint& ep : link.ep) {
        if (ep.watched) on_readable(ep);
      }
    }
  }
}

void FramePump::block_writes(Endpoint& ep) {
  ep.write_blocked = true;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.ptr = &ep;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, ep.link->fd[ep.side].get(), &ev);
}

void FramePump::unblock_writes(Endpoint& ep) {
  ep.write_blocked = false;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &ep;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, ep.link->fd[ep.side].get(), &ev);
}

std::int64_t FramePump::next_due() const {
  std::int64_t next = std::numeric_limits<std::int64_t>::max();
  for (const auto& [id, link] : links_) {
    for (int side = 0; side < 2; ++side) {
      const Link::Direction& dir = link->dir[side];
      // A blocked direction waits for EPOLLOUT, not for the clock.
      if (!dir.held.empty() && !link->ep[1 - side].write_blocked) {
        next = std::min(next, dir.held.front().at);
      }
    }
  }
  return next;
}

void FramePump::run() {
  set_current_thread_name("frame-pump");
  // The default 50 us of timer slack would be added to every held frame's delay.
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  constexpr int kMaxEvents = 64;
  epoll_event events[kMaxEvents];
  while (!stopping_) {
    const std::int64_t now = now_ns();
    for (auto& [id, link] : links_) {
      flush_due(*link, 0, now);
      flush_due(*link, 1, now);
    }
    // Sleep until the earliest held frame is due (or an endpoint or a command wakes us), with
    // the nanosecond timeout of epoll_pwait2: no timer fd to re-arm on every round.
    const std::int64_t due = next_due();
    int n = 0;
    // Right after traffic, poll for a moment before sleeping: the next frame of a busy flow
    // is usually microseconds away, and a sleep/wake-up per frame costs more than the poll.
    if (frames_read_ != frames_read_at_last_poll_) {
      frames_read_at_last_poll_ = frames_read_;
      const std::int64_t spin_until = std::min(due, now_ns() + kBusyPollNs);
      while ((n = ::epoll_wait(epoll_.get(), events, kMaxEvents, 0)) == 0 &&
             now_ns() < spin_until) {
      }
    }
    if (n <= 0 && due == std::numeric_limits<std::int64_t>::max()) {
      n = ::epoll_wait(epoll_.get(), events, kMaxEvents, -1);
    } else if (n <= 0) {
      const std::int64_t wait = std::max<std::int64_t>(0, due - now_ns());
      timespec timeout{static_cast<time_t>(wait / 1'000'000'000),
                       static_cast<long>(wait % 1'000'000'000)};
      n = ::epoll_pwait2(epoll_.get(), events, kMaxEvents, &timeout, nullptr);
    }
    if (n < 0) continue;  // EINTR
    bool woken = false;
    for (int i = 0; i < n; ++i) {
      void* tag = events[i].data.ptr;
      if (tag == &commands_) {
        woken = true;
      } else {
        Endpoint& ep = *static_cast<Endpoint*>(tag);
        if ((events[i].events & EPOLLOUT) && ep.write_blocked) unblock_writes(ep);
        if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(ep);
      }
    }
    // Commands last: one may remove a link whose endpoint appears later in `events`.
    if (woken) commands_.run_pending();
  }
  // Held frames and fds go with the links, on this thread, before join() returns.
  links_.clear();
}

}  // namespace patchbay::internal
