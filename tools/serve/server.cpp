#include "patchbay_serve/server.hpp"

#include <pthread.h>
#include <signal.h>

#include <charconv>
#include <iostream>
#include <stdexcept>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "router.hpp"
#include "run_discovery.hpp"
#include "session.hpp"

namespace patchbay::serve {

namespace net = boost::asio;
namespace fs = std::filesystem;
using tcp = net::ip::tcp;

namespace {

net::ip::address resolve_bind_address(const std::string& bind) {
  boost::system::error_code ec;
  auto addr = net::ip::make_address(bind, ec);
  if (!ec) return addr;
  // A host name such as "localhost": take its first address.
  net::io_context ioc;
  tcp::resolver resolver(ioc);
  const auto results = resolver.resolve(bind, "", ec);
  if (ec || results.empty()) {
    throw std::runtime_error("patchbay serve: cannot resolve bind address '" + bind +
                             "': " + (ec ? ec.message() : std::string("no addresses")));
  }
  return results.begin()->endpoint().address();
}

void require_directory(const fs::path& dir, const char* what) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw std::runtime_error(std::string("patchbay serve: ") + what + " '" + dir.string() +
                             "' is not a directory");
  }
}

}  // namespace

class Server::Impl final : public SessionHost {
 public:
  explicit Impl(ServerOptions options)
      : options_(std::move(options)),
        address_(resolve_bind_address(options_.bind_address)),
        router_(options_, address_.is_loopback()),
        acceptor_(io_),
        rescan_timer_(io_) {
    require_directory(options_.base_dir, "base directory");
    if (options_.ui_dir) require_directory(*options_.ui_dir, "UI directory");
    const tcp::endpoint ep(address_, options_.port);
    boost::system::error_code ec;
    const auto fail = [&](const char* step) {
      throw std::runtime_error("patchbay serve: cannot " + std::string(step) + " " +
                               address_.to_string() + ":" + std::to_string(options_.port) + ": " +
                               ec.message());
    };
    if (acceptor_.open(ep.protocol(), ec)) fail("open a socket for");
    // Restarting the server right after stopping it must not wait for TIME_WAIT.
    if (acceptor_.set_option(tcp::acceptor::reuse_address(true), ec)) fail("configure");
    if (acceptor_.bind(ep, ec)) fail("bind");
    if (acceptor_.listen(net::socket_base::max_listen_connections, ec)) fail("listen on");
    port_ = acceptor_.local_endpoint().port();
  }

  ~Impl() override { stop(); }

  void start() {
    if (started_) throw std::runtime_error("patchbay serve: server already started");
    started_ = true;
    runs_ = discover_runs(options_.base_dir);
    do_accept();
    arm_rescan();
    thread_ = std::thread([this] {
      // A handler that throws must not take the whole server down; log and keep serving.
      while (true) {
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          std::cerr << "patchbay serve: " << e.what() << "\n";
        }
      }
    });
  }

  void stop() {
    if (stopped_) return;
    stopped_ = true;
    if (thread_.joinable()) {
      net::post(io_, [this] { shutdown_all(); });
      thread_.join();
    } else {
      shutdown_all();
    }
    // Run the handlers that the shutdown aborted, so sessions (and their sockets) are released
    // now rather than when the io_context is destroyed.
    io_.restart();
    io_.poll();
  }

  std::uint16_t port() const { return port_; }

  std::string url() const {
    const auto host = address_.is_v6() ? "[" + address_.to_string() + "]" : address_.to_string();
    return "http://" + host + ":" + std::to_string(port_) + "/";
  }

  // SessionHost
  const Router& router() const override { return router_; }
  bool stopping() const override { return stopping_; }
  void add_run_subscriber(std::weak_ptr<Session> s) override {
    run_subscribers_.push_back(std::move(s));
  }

 private:
  void shutdown_all() {
    stopping_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    rescan_timer_.cancel();
    for (auto& weak : sessions_) {
      if (auto s = weak.lock()) s->close();
    }
    sessions_.clear();
    run_subscribers_.clear();
  }

  void do_accept() {
    acceptor_.async_accept(io_, [this](boost::system::error_code ec, tcp::socket socket) {
      if (stopping_) return;
      if (!ec) {
        auto session = std::make_shared<Session>(std::move(socket), *this);
        prune(sessions_);
        sessions_.push_back(session);
        session->start();
      }
      // Errors such as EMFILE affect one connection; keep accepting.
      do_accept();
    });
  }

  void arm_rescan() {
    rescan_timer_.expires_after(options_.rescan_interval);
    rescan_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || stopping_) return;
      auto fresh = discover_runs(options_.base_dir);
      if (run_list_changed(runs_, fresh)) {
        prune(run_subscribers_);
        for (auto& weak : run_subscribers_) {
          if (auto s = weak.lock()) s->send_sse("data: update\n\n");
        }
      }
      runs_ = std::move(fresh);
      arm_rescan();
    });
  }

  static void prune(std::vector<std::weak_ptr<Session>>& v) {
    std::erase_if(v, [](const std::weak_ptr<Session>& w) { return w.expired(); });
  }

  ServerOptions options_;
  net::ip::address address_;
  Router router_;
  // Declared before everything that holds handlers or sockets, so it is destroyed last.
  net::io_context io_{1};
  tcp::acceptor acceptor_;
  net::steady_timer rescan_timer_;
  std::uint16_t port_ = 0;
  std::vector<RunInfo> runs_;
  std::vector<std::weak_ptr<Session>> sessions_;
  std::vector<std::weak_ptr<Session>> run_subscribers_;
  std::thread thread_;
  bool started_ = false;
  bool stopped_ = false;
  bool stopping_ = false;  // only touched on the io thread (or after it was joined)
};

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Server::~Server() = default;
void Server::start() { impl_->start(); }
void Server::stop() { impl_->stop(); }
std::uint16_t Server::port() const { return impl_->port(); }
std::string Server::url() const { return impl_->url(); }

void apply_bind(ServerOptions& options, const std::string& bind) {
  const auto bad = [&](const char* why) {
    throw std::invalid_argument("invalid bind address '" + bind + "': " + why);
  };
  std::string host = bind;
  std::optional<std::string> port;
  if (!bind.empty() && bind.front() == '[') {
    const auto close = bind.find(']');
    if (close == std::string::npos) bad("missing ']'");
    host = bind.substr(1, close - 1);
    if (close + 1 < bind.size()) {
      if (bind[close + 1] != ':') bad("expected ':' after ']'");
      port = bind.substr(close + 2);
    }
  } else if (const auto colon = bind.find(':');
             colon != std::string::npos && bind.find(':', colon + 1) == std::string::npos) {
    // Exactly one colon: host:port. More than one is a bare IPv6 address.
    host = bind.substr(0, colon);
    port = bind.substr(colon + 1);
  }
  if (port) {
    unsigned value = 0;
    const auto [ptr, ec] = std::from_chars(port->data(), port->data() + port->size(), value);
    if (port->empty() || ec != std::errc() || ptr != port->data() + port->size() || value > 65535) {
      bad("port must be a number from 0 to 65535");
    }
    options.port = static_cast<std::uint16_t>(value);
  }
  if (!host.empty()) options.bind_address = host;
}

int run_until_signal(const ServerOptions& options, std::ostream& out) {
  // Block the signals before the server thread exists so it inherits the mask and sigwait()
  // below is the only place they are delivered. Restored on every exit path, including a
  // constructor that throws (port in use).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  struct MaskGuard {
    sigset_t previous;
    explicit MaskGuard(const sigset_t& block) { pthread_sigmask(SIG_BLOCK, &block, &previous); }
    ~MaskGuard() { pthread_sigmask(SIG_SETMASK, &previous, nullptr); }
  } guard(signals);
  Server server(options);
  server.start();
  out << "patchbay: serving " << options.base_dir.string() << " at " << server.url() << std::endl;
  int received = 0;
  sigwait(&signals, &received);
  server.stop();
  return 0;
}

}  // namespace patchbay::serve
