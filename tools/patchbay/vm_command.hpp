// Registers `patchbay vm run` on the CLI. Each top-level command lives in its own file with one
// such function, so adding `patchbay serve` means one more file and one call in main.cpp.
//
// Example:
//   CLI::App app{"patchbay"};
//   int exit_code = 0;
//   add_vm_command(app, exit_code);
//   CLI11_PARSE(app, argc, argv);
#pragma once

#include <CLI/CLI.hpp>

namespace patchbay::cli {

// The subcommand's callback stores the exit code to return from main() in `exit_code`.
void add_vm_command(CLI::App& app, int& exit_code);

}  // namespace patchbay::cli
