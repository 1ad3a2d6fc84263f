// patchbay serve: the devtools HTTP server. Serves a directory of lab run directories read-only
// (formats.md section 10) to the devtools UI.
//
//   patchbay::serve::ServerOptions opts;
//   opts.base_dir = ".patchbay-work";
//   opts.port = 0;                       // ephemeral; read it back with server.port()
//   patchbay::serve::Server server(opts);  // binds or throws std::runtime_error
//   server.start();                      // serves on a background thread
//   std::cout << server.url() << "\n";
//   ...
//   server.stop();                       // closes listener and all streams, joins the thread
//
// The CLI uses run_until_signal(), which blocks until SIGINT or SIGTERM.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

namespace patchbay::serve {

struct ServerOptions {
  std::filesystem::path base_dir;  // must exist; served read-only
  // Loopback by default: run directories hold logs and captures that should not be public.
  std::string bind_address = "127.0.0.1";
  std::uint16_t port = 7421;  // 0 picks a free port
  // Directory with the built UI (index.html and assets); when unset, "/" shows a placeholder.
  std::optional<std::filesystem::path> ui_dir;
  std::chrono::milliseconds rescan_interval{2000};      // run list rescan (formats.md 10.1)
  std::chrono::milliseconds events_poll_interval{500};  // events.jsonl tail polling
  std::chrono::milliseconds keepalive_interval{15000};  // SSE comment lines keep proxies open
  // Requests whose headers do not arrive within this time are dropped (slow-loris guard).
  std::chrono::milliseconds request_timeout{30000};
  // When bound to loopback, reject requests whose Host is not a loopback name, so a web page
  // cannot read the runs through DNS rebinding.
  bool check_host = true;
};

class Server {
 public:
  // Binds the listening socket; throws std::runtime_error naming the address, port and reason
  // (also when base_dir or ui_dir is not a directory).
  explicit Server(ServerOptions options);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Starts serving on one background thread. Calling it twice is an error.
  void start();
  // Closes the listener and every connection (SSE streams included) and joins the thread.
  // Idempotent; safe to call without start().
  void stop();

  std::uint16_t port() const;  // the bound port (the real one when options.port was 0)
  std::string url() const;     // "http://127.0.0.1:<port>/"

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Applies a `--bind` value to options: "ADDR", "ADDR:PORT", "[V6ADDR]:PORT" or ":PORT" (the
// upstream CLI takes "127.0.0.1:7421" in one flag). Throws std::invalid_argument naming the
// value if the port is not a number in 0..65535 or a bracket is unbalanced.
void apply_bind(ServerOptions& options, const std::string& bind);

// For `patchbay serve DIR [--bind ADDR] [--port N] [--ui DIR]`: starts the server, prints
// "patchbay: serving <dir> at <url>" to `out`, blocks until SIGINT or SIGTERM, then stops.
// Returns 0; throws std::runtime_error if the server cannot start.
int run_until_signal(const ServerOptions& options, std::ostream& out);

}  // namespace patchbay::serve
