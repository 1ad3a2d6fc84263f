// Traffic helpers for the lab tests: real TCP/UDP exchanges between nodes, each side running in
// its own namespace. Every wait is on an event with a deadline, never a sleep.
#pragma once

// Boost 1.74's asio/awaitable.hpp needs std::exchange declared before it.
#include <utility>

#include <boost/asio.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <string>

#include "patchbay/patchbay.hpp"

namespace patchbay_test {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

inline std::string plain(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string();
  }
  return a.to_string();
}

// Listens on `port` (all addresses, both families) in `server`, accepts one connection, echoes
// 4 bytes and yields the address the server saw as the peer. Returns once the server listens.
inline std::future<std::string> serve_one_tcp(const patchbay::Node& server, unsigned short port) {
  auto listening = std::make_shared<std::promise<void>>();
  std::future<void> ready = listening->get_future();
  auto peer = server.spawn([listening, port]() -> asio::awaitable<std::string> {
    tcp::acceptor acceptor(co_await asio::this_coro::executor);
    try {
      acceptor.open(tcp::v6());
      acceptor.set_option(asio::ip::v6_only(false));
      acceptor.set_option(tcp::acceptor::reuse_address(true));
      acceptor.bind({tcp::v6(), port});
      acceptor.listen();
      listening->set_value();
    } catch (...) {
      listening->set_exception(std::current_exception());
      throw;
    }
    tcp::socket s = co_await acceptor.async_accept(asio::use_awaitable);
    char buf[4];
    co_await asio::async_read(s, asio::buffer(buf), asio::use_awaitable);
    co_await asio::async_write(s, asio::buffer(buf), asio::use_awaitable);
    co_return plain(s.remote_endpoint().address());
  });
  ready.get();  // rethrows a bind failure
  return peer;
}

// Connects from `client` to target:port, sends "ping" and expects it back. Runs as a blocking
// callable in the client's namespace. Throws on failure or after `timeout`.
inline void tcp_ping(const patchbay::Node& client, const asio::ip::address& target,
                     unsigned short port,
                     std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  client.run([&] {
    asio::io_context io;
    tcp::socket s(io);
    std::string error;
    char buf[4];
    s.async_connect({target, port}, [&](boost::system::error_code ec) {
      if (ec) {
        error = "connect: " + ec.message();
        return;
      }
      asio::async_write(s, asio::buffer("ping", 4), [&](boost::system::error_code ec, std::size_t) {
        if (ec) {
          error = "write: " + ec.message();
          return;
        }
        asio::async_read(s, asio::buffer(buf), [&](boost::system::error_code ec, std::size_t) {
          if (ec) error = "read: " + ec.message();
        });
      });
    });
    io.run_for(timeout);
    if (!io.stopped()) error = "timed out";
    if (!error.empty()) throw std::runtime_error("tcp to " + target.to_string() + ": " + error);
  });
}

// Sends one UDP datagram from `client` to target:port where `server` answers with the sender
// address it observed; returns that address, or "" if no answer came within `timeout`.
inline std::string udp_observed(const patchbay::Node& server, const patchbay::Node& client,
                                const asio::ip::address& target, unsigned short port,
                                std::chrono::milliseconds timeout = std::chrono::seconds(3)) {
  auto listening = std::make_shared<std::promise<void>>();
  std::future<void> ready = listening->get_future();
  auto stop = std::make_shared<std::atomic<bool>>(false);
  auto served = server.spawn([listening, port]() -> asio::awaitable<void> {
    udp::socket s(co_await asio::this_coro::executor);
    try {
      s.open(udp::v6());
      s.set_option(asio::ip::v6_only(false));
      s.bind({udp::v6(), port});
      listening->set_value();
    } catch (...) {
      listening->set_exception(std::current_exception());
      throw;
    }
    char buf[64];
    udp::endpoint from;
    co_await s.async_receive_from(asio::buffer(buf), from, asio::use_awaitable);
    std::string reply = "OBSERVED " + plain(from.address());
    co_await s.async_send_to(asio::buffer(reply), from, asio::use_awaitable);
  });
  ready.get();
  std::string observed = client.run([&] {
    asio::io_context io;
    udp::socket s(io, target.is_v4() ? udp::v4() : udp::v6());
    s.send_to(asio::buffer("PROBE", 5), {target, port});
    char buf[128];
    std::size_t n = 0;
    bool got = false;
    udp::endpoint from;
    s.async_receive_from(asio::buffer(buf), from,
                         [&](boost::system::error_code ec, std::size_t len) {
                           if (!ec) {
                             got = true;
                             n = len;
                           }
                         });
    io.run_for(timeout);
    std::string text = got ? std::string(buf, n) : std::string();
    return text.rfind("OBSERVED ", 0) == 0 ? text.substr(9) : std::string();
  });
  if (!observed.empty()) served.get();
  return observed;
}

// Runs ping once from `node`; true if a reply came back.
inline bool ping_ok(const patchbay::Node& node, const std::string& target) {
  auto r = node.run_command({"ping", "-c", "1", "-W", "2", target});
  return r.exit_code == 0;
}

}  // namespace patchbay_test
