// A UDP socket created inside a node and driven from the test thread. A socket belongs to the
// namespace it was created in, whichever thread uses it later, so a test can play both sides of
// an exchange step by step, deterministically, without a server thread.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/ip/udp.hpp>

#include <cerrno>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "patchbay/node.hpp"

namespace pbtest {

using Endpoint = boost::asio::ip::udp::endpoint;

struct Datagram {
  Endpoint from;
  std::string payload;
};

class UdpSocket {
 public:
  // Binds 0.0.0.0:`port` (0: any) inside `node`.
  static UdpSocket open_in(const patchbay::Node& node, std::uint16_t port = 0) {
    int fd = node.run([port] {
      int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      if (s < 0) throw std::system_error(errno, std::generic_category(), "socket");
      int one = 1;
      ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_port = htons(port);
      if (::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) {
        int e = errno;
        ::close(s);
        throw std::system_error(e, std::generic_category(), "bind");
      }
      return s;
    });
    return UdpSocket(fd);
  }

  UdpSocket(UdpSocket&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UdpSocket& operator=(UdpSocket&&) = delete;
  ~UdpSocket() {
    if (fd_ >= 0) ::close(fd_);
  }

  std::uint16_t port() const {
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    return ntohs(sa.sin_port);
  }

  void send_to(const Endpoint& to, const std::string& payload) const {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(to.port());
    sa.sin_addr.s_addr = htonl(to.address().to_v4().to_uint());
    if (::sendto(fd_, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&sa),
                 sizeof sa) < 0) {
      throw std::system_error(errno, std::generic_category(), "sendto");
    }
  }

  // The next datagram, or nullopt if none arrives within `timeout`.
  std::optional<Datagram> receive(std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() < 0) return std::nullopt;
      pollfd pfd{fd_, POLLIN, 0};
      int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return std::nullopt;
      char buf[2048];
      sockaddr_in sa{};
      socklen_t len = sizeof sa;
      ssize_t n = ::recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&sa), &len);
      if (n < 0) {
        // An ICMP error queued for an earlier datagram; not a datagram, keep waiting.
        if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == EINTR) continue;
        throw std::system_error(errno, std::generic_category(), "recvfrom");
      }
      return Datagram{
          Endpoint(boost::asio::ip::address_v4(ntohl(sa.sin_addr.s_addr)), ntohs(sa.sin_port)),
          std::string(buf, static_cast<std::size_t>(n))};
    }
  }

  int fd() const { return fd_; }

  // Drops whatever is queued (answers to earlier sends).
  void drain() const {
    while (receive(std::chrono::milliseconds(0))) {
    }
  }

 private:
  explicit UdpSocket(int fd) : fd_(fd) {}
  int fd_;
};

// Sends from `client` to `server`'s socket and returns the source the server saw (the client's
// external mapping), or nullopt. Resends a few times, as a lost datagram would otherwise look
// like a filtered one.
inline std::optional<Endpoint> mapping_seen_by(const UdpSocket& client, const UdpSocket& server,
                                               const Endpoint& server_addr,
                                               const std::string& tag = "probe") {
  for (int attempt = 0; attempt < 3; ++attempt) {
    client.send_to(server_addr, tag);
    auto got = server.receive(std::chrono::milliseconds(300));
    while (got && got->payload != tag) got = server.receive(std::chrono::milliseconds(300));
    if (got) return got->from;
  }
  return std::nullopt;
}

}  // namespace pbtest
