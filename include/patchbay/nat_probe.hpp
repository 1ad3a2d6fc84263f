// NAT probes: measure what a NAT in the lab really does, with real packets through the kernel.
// Reflectors tell a client which address and port they saw (its reflexive address), a probe
// server classifies a NAT the way RFC 5780 does (mapping and filtering, RFC 4787 terms), and a
// hole-punch helper tries to connect two nodes behind NATs through a rendezvous reflector.
//
//   auto dc = lab.add_router("dc").preset(patchbay::RouterPreset::Public).build();
//   auto home = lab.add_router("home").preset(patchbay::RouterPreset::Home).build();
//   auto stun1 = lab.add_device("stun1").iface("eth0", dc).build();
//   auto stun2 = lab.add_device("stun2").iface("eth0", dc).build();
//   auto laptop = lab.add_device("laptop").iface("eth0", home).build();
//
//   auto reflector = patchbay::UdpReflector::start(stun1, 3478);
//   auto seen = patchbay::observe_udp(laptop, reflector.endpoint());  // home's uplink ip:port
//
//   auto server = patchbay::NatProbeServer::start(stun1, stun2, 3479, 3480);
//   patchbay::NatBehavior nat = patchbay::probe_nat(laptop, server);
//   // nat == {EndpointIndependent mapping, AddressAndPortDependent filtering}
//
// Every helper runs its sockets inside the nodes (a socket belongs to the namespace of the
// thread that creates it); every wait is bounded by a timeout, none is a fixed sleep. The RFC 5780
// probe and hole punching speak IPv4 (IPv6 NAT is stateless NPTv6 or plain NAT66 masquerade, see
// docs/ipv6-nat.md); the reflectors answer over both families.
// Reflectors and the probe server stop, and their threads end, when the object is destroyed.
#pragma once

// Boost 1.74's asio headers use std::exchange without including <utility>.
#include <utility>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

#include "patchbay/node.hpp"
#include "patchbay/presets.hpp"

namespace patchbay {

namespace internal {
struct ServiceThread;
}

// Answers every UDP datagram with "OBSERVED <ip>:<port>" ("OBSERVED [<ipv6>]:<port>" for IPv6
// senders): the source address and port as seen by the node, that is after every NAT on the
// way. Listens on all addresses of the node, IPv4 and IPv6 where the node has IPv6.
class UdpReflector {
 public:
  // Binds in `node` on a thread of its own and returns once the socket is bound. A bind failure
  // throws Error naming node (culprit) and port: kAlreadyExists if the port is taken, kKernel
  // otherwise; Error(kRemoved) if the node is gone.
  static UdpReflector start(const Node& node, std::uint16_t port);

  // The address clients should send to: the node's IPv4 address on its default interface (the
  // uplink for a router), or its IPv6 address if it has no IPv4.
  boost::asio::ip::udp::endpoint endpoint() const;
  // The same over IPv6, if the node has an IPv6 address.
  std::optional<boost::asio::ip::udp::endpoint> endpoint6() const;

  // Closes the socket and ends the reflector's thread; returns once both are gone. Idempotent.
  void stop();

  UdpReflector(UdpReflector&&) noexcept;
  UdpReflector& operator=(UdpReflector&&) noexcept;
  ~UdpReflector();

 private:
  UdpReflector() = default;
  std::shared_ptr<internal::ServiceThread> service_;
  boost::asio::ip::udp::endpoint endpoint_;
  std::optional<boost::asio::ip::udp::endpoint> endpoint6_;
};

// The TCP counterpart: accepts each connection, writes "OBSERVED <ip>:<port>\n" and closes it.
class TcpReflector {
 public:
  // As UdpReflector::start; the listening socket allows rebinding over TIME_WAIT connections.
  static TcpReflector start(const Node& node, std::uint16_t port);

  boost::asio::ip::tcp::endpoint endpoint() const;
  std::optional<boost::asio::ip::tcp::endpoint> endpoint6() const;
  void stop();

  TcpReflector(TcpReflector&&) noexcept;
  TcpReflector& operator=(TcpReflector&&) noexcept;
  ~TcpReflector();

 private:
  TcpReflector() = default;
  std::shared_ptr<internal::ServiceThread> service_;
  boost::asio::ip::tcp::endpoint endpoint_;
  std::optional<boost::asio::ip::tcp::endpoint> endpoint6_;
};

// Sends a datagram from `client` (from `local_port`, 0 = an ephemeral port) to a reflector and
// returns the address and port the reflector saw; nullopt if no answer came. Each of `attempts`
// sends waits up to `timeout` for the answer. IPv4-mapped IPv6 addresses come back as IPv4.
std::optional<boost::asio::ip::udp::endpoint> observe_udp(
    const Node& client, const boost::asio::ip::udp::endpoint& reflector,
    std::uint16_t local_port = 0,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(500), int attempts = 3);

// The same over TCP: each attempt connects and reads the reflector's line within `timeout`.
std::optional<boost::asio::ip::tcp::endpoint> observe_tcp(
    const Node& client, const boost::asio::ip::tcp::endpoint& reflector,
    std::uint16_t local_port = 0,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(500), int attempts = 3);

// A NAT's behaviour in RFC 4787 terms, as classified by probe_nat().
struct NatBehavior {
  NatMapping mapping;
  NatFiltering filtering;
  friend bool operator==(const NatBehavior&, const NatBehavior&) = default;
};
// "mapping=endpoint_independent filtering=address_and_port_dependent"
std::string to_string(const NatBehavior& behavior);
std::ostream& operator<<(std::ostream& os, const NatBehavior& behavior);

// The RFC 5780 test server: two public IPv4 addresses (A1 on `primary`, A2 on `alternate`),
// each listening on two UDP ports (p1, p2), four sockets in all. Every socket answers like a
// UdpReflector. A datagram "PROBE REPLY-FROM <a> <p>" is answered instead from address a
// (0 = A1, 1 = A2) and port p (0 = p1, 1 = p2) — RFC 5780's CHANGE-REQUEST. The sockets are
// in-process objects, so the receiving socket hands the reply to the other one directly.
class NatProbeServer {
 public:
  // Both devices need an IPv4 address and should be on public (non-NATed) LANs; they must be
  // different devices (kInvalidArgument otherwise). Returns once all four sockets are bound, on one
  // thread per device; a bind failure throws as in UdpReflector::start.
  static NatProbeServer start(const Device& primary, const Device& alternate,
                              std::uint16_t port1 = 3478, std::uint16_t port2 = 3479);

  // address: 0 = A1 (primary), 1 = A2 (alternate); port: 0 = p1, 1 = p2.
  boost::asio::ip::udp::endpoint endpoint(int address, int port) const;
  void stop();

  NatProbeServer(NatProbeServer&&) noexcept;
  NatProbeServer& operator=(NatProbeServer&&) noexcept;
  ~NatProbeServer();

 private:
  NatProbeServer() = default;
  struct Shared;
  std::shared_ptr<Shared> shared_;
};

// Classifies the NAT(s) between `client` and the probe server (RFC 5780 §4.3 and §4.4):
//  * mapping: one local socket sends to A1:p1, A2:p1 and A2:p2; the three observed mappings are
//    all equal → EndpointIndependent; the two for A2 equal → AddressDependent; else
//    AddressAndPortDependent.
//  * filtering, each test from a fresh socket: A1:p1 is asked to reply from A2:p2; if that
//    arrives → EndpointIndependent. Else A1:p1 is asked to reply from A1:p2; if that arrives →
//    AddressDependent; else AddressAndPortDependent.
// No NAT at all reports EndpointIndependent for both (anyone can reach the client). Each
// request waits up to `timeout` (sent twice within it); a negative filtering test therefore
// costs `timeout`. Throws Error(kTimeout) naming the client if A1:p1 never answers, or if A2
// does not answer the mapping test.
NatBehavior probe_nat(const Node& client, const NatProbeServer& server,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(300));

struct HolePunchOptions {
  int tries = 1;                           // fresh sockets (new mappings) before giving up
  int rounds = 10;                         // datagrams per side and try
  std::chrono::milliseconds interval{20};  // between datagrams
};

struct HolePunchResult {
  bool success = false;  // both sides received a datagram from the other
  // The source of the first datagram each side received from the other (last try).
  std::optional<boost::asio::ip::udp::endpoint> a_sees_b;
  std::optional<boost::asio::ip::udp::endpoint> b_sees_a;
  // The path: where each side sent its last datagram. The source it heard the other side from,
  // or, if it heard nothing, the other side's reflexive endpoint.
  std::optional<boost::asio::ip::udp::endpoint> a_sends_to;
  std::optional<boost::asio::ip::udp::endpoint> b_sends_to;
  // The reflexive endpoints the rendezvous reported in the last try (where punches went).
  std::optional<boost::asio::ip::udp::endpoint> a_reflexive;
  std::optional<boost::asio::ip::udp::endpoint> b_reflexive;
  // Whether the first datagram a side heard was a punch of the other side, which got through
  // the NATs to its reflexive endpoint, rather than an answer to its own punches.
  bool a_heard_punch = false;
  bool b_heard_punch = false;
  int tries = 0;     // tries used
  int attempts = 0;  // datagrams sent in the last try, by the side that sent more
};

// UDP hole punching between `a` and `b`, on one thread per side. In each try, each side binds a
// fresh socket and learns its reflexive endpoint from `rendezvous` (a UdpReflector on a public
// node); the endpoints are exchanged in-process. Each side then sends one datagram every
// `interval`, `rounds` in all: "PUNCH" to the other side's reflexive endpoint until it hears
// from the other side, then "ANSWER" to the source it heard it from (the first answer at once),
// as ICE does with a peer-reflexive candidate. An answer is reply traffic on both NATs, so one
// direction's punches getting through is enough. A try ends as soon as both sides heard each
// other, or `interval` after both sent their last datagram: a failed try costs about
// `rounds * interval` after the rendezvous answered. A failed try is repeated with new sockets,
// up to `tries` times; with patchbay's NATs, which keep no state for a datagram they refuse, a
// repeat meets the same NATs again and fails again.
HolePunchResult hole_punch_udp(const Node& a, const Node& b, const UdpReflector& rendezvous,
                               const HolePunchOptions& options = {});

}  // namespace patchbay
