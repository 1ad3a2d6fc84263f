// Registers `patchbay serve DIR` on the CLI: the devtools server (tools/serve, docs/serve.md)
// over a directory of lab run directories, e.g. a test run's PATCHBAY_OUTDIR.
//
//   patchbay serve /tmp/patchbay-out                  # http://127.0.0.1:7421/
//   patchbay serve out --bind 0.0.0.0:8080 --ui ui/dist
#pragma once

#include <CLI/CLI.hpp>

namespace patchbay::cli {

// The subcommand's callback stores the exit code to return from main() in `exit_code`.
void add_serve_command(CLI::App& app, int& exit_code);

}  // namespace patchbay::cli
