// patchbay: the command-line tool. Subcommands register themselves from their own files
// (vm_command.cpp, serve_command.cpp).
#include <CLI/CLI.hpp>

#include "exit_codes.hpp"
#include "serve_command.hpp"
#include "vm_command.hpp"

int main(int argc, char** argv) {
  CLI::App app{"patchbay: network labs for tests, and the tools around them"};
  app.require_subcommand(1);
  int exit_code = 0;
  patchbay::cli::add_vm_command(app, exit_code);
  patchbay::cli::add_serve_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the message
    return static_cast<int>(patchbay::cli::ExitCode::kUsage);
  }
  return exit_code;
}
