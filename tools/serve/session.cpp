#include "session.hpp"

#include <iostream>

#include <boost/asio/write.hpp>

namespace patchbay::serve {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// Large enough for any browser's headers (cookies for localhost can be long), small enough that
// a client cannot make us buffer much.
constexpr std::size_t kHeaderLimit = 32 * 1024;
// A slow SSE reader may fall this far behind before it is dropped.
constexpr std::size_t kMaxQueuedBytes = 16 * 1024 * 1024;
// Bytes of a refused request read and discarded before closing (see linger_close()).
constexpr std::size_t kMaxDrainBytes = 4 * 1024 * 1024;

std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }

}  // namespace

Session::Session(tcp::socket socket, SessionHost& host)
    : stream_(std::move(socket)),
      host_(host),
      poll_timer_(stream_.get_executor()),
      keepalive_timer_(stream_.get_executor()) {}

void Session::start() { do_read(); }

void Session::close() {
  if (closed_) return;
  closed_ = true;
  poll_timer_.cancel();
  keepalive_timer_.cancel();
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream_.close();
}

void Session::do_read() {
  if (closed_ || host_.stopping()) return close();
  parser_.emplace();
  parser_->header_limit(kHeaderLimit);
  parser_->body_limit(64 * 1024);  // only GET/HEAD are served; a body is never needed
  stream_.expires_after(host_.router().options().request_timeout);
  http::async_read(
      stream_, buffer_, *parser_,
      [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
}

void Session::on_read(beast::error_code ec) {
  if (closed_) return;
  if (ec == http::error::end_of_stream || ec == net::error::operation_aborted ||
      ec == beast::error::timeout || ec == net::error::connection_reset || ec == net::error::eof) {
    return close();
  }
  if (ec == http::error::header_limit) {
    return write_error_and_close(431, "request header fields too large");
  }
  if (ec == http::error::body_limit) return write_error_and_close(413, "request body too large");
  if (ec) return write_error_and_close(400, "bad request");
  handle_request();
}

void Session::handle_request() {
  const auto& req = parser_->get();
  RequestView view;
  view.method = sv(req.method_string());
  view.target = sv(req.target());
  if (const auto it = req.find(http::field::host); it != req.end()) view.host = sv(it->value());
  if (const auto it = req.find(http::field::range); it != req.end()) view.range = sv(it->value());
  if (const auto it = req.find("Last-Event-ID"); it != req.end()) {
    view.last_event_id = sv(it->value());
  }
  const bool head = req.method() == http::verb::head;
  const bool keep_alive = req.keep_alive();
  const unsigned version = req.version();

  Routed routed;
  try {
    routed = host_.router().route(view);
  } catch (const std::exception& e) {
    // A file vanishing mid-request and similar races: report, keep serving.
    routed = Router::json_error(500, e.what());
  }
  if (auto* reply = std::get_if<Reply>(&routed)) {
    return write_reply(std::move(*reply), keep_alive, head, version);
  }
  if (head)
    return write_reply(Router::json_error(405, "HEAD on an event stream"), false, true, version);
  if (const auto* ev = std::get_if<SseEvents>(&routed)) return start_events(*ev);
  return start_runs();
}

void Session::write_reply(Reply reply, bool keep_alive, bool head, unsigned version, bool linger) {
  auto res = std::make_shared<http::response<http::string_body>>();
  res->version(version);
  res->result(reply.status);
  res->set(http::field::server, "patchbay-serve");
  res->set(http::field::content_type, reply.content_type);
  // Run files are shown in the UI's origin; never let a browser render them as HTML.
  res->set("X-Content-Type-Options", "nosniff");
  for (const auto& [k, v] : reply.headers) res->set(k, v);
  res->keep_alive(keep_alive);
  res->body() = std::move(reply.body);
  res->prepare_payload();
  if (head) res->body().clear();  // Content-Length still describes the GET body
  pending_response_ = res;
  stream_.expires_after(host_.router().options().request_timeout);
  http::async_write(
      stream_, *res,
      [self = shared_from_this(), keep_alive, linger](beast::error_code ec, std::size_t) {
        self->pending_response_.reset();
        if (!ec && linger) return self->linger_close();
        if (ec || !keep_alive) return self->close();
        self->do_read();
      });
}

void Session::write_error_and_close(unsigned status, std::string_view message) {
  write_reply(Router::json_error(status, message), /*keep_alive=*/false, /*head=*/false, 11,
              /*linger=*/true);
}

void Session::linger_close() {
  // The client may still be sending the request we refused (a huge header). Closing with unread
  // data makes the kernel send RST, which can destroy our error response in the client's
  // receive buffer; so half-close and drain for a bounded time first.
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream_.expires_after(std::chrono::seconds(2));
  drain();
}

void Session::drain() {
  stream_.async_read_some(net::buffer(disconnect_probe_),
                          [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                            self->drained_ += n;
                            if (ec || self->closed_ || self->drained_ > kMaxDrainBytes) {
                              return self->close();
                            }
                            self->drain();
                          });
}

void Session::start_sse(std::string first_messages) {
  // No Content-Length and no chunking: the stream ends when the connection closes, which is
  // what EventSource expects.
  std::string header =
      "HTTP/1.1 200 OK\r\n"
      "Server: patchbay-serve\r\n"
      "Content-Type: text/event-stream\r\n"
      "Cache-Control: no-cache\r\n"
      "X-Content-Type-Options: nosniff\r\n"
      "Connection: close\r\n"
      "\r\n";
  // The request timeout only guards reading a request; a stream stays open indefinitely.
  stream_.expires_never();
  send_sse(std::move(header) + std::move(first_messages));
  watch_for_disconnect();
  arm_keepalive();
}

void Session::start_events(const SseEvents& ev) {
  tail_.emplace(ev.events_file, ev.min_opid);
  start_sse("retry: 1000\n\n");
  poll_events();
}

void Session::start_runs() {
  // The comment tells a client the subscription is registered: a change after it arrives is
  // guaranteed to be notified.
  host_.add_run_subscriber(weak_from_this());
  start_sse(": subscribed\n\n");
}

void Session::watch_for_disconnect() {
  // Clients send nothing on an SSE connection; a completed read means it closed (or misbehaves).
  stream_.socket().async_read_some(net::buffer(disconnect_probe_),
                                   [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                     if (ec || self->closed_) return self->close();
                                     self->watch_for_disconnect();
                                   });
}

void Session::arm_keepalive() {
  keepalive_timer_.expires_after(host_.router().options().keepalive_interval);
  keepalive_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec || self->closed_) return;
    self->send_sse(": keep-alive\n\n");
    self->arm_keepalive();
  });
}

void Session::arm_poll() {
  poll_timer_.expires_after(host_.router().options().events_poll_interval);
  poll_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec || self->closed_) return;
    self->poll_events();
  });
}

void Session::poll_events() {
  // Reading more while the client has not taken the last batch would only grow the queue.
  if (!writing_) {
    std::string batch;
    for (const auto& e : tail_->poll()) batch += format_sse_event(e);
    if (!batch.empty()) send_sse(std::move(batch));
  }
  if (!closed_) arm_poll();
}

void Session::send_sse(std::string message) {
  if (closed_) return;
  queued_bytes_ += message.size();
  if (queued_bytes_ > kMaxQueuedBytes) return close();
  outq_.push_back(std::move(message));
  if (!writing_) flush();
}

void Session::flush() {
  if (closed_ || outq_.empty()) {
    writing_ = false;
    return;
  }
  writing_ = true;
  net::async_write(stream_.socket(), net::buffer(outq_.front()),
                   [self = shared_from_this()](beast::error_code ec, std::size_t) {
                     if (ec || self->closed_) return self->close();
                     self->queued_bytes_ -= self->outq_.front().size();
                     self->outq_.pop_front();
                     self->flush();
                   });
}

}  // namespace patchbay::serve
