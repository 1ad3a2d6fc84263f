#include "vm_command.hpp"

#include <iostream>
#include <memory>

#include "exit_codes.hpp"
#include "vm_options.hpp"
#include "vm_runner.hpp"

namespace patchbay::cli {

void add_vm_command(CLI::App& app, int& exit_code) {
  CLI::App* vm =
      app.add_subcommand("vm", "Run commands in a QEMU guest with a netem-capable kernel");
  vm->require_subcommand(1);
  CLI::App* run = vm->add_subcommand(
      "run",
      "Boot a Linux kernel in QEMU (KVM if usable, else TCG) over the host root (read-only 9p + "
      "tmpfs overlay) and run CMD there in the same working directory and environment; exit "
      "with CMD's exit code.\n"
      "Exit codes of the runner itself: 2 usage, 120 no kernel image, 121 kernel modules "
      "missing, 122 no QEMU, 123 setup failed (busybox/xz/modprobe/cache), 124 timeout (QEMU "
      "killed), 125 the guest ended without an exit code.");
  auto opts = std::make_shared<VmOptions>();
  auto timeout_s = std::make_shared<unsigned>(600);
  auto accel = std::make_shared<std::string>("auto");
  auto kernel = std::make_shared<std::string>();
  auto cache = std::make_shared<std::string>();
  auto pid_file = std::make_shared<std::string>();

  run->add_option("-k,--kernel", *kernel,
                  "Kernel image (default: the newest /boot/vmlinuz-<release> whose "
                  "/lib/modules/<release> has sch_netem)");
  run->add_option("--kernel-release", opts->kernel_release,
                  "Release naming /lib/modules/<release> (default: from vmlinuz-<release>)");
  run->add_option("-m,--memory", opts->memory_mib, "Guest memory in MiB")
      ->capture_default_str()
      ->check(CLI::Range(64u, 65536u));
  run->add_option("-c,--cpus", opts->cpus, "Guest CPUs")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u));
  run->add_option("-t,--timeout", *timeout_s,
                  "Seconds until QEMU is killed and the runner exits with 124")
      ->capture_default_str()
      ->check(CLI::Range(1u, 86400u));
  run->add_option("-s,--share", opts->shares,
                  "Host directory shared read-write at the same path in the guest (repeatable); "
                  "everything else is the read-only host root with a throw-away overlay")
      ->check(CLI::ExistingDirectory);
  run->add_option("-e,--env", opts->env, "KEY=VALUE set in the command's environment (repeatable)");
  run->add_option("--accel", *accel, "auto (KVM if usable, else TCG), kvm or tcg")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "kvm", "tcg"}));
  run->add_option("--qemu", opts->qemu, "QEMU binary")->capture_default_str();
  run->add_option("--cache-dir", *cache,
                  "Cache of extracted kernels and initramfs images (default: "
                  "$XDG_CACHE_HOME/patchbay/vm or ~/.cache/patchbay/vm)");
  run->add_option("--boot-dir", opts->boot_dir, "Where the default kernel image is looked for")
      ->capture_default_str();
  run->add_option("--modules-dir", opts->modules_root, "Where /lib/modules/<release> is")
      ->capture_default_str();
  run->add_option("--append", opts->append, "Extra kernel command-line word (repeatable)");
  run->add_option("--pid-file", *pid_file, "Write QEMU's PID here once it is started");
  run->add_flag("-v,--verbose", opts->verbose, "Print the QEMU command line and timings");
  run->add_option("command", opts->command, "CMD ARGS... (after --)")->required();
  run->positionals_at_end();

  run->callback([&exit_code, opts, timeout_s, accel, kernel, cache, pid_file] {
    opts->timeout = std::chrono::seconds(*timeout_s);
    opts->accel = *accel == "kvm" ? Accel::kKvm : *accel == "tcg" ? Accel::kTcg : Accel::kAuto;
    if (!kernel->empty()) opts->kernel = *kernel;
    if (!cache->empty()) opts->cache_dir = *cache;
    if (!pid_file->empty()) opts->pid_file = *pid_file;
    for (const std::string& e : opts->env) {
      if (e.find('=') == std::string::npos || e.front() == '=') {
        throw CLI::ValidationError("--env", "expected KEY=VALUE, got '" + e + "'");
      }
    }
    try {
      exit_code = run_vm(*opts);
    } catch (const VmError& e) {
      std::cerr << "patchbay vm: " << e.what() << "\n";
      exit_code = static_cast<int>(e.code());
    }
  });
}

}  // namespace patchbay::cli
