// The exit codes of `patchbay vm run` that are the runner's own, and the exception that carries
// one of them from wherever a failure is found up to main().
//
// Example:
//   throw VmError(ExitCode::kQemuMissing, "qemu-system-x86_64 not found (apt install
//   qemu-system-x86)");
//
// The command's own exit code passes through unchanged, so these are chosen from the top of the
// range (like timeout(1)'s 124/125) where test programs rarely exit on purpose.
#pragma once

#include <stdexcept>
#include <string>

namespace patchbay::cli {

enum class ExitCode : int {
  kUsage = 2,             // bad command line (CLI11 parse errors)
  kKernelMissing = 120,   // no usable guest kernel image
  kModulesMissing = 121,  // /lib/modules/<kver> or a module the initramfs needs is missing
  kQemuMissing = 122,     // qemu-system-x86_64 not found
  kSetupFailed =
      123,          // host tools (busybox, xz, modprobe, ldd) missing or failing, cache unwritable
  kTimeout = 124,   // the command did not finish within --timeout; QEMU was killed
  kVmFailed = 125,  // the guest ended without reporting an exit code (panic, crash, boot failure)
};

class VmError : public std::runtime_error {
 public:
  VmError(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

}  // namespace patchbay::cli
