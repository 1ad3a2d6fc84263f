// The Beast half of serve_test_support.hpp: the HTTP and SSE clients the serve tests talk with.
#include "serve_test_support.hpp"

#include <cctype>
#include <stdexcept>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace patchbay::serve::testing {
namespace {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// Runs one async operation on `ioc` with `stream`'s timer as the deadline.
template <typename Start>
beast::error_code run_with_deadline(net::io_context& ioc, beast::tcp_stream& stream,
                                    std::chrono::steady_clock::duration timeout, Start start) {
  beast::error_code result = net::error::would_block;
  ioc.restart();
  stream.expires_after(timeout);
  start([&](beast::error_code ec, std::size_t) { result = ec; });
  ioc.run();
  return result;
}

void connect(net::io_context& ioc, beast::tcp_stream& stream, std::uint16_t port) {
  beast::error_code ec = net::error::would_block;
  ioc.restart();
  stream.expires_after(kDeadline);
  stream.async_connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port),
                       [&](beast::error_code e) { ec = e; });
  ioc.run();
  if (ec) throw std::runtime_error("connect to port " + std::to_string(port) + ": " + ec.message());
}

// One read into `out` that ends at `deadline`; the error code of the read.
beast::error_code read_some_until(net::io_context& ioc, beast::tcp_stream& stream,
                                  std::chrono::steady_clock::time_point deadline,
                                  std::string& out) {
  char buf[4096];
  std::size_t got = 0;
  beast::error_code ec = net::error::would_block;
  ioc.restart();
  stream.expires_at(deadline);
  stream.async_read_some(net::buffer(buf), [&](beast::error_code e, std::size_t n) {
    ec = e;
    got = n;
  });
  ioc.run();
  out.append(buf, got);
  return ec;
}

bool is_closed(const beast::error_code& ec) {
  return ec == net::error::eof || ec == net::error::connection_reset;
}

}  // namespace

bool can_connect(std::uint16_t port) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  try {
    connect(ioc, stream, port);
    return true;
  } catch (const std::runtime_error&) {
    return false;
  }
}

void send_and_close(std::uint16_t port, std::string_view bytes) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  connect(ioc, stream, port);
  const auto ec = run_with_deadline(ioc, stream, kDeadline, [&](auto handler) {
    net::async_write(stream, net::buffer(bytes.data(), bytes.size()), handler);
  });
  if (ec) throw std::runtime_error("write: " + ec.message());
}

HttpResult http_request(std::uint16_t port, const std::string& target,
                        const std::map<std::string, std::string>& headers, http::verb method) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  connect(ioc, stream, port);
  http::request<http::empty_body> req{method, target, 11};
  req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  for (const auto& [k, v] : headers) req.set(k, v);
  auto ec = run_with_deadline(ioc, stream, kDeadline,
                              [&](auto handler) { http::async_write(stream, req, handler); });
  if (ec) throw std::runtime_error("write " + target + ": " + ec.message());
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);
  if (method == http::verb::head) parser.skip(true);
  ec = run_with_deadline(ioc, stream, kDeadline,
                         [&](auto handler) { http::async_read(stream, buffer, parser, handler); });
  if (ec) throw std::runtime_error("read " + target + ": " + ec.message());
  HttpResult r;
  const auto& res = parser.get();
  r.status = res.result_int();
  for (const auto& f : res) {
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = std::string(f.value());
  }
  r.body = res.body();
  return r;
}

RawResult raw_exchange(std::uint16_t port, std::string_view bytes,
                       std::chrono::steady_clock::duration timeout) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  connect(ioc, stream, port);
  RawResult r;
  // The server may answer and close before reading everything (huge headers); still read.
  (void)run_with_deadline(ioc, stream, timeout, [&](auto handler) {
    net::async_write(stream, net::buffer(bytes.data(), bytes.size()), handler);
  });
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto ec = read_some_until(ioc, stream, deadline, r.data);
    if (is_closed(ec)) {
      r.closed = true;
      break;
    }
    if (ec) break;
  }
  return r;
}

struct SseClient::Connection {
  net::io_context ioc;
  beast::tcp_stream stream{ioc};
};

SseClient::SseClient(std::uint16_t port, const std::string& target,
                     const std::map<std::string, std::string>& headers)
    : connection_(std::make_unique<Connection>()) {
  connect(connection_->ioc, connection_->stream, port);
  std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                    "\r\nAccept: text/event-stream\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  req += "\r\n";
  auto ec = run_with_deadline(connection_->ioc, connection_->stream, kDeadline, [&](auto handler) {
    net::async_write(connection_->stream, net::buffer(req), handler);
  });
  if (ec) throw std::runtime_error("write SSE request: " + ec.message());
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  std::size_t end = std::string::npos;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
    if (!read_some(deadline)) throw std::runtime_error("no SSE response header for " + target);
  }
  head_ = buf_.substr(0, end);
  buf_.erase(0, end + 4);
}

SseClient::~SseClient() = default;

std::optional<SseClient::Message> SseClient::next_block(
    std::chrono::steady_clock::duration timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::size_t end;
  while ((end = buf_.find("\n\n")) == std::string::npos) {
    if (!read_some(deadline)) return std::nullopt;
  }
  std::string block = buf_.substr(0, end);
  buf_.erase(0, end + 2);
  Message m;
  std::size_t start = 0;
  while (start <= block.size()) {
    auto nl = block.find('\n', start);
    if (nl == std::string::npos) nl = block.size();
    const std::string line = block.substr(start, nl - start);
    start = nl + 1;
    if (line.rfind(':', 0) == 0) {
      m.comments.push_back(line.substr(1));
    } else if (line.rfind("id: ", 0) == 0) {
      m.id = line.substr(4);
    } else if (line.rfind("data: ", 0) == 0) {
      if (m.has_data) m.data += "\n";
      m.data += line.substr(6);
      m.has_data = true;
    }
  }
  return m;
}

std::optional<SseClient::Message> SseClient::next(std::chrono::steady_clock::duration timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return std::nullopt;
    auto m = next_block(deadline - now);
    if (!m) return std::nullopt;
    if (m->has_data) return m;
  }
}

bool SseClient::wait_closed(std::chrono::steady_clock::duration timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!eof_) {
    if (!read_some(deadline)) return eof_;
  }
  return true;
}

bool SseClient::read_some(std::chrono::steady_clock::time_point deadline) {
  if (eof_ || std::chrono::steady_clock::now() >= deadline) return false;
  const auto ec = read_some_until(connection_->ioc, connection_->stream, deadline, buf_);
  if (is_closed(ec)) eof_ = true;
  return !ec;
}

}  // namespace patchbay::serve::testing
