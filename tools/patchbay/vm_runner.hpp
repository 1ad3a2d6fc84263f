// `patchbay vm run`: boots the guest, runs the command in it with the caller's working
// directory and environment, streams its stdout and stderr live, and returns its exit code, or
// ExitCode::kTimeout / kVmFailed when the guest hangs or ends without one.
//
// Example:
//   VmOptions o;
//   o.command = {"sh", "-c", "tc qdisc add dev lo root netem delay 1ms"};
//   int rc = run_vm(o);  // throws VmError for setup failures (missing kernel, QEMU, ...)
#pragma once

#include "vm_options.hpp"

namespace patchbay::cli {

int run_vm(const VmOptions& options);

}  // namespace patchbay::cli
