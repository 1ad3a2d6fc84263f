// What `patchbay vm run` was asked to do, as parsed from the command line.
//
// Example:
//   VmOptions o;
//   o.command = {"./patchbay_kernel_tests", "--gtest_filter=Qdisc*"};
//   o.timeout = std::chrono::seconds(300);
//   return run_vm(o);
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace patchbay::cli {

enum class Accel { kAuto, kKvm, kTcg };

struct VmOptions {
  std::vector<std::string> command;             // what runs in the guest
  std::optional<std::filesystem::path> kernel;  // default: newest Debian kernel with netem
  std::optional<std::string> kernel_release;    // default: from the image name
  std::filesystem::path boot_dir = "/boot";     // where the default kernel is looked for
  std::filesystem::path modules_root = "/lib/modules";
  std::uint32_t memory_mib = 512;
  std::uint32_t cpus = 1;
  std::chrono::seconds timeout{600};
  std::vector<std::filesystem::path> shares;  // read-write, same path in the guest
  std::vector<std::string> env;               // KEY=VALUE added or overriding
  Accel accel = Accel::kAuto;
  std::string qemu = "qemu-system-x86_64";
  std::optional<std::filesystem::path> cache_dir;  // default: default_cache_root()
  std::vector<std::string> append;                 // extra kernel command-line words
  std::optional<std::filesystem::path> pid_file;   // QEMU's PID is written here once started
  bool verbose = false;
};

}  // namespace patchbay::cli
