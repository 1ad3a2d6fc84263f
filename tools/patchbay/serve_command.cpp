#include "serve_command.hpp"

#include <cstdint>
#include <exception>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "exit_codes.hpp"
#include "patchbay_serve/server.hpp"

namespace patchbay::cli {
namespace {

// The UI served without --ui: the installed copy (<prefix>/share/patchbay/ui beside
// <prefix>/bin/patchbay), else the source tree this binary was built from.
std::optional<std::filesystem::path> default_ui_dir() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::vector<std::filesystem::path> candidates;
  if (!ec) candidates.push_back(exe.parent_path().parent_path() / "share" / "patchbay" / "ui");
  candidates.emplace_back(PATCHBAY_UI_SOURCE_DIR);
  for (const auto& dir : candidates) {
    if (std::filesystem::is_regular_file(dir / "index.html", ec)) return dir;
  }
  return std::nullopt;
}

}  // namespace

void add_serve_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::string dir = ".patchbay-work";
    std::string bind;
    std::optional<std::uint16_t> port;
    std::string ui;
  };
  auto options = std::make_shared<Options>();
  CLI::App* serve = app.add_subcommand(
      "serve", "Serve lab run directories (events, state, logs, captures) to the devtools UI");
  serve->add_option("dir", options->dir, "Directory holding run directories (or one run)");
  serve->add_option("--bind", options->bind,
                    "Address to listen on: ADDR, ADDR:PORT, [v6]:PORT or :PORT "
                    "(default 127.0.0.1:7421)");
  serve->add_option("--port", options->port, "Port (0: any free one); overrides --bind's");
  serve->add_option(
      "--ui", options->ui,
      "Directory with the UI (index.html); default: the installed or source tree's ui/");
  serve->callback([options, &exit_code] {
    try {
      patchbay::serve::ServerOptions o;
      o.base_dir = options->dir;
      if (!options->bind.empty()) patchbay::serve::apply_bind(o, options->bind);
      if (options->port) o.port = *options->port;
      if (!options->ui.empty()) {
        o.ui_dir = std::filesystem::path(options->ui);
      } else {
        o.ui_dir = default_ui_dir();
      }
      exit_code = patchbay::serve::run_until_signal(o, std::cout);
    } catch (const std::exception& e) {
      std::cerr << "patchbay serve: " << e.what() << "\n";
      exit_code = static_cast<int>(ExitCode::kUsage);
    }
  });
}

}  // namespace patchbay::cli
