// One client connection: HTTP request/response with keep-alive, switching to a server-sent
// event stream for the two SSE endpoints. Lives on the server's single io_context thread.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "event_tail.hpp"
#include "router.hpp"

namespace patchbay::serve {

// What a session needs from its server. Implemented by Server::Impl; the server outlives every
// handler that can touch it (stop() drains the io_context before anything is destroyed).
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  virtual const Router& router() const = 0;
  virtual bool stopping() const = 0;
  virtual void add_run_subscriber(std::weak_ptr<class Session> s) = 0;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(boost::asio::ip::tcp::socket socket, SessionHost& host);

  void start();
  // Closes the socket and cancels timers; pending handlers then finish without re-arming.
  void close();
  // Queues one SSE message (only meaningful once the session streams).
  void send_sse(std::string message);

 private:
  void do_read();
  void on_read(boost::beast::error_code ec);
  void handle_request();
  void write_reply(Reply reply, bool keep_alive, bool head, unsigned version, bool linger = false);
  void write_error_and_close(unsigned status, std::string_view message);
  void linger_close();
  void drain();

  void start_sse(std::string first_messages);
  void start_events(const SseEvents& ev);
  void start_runs();
  void watch_for_disconnect();
  void arm_keepalive();
  void arm_poll();
  void poll_events();
  void flush();

  boost::beast::tcp_stream stream_;
  SessionHost& host_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::empty_body>> parser_;
  std::shared_ptr<void> pending_response_;  // keeps the response alive during async_write

  // SSE state
  std::deque<std::string> outq_;
  std::size_t queued_bytes_ = 0;
  bool writing_ = false;
  bool closed_ = false;
  std::optional<EventFileTail> tail_;
  boost::asio::steady_timer poll_timer_;
  boost::asio::steady_timer keepalive_timer_;
  char disconnect_probe_[4096] = {};
  std::size_t drained_ = 0;
};

}  // namespace patchbay::serve
