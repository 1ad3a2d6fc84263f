// Reflectors, the RFC 5780 probe and UDP hole punching. Servers run on a thread of their own
// inside their node (spawn_thread) with a private io_context, so stopping one is io.stop() plus
// waiting for that thread: nothing is left on the node's shared io_context, and the lab's
// stop_token ends the thread too if the lab goes first. Clients run as blocking callables in
// their node and wait with poll(2) deadlines.
#include "patchbay/nat_probe.hpp"

#include <poll.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <functional>
#include <future>
#include <ostream>
#include <stop_token>
#include <string_view>
#include <vector>

#include "patchbay/error.hpp"

namespace patchbay {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace internal {

// One server thread inside a node. The thread holds only a raw pointer to this object, which
// is safe because the destructor waits for the thread; a shared_ptr there would be a cycle
// (the packaged_task behind `done` keeps its callable alive).
struct ServiceThread {
  asio::io_context io;
  std::future<void> done;

  void request_stop() { io.stop(); }
  void wait() {
    if (done.valid()) done.wait();
  }
  ~ServiceThread() {
    request_stop();
    wait();
  }
};

}  // namespace internal

namespace {

using internal::ServiceThread;

// Starts `service`'s thread in `node`. `setup(io)` runs on that thread, inside the node's
// namespace, creates the sockets and returns what must stay alive while the service runs; its
// exception (a bind failure) is rethrown here. Returns once setup has finished.
template <class Setup>
void start_service(ServiceThread& service, const Node& node, Setup setup) {
  auto ready = std::make_shared<std::promise<void>>();
  std::future<void> ready_result = ready->get_future();
  service.done = node.spawn_thread(
      [svc = &service, ready, setup = std::move(setup)](std::stop_token stop) mutable {
        // The lab requests stop when the node or lab goes away before we were stopped.
        std::stop_callback on_stop(stop, [svc] { svc->io.stop(); });
        std::shared_ptr<void> state;
        try {
          state = setup(svc->io);
        } catch (...) {
          ready->set_exception(std::current_exception());
          return;
        }
        ready->set_value();
        svc->io.run();
        // `state` (the sockets) is destroyed here, before `done` becomes ready: once stop()
        // returns, the ports are free again.
      });
  ready_result.get();
}

template <class Setup>
std::shared_ptr<ServiceThread> start_service(const Node& node, Setup setup) {
  auto service = std::make_shared<ServiceThread>();
  start_service(*service, node, std::move(setup));
  return service;
}

asio::ip::address unmapped(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  }
  return a;
}

template <class Endpoint>
std::string observed_text(const Endpoint& from) {
  asio::ip::address a = unmapped(from.address());
  std::string host = a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
  return "OBSERVED " + host + ":" + std::to_string(from.port());
}

// Parses "OBSERVED <ip>:<port>" or "OBSERVED [<ipv6>]:<port>" (an optional trailing newline).
std::optional<std::pair<asio::ip::address, std::uint16_t>> parse_observed(std::string_view text) {
  constexpr std::string_view kPrefix = "OBSERVED ";
  if (text.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  text.remove_prefix(kPrefix.size());
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::string_view host = text.substr(0, colon);
  std::string_view port_text = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  unsigned long port = 0;
  try {
    std::size_t used = 0;
    port = std::stoul(std::string(port_text), &used);
    if (used != port_text.size() || port > 65535) return std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
  boost::system::error_code ec;
  asio::ip::address address = asio::ip::make_address(std::string(host), ec);
  if (ec) return std::nullopt;
  return std::pair{address, static_cast<std::uint16_t>(port)};
}

[[noreturn]] void throw_bind_error(const std::string& node, const char* proto, std::uint16_t port,
                                   const boost::system::error_code& ec) {
  ErrorKind kind =
      ec == asio::error::address_in_use ? ErrorKind::kAlreadyExists : ErrorKind::kKernel;
  throw Error(
      kind, node,
      std::string("cannot bind ") + proto + " port " + std::to_string(port) + " in '" + node + "'",
      ec.value());
}

// The address others reach `node` at: IPv4 of the default interface (a router's uplink), else
// any IPv4, else the IPv6 counterparts.
struct NodeAddresses {
  std::optional<asio::ip::address> v4;
  std::optional<asio::ip::address> v6;
};

NodeAddresses node_addresses(const Node& node) {
  NodeAddresses out;
  auto ifaces = node.interfaces();
  for (int pass = 0; pass < 2; ++pass) {
    for (const Interface& i : ifaces) {
      if (pass == 0 && !i.is_default) continue;
      if (!out.v4 && i.ip()) out.v4 = asio::ip::address(*i.ip());
      if (!out.v6 && i.ip6()) out.v6 = asio::ip::address(*i.ip6());
    }
  }
  if (!out.v4 && !out.v6) {
    throw Error(ErrorKind::kInvalidArgument, node.name(),
                "node '" + node.name() + "' has no address to reach a reflector at");
  }
  return out;
}

// Opens a dual-stack IPv6 socket, or IPv4 where the namespace has no IPv6.
template <class Socket, class Protocol>
Protocol open_any_family(Socket& s) {
  boost::system::error_code ec;
  s.open(Protocol::v6(), ec);
  if (!ec) {
    s.set_option(asio::ip::v6_only(false), ec);
    if (!ec) return Protocol::v6();
    s.close();
  }
  s.open(Protocol::v4());
  return Protocol::v4();
}

bool transient(const boost::system::error_code& ec) {
  return ec != asio::error::operation_aborted && ec != asio::error::bad_descriptor;
}

// A UDP socket that answers every datagram through `respond`.
struct UdpResponder {
  using Respond = std::function<void(UdpResponder&, const udp::endpoint&, std::string_view)>;
  UdpResponder(asio::io_context& io, Respond r) : socket(io), respond(std::move(r)) {}

  void arm() {
    socket.async_receive_from(asio::buffer(buf), from,
                              [this](const boost::system::error_code& ec, std::size_t n) {
                                if (!ec) respond(*this, from, std::string_view(buf.data(), n));
                                // ICMP errors can surface as receive errors; keep serving.
                                if (!ec || transient(ec)) arm();
                              });
  }
  void reply(const udp::endpoint& to, const std::string& text) {
    boost::system::error_code ignored;
    socket.send_to(asio::buffer(text), to, 0, ignored);
  }

  udp::socket socket;
  Respond respond;
  std::array<char, 1500> buf{};
  udp::endpoint from;
};

// ---- client side: poll(2)-bounded request/response on a UDP socket ----

struct Datagram {
  udp::endpoint from;
  std::string text;
};

// Receives one datagram, waiting at most until `until`. The socket must be non-blocking.
std::optional<Datagram> receive_until(udp::socket& s, Clock::time_point until) {
  for (;;) {
    auto left = std::chrono::ceil<milliseconds>(until - Clock::now());
    pollfd pfd{s.native_handle(), POLLIN, 0};
    int ready = ::poll(&pfd, 1, static_cast<int>(std::max<milliseconds::rep>(left.count(), 0)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return std::nullopt;
    std::array<char, 1500> buf{};
    Datagram d;
    boost::system::error_code ec;
    std::size_t n = s.receive_from(asio::buffer(buf), d.from, 0, ec);
    if (ec) {
      // An ICMP error queued on the socket, or a spurious wakeup: keep waiting.
      if (Clock::now() >= until) return std::nullopt;
      continue;
    }
    d.from = udp::endpoint(unmapped(d.from.address()), d.from.port());
    d.text.assign(buf.data(), n);
    return d;
  }
}

// Sends `payload` to `to` up to `sends` times, `per_send` apart, until an OBSERVED answer comes
// (from `expect_from` if given). Returns the observed endpoint.
std::optional<udp::endpoint> request(udp::socket& s, const udp::endpoint& to,
                                     std::string_view payload,
                                     const std::optional<udp::endpoint>& expect_from,
                                     milliseconds per_send, int sends) {
  for (int i = 0; i < sends; ++i) {
    boost::system::error_code ignored;  // unreachable networks look like no answer
    s.send_to(asio::buffer(payload.data(), payload.size()), to, 0, ignored);
    auto until = Clock::now() + per_send;
    while (auto d = receive_until(s, until)) {
      if (expect_from && d->from != *expect_from) continue;  // e.g. a late answer to a retry
      if (auto seen = parse_observed(d->text)) {
        return udp::endpoint(unmapped(seen->first), seen->second);
      }
    }
  }
  return std::nullopt;
}

udp::socket open_client_udp(asio::io_context& io, const udp& protocol, std::uint16_t local_port) {
  udp::socket s(io, protocol);
  if (local_port != 0) {
    s.set_option(udp::socket::reuse_address(true));
    s.bind(udp::endpoint(protocol, local_port));
  }
  s.non_blocking(true);
  return s;
}

}  // namespace

// ---- UdpReflector ----

UdpReflector UdpReflector::start(const Node& node, std::uint16_t port) {
  NodeAddresses addresses = node_addresses(node);
  std::string name = node.name();
  UdpReflector r;
  r.service_ = start_service(node, [name, port](asio::io_context& io) {
    auto responder = std::make_shared<UdpResponder>(
        io, [](UdpResponder& self, const udp::endpoint& from, std::string_view) {
          self.reply(from, observed_text(from));
        });
    udp protocol = open_any_family<udp::socket, udp>(responder->socket);
    boost::system::error_code ec;
    responder->socket.bind(udp::endpoint(protocol, port), ec);
    if (ec) throw_bind_error(name, "UDP", port, ec);
    responder->arm();
    return std::shared_ptr<void>(responder);
  });
  r.endpoint_ = udp::endpoint(addresses.v4 ? *addresses.v4 : *addresses.v6, port);
  if (addresses.v6) r.endpoint6_ = udp::endpoint(*addresses.v6, port);
  return r;
}

udp::endpoint UdpReflector::endpoint() const { return endpoint_; }
std::optional<udp::endpoint> UdpReflector::endpoint6() const { return endpoint6_; }
void UdpReflector::stop() { service_.reset(); }
UdpReflector::UdpReflector(UdpReflector&&) noexcept = default;
UdpReflector& UdpReflector::operator=(UdpReflector&&) noexcept = default;
UdpReflector::~UdpReflector() = default;

// ---- TcpReflector ----

namespace {

struct TcpAcceptLoop {
  explicit TcpAcceptLoop(asio::io_context& io) : acceptor(io) {}
  void arm() {
    acceptor.async_accept([this](const boost::system::error_code& ec, tcp::socket peer) {
      if (!ec) {
        boost::system::error_code ignored;
        tcp::endpoint from = peer.remote_endpoint(ignored);
        if (!ignored) {
          // A few dozen bytes fit any send buffer: the blocking write returns at once.
          std::string line = observed_text(from) + "\n";
          asio::write(peer, asio::buffer(line), ignored);
        }
        peer.shutdown(tcp::socket::shutdown_send, ignored);
        peer.close(ignored);
      }
      if (!ec || transient(ec)) arm();
    });
  }
  tcp::acceptor acceptor;
};

}  // namespace

TcpReflector TcpReflector::start(const Node& node, std::uint16_t port) {
  NodeAddresses addresses = node_addresses(node);
  std::string name = node.name();
  TcpReflector r;
  r.service_ = start_service(node, [name, port](asio::io_context& io) {
    auto loop = std::make_shared<TcpAcceptLoop>(io);
    tcp protocol = open_any_family<tcp::acceptor, tcp>(loop->acceptor);
    boost::system::error_code ec;
    // Connections we closed first linger in TIME_WAIT; a restarted reflector must still bind.
    loop->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    loop->acceptor.bind(tcp::endpoint(protocol, port), ec);
    if (!ec) loop->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw_bind_error(name, "TCP", port, ec);
    loop->arm();
    return std::shared_ptr<void>(loop);
  });
  r.endpoint_ = tcp::endpoint(addresses.v4 ? *addresses.v4 : *addresses.v6, port);
  if (addresses.v6) r.endpoint6_ = tcp::endpoint(*addresses.v6, port);
  return r;
}

tcp::endpoint TcpReflector::endpoint() const { return endpoint_; }
std::optional<tcp::endpoint> TcpReflector::endpoint6() const { return endpoint6_; }
void TcpReflector::stop() { service_.reset(); }
TcpReflector::TcpReflector(TcpReflector&&) noexcept = default;
TcpReflector& TcpReflector::operator=(TcpReflector&&) noexcept = default;
TcpReflector::~TcpReflector() = default;

// ---- observe ----

std::optional<udp::endpoint> observe_udp(const Node& client, const udp::endpoint& reflector,
                                         std::uint16_t local_port, milliseconds timeout,
                                         int attempts) {
  return client.run([&]() -> std::optional<udp::endpoint> {
    asio::io_context io;
    udp::socket s = open_client_udp(io, reflector.protocol(), local_port);
    // A dual-stack reflector may answer from another of its addresses: accept any source.
    return request(s, reflector, "PROBE", std::nullopt, timeout, std::max(attempts, 1));
  });
}

std::optional<tcp::endpoint> observe_tcp(const Node& client, const tcp::endpoint& reflector,
                                         std::uint16_t local_port, milliseconds timeout,
                                         int attempts) {
  return client.run([&]() -> std::optional<tcp::endpoint> {
    for (int i = 0; i < std::max(attempts, 1); ++i) {
      asio::io_context io;
      tcp::socket s(io, reflector.protocol());
      if (local_port != 0) {
        s.set_option(tcp::socket::reuse_address(true));
        s.bind(tcp::endpoint(reflector.protocol(), local_port));
      }
      asio::streambuf line;
      bool complete = false;
      s.async_connect(reflector, [&](const boost::system::error_code& ec) {
        if (ec) return;
        asio::async_read_until(
            s, line, '\n',
            [&](const boost::system::error_code& rec, std::size_t) { complete = !rec; });
      });
      io.run_for(timeout);
      if (!complete) continue;
      std::string text(asio::buffers_begin(line.data()), asio::buffers_end(line.data()));
      if (auto seen = parse_observed(text)) {
        return tcp::endpoint(unmapped(seen->first), seen->second);
      }
    }
    return std::nullopt;
  });
}

// ---- NatBehavior ----

std::string to_string(const NatBehavior& behavior) {
  return "mapping=" + std::string(to_string(behavior.mapping)) +
         " filtering=" + std::string(to_string(behavior.filtering));
}

std::ostream& operator<<(std::ostream& os, const NatBehavior& behavior) {
  return os << to_string(behavior);
}

// ---- NatProbeServer ----

struct NatProbeServer::Shared {
  // Index = address * 2 + port.
  std::array<udp::endpoint, 4> endpoints;
  // Each entry is written and used only on the thread of the service that owns it.
  std::array<UdpResponder*, 4> sockets{};
  std::array<std::shared_ptr<ServiceThread>, 2> services;  // [0]: primary, [1]: alternate

  void stop() {
    // Both at once, then wait: a reply handed from one service to the other is simply dropped.
    for (auto& s : services) {
      if (s) s->request_stop();
    }
    for (auto& s : services) {
      if (s) s->wait();
    }
    services = {};
  }
  ~Shared() { stop(); }

  // Runs on the thread of the socket that received `text` from `from`.
  void respond(UdpResponder& self, const udp::endpoint& from, std::string_view text) {
    std::string answer = observed_text(from);
    constexpr std::string_view kChange = "PROBE REPLY-FROM ";
    if (text.substr(0, kChange.size()) != kChange) {
      self.reply(from, answer);
      return;
    }
    text.remove_prefix(kChange.size());
    if (text.size() < 3 || (text[0] != '0' && text[0] != '1') || text[1] != ' ' ||
        (text[2] != '0' && text[2] != '1')) {
      return;  // malformed: a probe must not get an answer it did not ask for
    }
    int target = (text[0] - '0') * 2 + (text[2] - '0');
    ServiceThread& owner = *services[target / 2];
    // The target socket belongs to its service's thread: hand the send over to it.
    asio::post(owner.io, [this, target, from, answer] { sockets[target]->reply(from, answer); });
  }
};

NatProbeServer NatProbeServer::start(const Device& primary, const Device& alternate,
                                     std::uint16_t port1, std::uint16_t port2) {
  if (primary.id() == alternate.id()) {
    throw Error(ErrorKind::kInvalidArgument, primary.name(),
                "NatProbeServer needs two different devices, got '" + primary.name() + "' twice");
  }
  if (port1 == port2) {
    throw Error(
        ErrorKind::kInvalidArgument, std::to_string(port1),
        "NatProbeServer needs two different ports, got " + std::to_string(port1) + " twice");
  }
  NatProbeServer server;
  server.shared_ = std::make_shared<Shared>();
  Shared* shared = server.shared_.get();
  std::array<const Device*, 2> devices{&primary, &alternate};
  std::array<std::uint16_t, 2> ports{port1, port2};
  for (int a = 0; a < 2; ++a) {
    std::optional<Ipv4Address> ip = devices[a]->ip();
    if (!ip) {
      throw Error(ErrorKind::kInvalidArgument, devices[a]->name(),
                  "NatProbeServer needs an IPv4 address on '" + devices[a]->name() + "'");
    }
    for (int p = 0; p < 2; ++p) shared->endpoints[a * 2 + p] = udp::endpoint(*ip, ports[p]);
  }
  // Both service objects exist before either thread starts, so a socket of one may hand a
  // reply to the other from its first datagram on.
  for (auto& service : shared->services) service = std::make_shared<ServiceThread>();
  for (int a = 0; a < 2; ++a) {
    std::string name = devices[a]->name();
    start_service(*shared->services[a], *devices[a], [shared, a, name](asio::io_context& io) {
      std::vector<std::shared_ptr<UdpResponder>> own;
      for (int p = 0; p < 2; ++p) {
        int index = a * 2 + p;
        auto r = std::make_shared<UdpResponder>(
            io, [shared](UdpResponder& self, const udp::endpoint& from, std::string_view text) {
              shared->respond(self, from, text);
            });
        // Bound to the exact address, so replies leave from A1 or A2 as RFC 5780 requires.
        boost::system::error_code ec;
        r->socket.open(udp::v4(), ec);
        if (!ec) r->socket.bind(shared->endpoints[index], ec);
        if (ec) throw_bind_error(name, "UDP", shared->endpoints[index].port(), ec);
        shared->sockets[index] = r.get();
        own.push_back(r);
      }
      for (auto& r : own) r->arm();
      return std::make_shared<std::vector<std::shared_ptr<UdpResponder>>>(std::move(own));
    });
  }
  return server;
}

udp::endpoint NatProbeServer::endpoint(int address, int port) const {
  if (address < 0 || address > 1 || port < 0 || port > 1) {
    throw Error(ErrorKind::kInvalidArgument, "",
                "NatProbeServer::endpoint: address and port index must be 0 or 1");
  }
  return shared_->endpoints[address * 2 + port];
}

void NatProbeServer::stop() { shared_.reset(); }
NatProbeServer::NatProbeServer(NatProbeServer&&) noexcept = default;
NatProbeServer& NatProbeServer::operator=(NatProbeServer&&) noexcept = default;
NatProbeServer::~NatProbeServer() = default;

// ---- probe_nat ----

NatBehavior probe_nat(const Node& client, const NatProbeServer& server, milliseconds timeout) {
  const udp::endpoint a1p1 = server.endpoint(0, 0);
  const udp::endpoint a2p1 = server.endpoint(1, 0);
  const udp::endpoint a2p2 = server.endpoint(1, 1);
  const udp::endpoint a1p2 = server.endpoint(0, 1);
  // Two sends per request, half the timeout apart: one lost datagram does not decide a test.
  const milliseconds per_send = std::max(timeout / 2, milliseconds(1));
  constexpr int kMappingSends = 6;
  const std::string name = client.name();
  auto timed_out = [&](const udp::endpoint& to) {
    return Error(ErrorKind::kTimeout, name,
                 "NAT probe from '" + name + "': no answer from " + to.address().to_string() + ":" +
                     std::to_string(to.port()) + " within " +
                     std::to_string((per_send * kMappingSends).count()) + " ms");
  };

  return client.run([&]() -> NatBehavior {
    asio::io_context io;
    NatBehavior out{};

    // §4.3 mapping: one socket, three destinations. These answers must come, so a loaded
    // machine gets more sends before the probe gives up; only the filtering tests below wait
    // for answers that may rightly never come, and they keep to `timeout`.
    {
      udp::socket s = open_client_udp(io, udp::v4(), 0);
      auto m1 = request(s, a1p1, "PROBE", a1p1, per_send, kMappingSends);
      if (!m1) throw timed_out(a1p1);
      auto m2 = request(s, a2p1, "PROBE", a2p1, per_send, kMappingSends);
      if (!m2) throw timed_out(a2p1);
      if (*m2 == *m1) {
        out.mapping = NatMapping::EndpointIndependent;
      } else {
        auto m3 = request(s, a2p2, "PROBE", a2p2, per_send, kMappingSends);
        if (!m3) throw timed_out(a2p2);
        out.mapping =
            *m3 == *m2 ? NatMapping::AddressDependent : NatMapping::AddressAndPortDependent;
      }
    }

    // §4.4 filtering: a fresh socket (a fresh mapping) per test, so a reply let in by an
    // earlier test cannot make a later one pass.
    {
      udp::socket s = open_client_udp(io, udp::v4(), 0);
      if (request(s, a1p1, "PROBE REPLY-FROM 1 1", a2p2, per_send, 2)) {
        out.filtering = NatFiltering::EndpointIndependent;
        return out;
      }
    }
    {
      udp::socket s = open_client_udp(io, udp::v4(), 0);
      out.filtering = request(s, a1p1, "PROBE REPLY-FROM 0 1", a1p2, per_send, 2)
                          ? NatFiltering::AddressDependent
                          : NatFiltering::AddressAndPortDependent;
    }
    return out;
  });
}

// ---- hole_punch_udp ----

namespace {

// Punches go to the peer's reflexive endpoint; answers go to where the peer was heard from.
constexpr std::string_view kPunch = "PUNCH";
constexpr std::string_view kAnswer = "ANSWER";
// The rendezvous request: up to 6 sends, 200 ms apart.
constexpr milliseconds kRendezvousWait{200};
constexpr int kRendezvousSends = 6;

// One try of both sides. Every promise is always set (the reflexive endpoint to nullopt when a
// side gives up early), so neither side waits for the other in vain.
struct PunchTry {
  std::array<std::promise<std::optional<udp::endpoint>>, 2> reflexive;
  std::array<std::shared_future<std::optional<udp::endpoint>>, 2> reflexive_result{
      reflexive[0].get_future().share(), reflexive[1].get_future().share()};
  std::array<std::atomic<bool>, 2> heard{};
  std::array<std::atomic<bool>, 2> sent_all{};  // a side has sent its `rounds` datagrams
  std::array<std::promise<void>, 2> finished;
  std::array<std::shared_future<void>, 2> finished_result{finished[0].get_future().share(),
                                                          finished[1].get_future().share()};
};

struct SideResult {
  std::optional<udp::endpoint> reflexive;
  std::optional<udp::endpoint> saw;
  std::optional<udp::endpoint> sends_to;
  bool heard_punch = false;
  int tries = 0;
  int sent = 0;
};

// The punching itself, once both sides know their targets. Sends one datagram every `interval`,
// `rounds` in all: punches to the peer's reflexive endpoint until the peer is heard, answers to
// the source it was heard from after that (the first answer at once). Ends when both sides
// heard each other, or one `interval` after both sent their last datagram.
void exchange(int me, PunchTry& t, SideResult& out, udp::socket& s, const udp::endpoint& target,
              const HolePunchOptions& options, const std::stop_token& stop,
              Clock::time_point deadline) {
  const int peer = 1 - me;
  out.sends_to = target;
  auto send = [&](std::string_view what) {
    boost::system::error_code ignored;  // e.g. a queued ICMP error: the next send goes out
    s.send_to(asio::buffer(what.data(), what.size()), *out.sends_to, 0, ignored);
    if (++out.sent >= options.rounds) t.sent_all[me] = true;
  };
  auto both_heard = [&] { return t.heard[0].load() && t.heard[1].load(); };
  Clock::time_point next_send = Clock::now();
  std::optional<Clock::time_point> end;
  while (!stop.stop_requested() && !both_heard()) {
    const Clock::time_point now = Clock::now();
    if (now >= deadline) break;
    if (out.sent < options.rounds && now >= next_send) {
      send(out.saw ? kAnswer : kPunch);
      next_send = now + options.interval;
    }
    // Both done sending: the peer's last datagram may still be in flight for an interval.
    if (!end && t.sent_all[me] && t.sent_all[peer]) end = now + options.interval;
    if (end && now >= *end) break;
    Clock::time_point until = std::min(end.value_or(now + options.interval), deadline);
    if (out.sent < options.rounds) until = std::min(until, next_send);
    while (auto d = receive_until(s, until)) {
      const bool punch = d->text == kPunch;
      if (!punch && d->text != kAnswer) continue;  // e.g. a late answer from the rendezvous
      if (!out.saw) {
        // As ICE does with a peer-reflexive candidate: talk to where the peer really is. The
        // answer is reply traffic for both NATs, whatever they filter.
        out.saw = d->from;
        out.heard_punch = punch;
        out.sends_to = d->from;
        t.heard[me] = true;
        send(kAnswer);
      }
      if (both_heard()) break;
    }
  }
}

// One try of side `me`; returns false if it could not punch (no reflexive endpoint, the peer
// gave up). Always releases the peer: the try's promises are set whatever happens.
bool punch_once(int me, PunchTry& t, SideResult& out, const udp::endpoint& rendezvous,
                const HolePunchOptions& options, const std::stop_token& stop,
                Clock::time_point deadline) {
  const int peer = 1 - me;
  struct Release {
    PunchTry& t;
    int me;
    bool reflexive_set = false;
    ~Release() {
      if (!reflexive_set) t.reflexive[me].set_value(std::nullopt);
      t.finished[me].set_value();
    }
  } release{t, me};

  // A fresh socket per try: a new local port, so new mappings in every NAT on the way. The
  // rendezvous must answer, so a loaded machine gets several sends (the first answer ends it).
  asio::io_context io;
  udp::socket s = open_client_udp(io, udp::v4(), 0);
  out.reflexive = request(s, rendezvous, "PROBE", std::nullopt, kRendezvousWait, kRendezvousSends);
  t.reflexive[me].set_value(out.reflexive);
  release.reflexive_set = true;
  if (t.reflexive_result[peer].wait_until(deadline) != std::future_status::ready) return false;
  std::optional<udp::endpoint> target = t.reflexive_result[peer].get();
  if (!out.reflexive || !target) return false;
  exchange(me, t, out, s, *target, options, stop, deadline);
  return true;
}

SideResult punch_side(int me, const std::shared_ptr<std::vector<PunchTry>>& tries,
                      const udp::endpoint& rendezvous, const HolePunchOptions& options,
                      const std::stop_token& stop) {
  SideResult out;
  const int peer = 1 - me;
  // A safety net for a peer that is stuck, never reached in a normal try: the rendezvous
  // requests and the exchange, twice over.
  const auto try_length =
      2 * (kRendezvousWait * kRendezvousSends + options.interval * (options.rounds + 1));
  for (PunchTry& t : *tries) {
    if (stop.stop_requested()) break;
    const int tries_so_far = out.tries;
    out = SideResult{};  // the result reports the last try
    out.tries = tries_so_far + 1;
    const auto deadline = Clock::now() + try_length;
    const bool punched = punch_once(me, t, out, rendezvous, options, stop, deadline);
    // Decide together, once both sides are done with this try: an answer may still have been
    // arriving at the peer when this side stopped.
    if (t.finished_result[peer].wait_until(deadline) != std::future_status::ready) break;
    if (!punched || (t.heard[0] && t.heard[1])) break;
  }
  return out;
}

}  // namespace

HolePunchResult hole_punch_udp(const Node& a, const Node& b, const UdpReflector& rendezvous,
                               const HolePunchOptions& options) {
  auto tries = std::make_shared<std::vector<PunchTry>>(std::max(options.tries, 1));
  const udp::endpoint meeting = rendezvous.endpoint();
  auto side = [tries, meeting, options](int me) {
    return [tries, meeting, options, me](std::stop_token stop) {
      return punch_side(me, tries, meeting, options, stop);
    };
  };
  std::future<SideResult> fa = a.spawn_thread(side(0));
  std::future<SideResult> fb;
  try {
    fb = b.spawn_thread(side(1));
  } catch (...) {
    // b never ran: release a's thread at once.
    for (PunchTry& t : *tries) {
      t.reflexive[1].set_value(std::nullopt);
      t.finished[1].set_value();
    }
    fa.wait();
    throw;
  }
  SideResult ra = fa.get();
  SideResult rb = fb.get();
  HolePunchResult result;
  result.success = ra.saw.has_value() && rb.saw.has_value();
  result.a_sees_b = ra.saw;
  result.b_sees_a = rb.saw;
  result.a_sends_to = ra.sends_to;
  result.b_sends_to = rb.sends_to;
  result.a_reflexive = ra.reflexive;
  result.b_reflexive = rb.reflexive;
  result.a_heard_punch = ra.heard_punch;
  result.b_heard_punch = rb.heard_punch;
  result.tries = std::max(ra.tries, rb.tries);
  result.attempts = std::max(ra.sent, rb.sent);
  return result;
}

}  // namespace patchbay
