// The QEMU command line for one guest run, kept apart from process handling so it can be read
// (and printed with --verbose) as one list.
//
// Example:
//   std::vector<std::string> argv = qemu_command({.qemu = "qemu-system-x86_64", ...});
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "guest_command.hpp"

namespace patchbay::cli {

struct QemuSetup {
  std::string qemu;
  bool kvm = false;
  std::uint32_t memory_mib = 512;
  std::uint32_t cpus = 1;
  std::filesystem::path kernel;
  std::filesystem::path initramfs;
  std::vector<std::string> append;  // extra kernel command-line words
  std::filesystem::path run_dir;    // 9p tag pbrun: scripts in, exit code out
  std::vector<GuestShare> shares;   // read-write 9p shares
  std::filesystem::path console_log;
  int stdout_fd = -1;  // the fds (in QEMU) its stdout/stderr ports write to
  int stderr_fd = -1;
};

std::vector<std::string> qemu_command(const QemuSetup& setup);

// QEMU option values separate with ',', so a literal comma in a path is written twice.
std::string qemu_escape(const std::string& value);

}  // namespace patchbay::cli
