// Whether QEMU can use KVM here, found out in a few milliseconds without starting QEMU.
//
// Example:
//   KvmProbe kvm = probe_kvm();
//   if (!kvm.usable) std::cerr << "using TCG: " << kvm.reason;
//
// Opening /dev/kvm is not enough: on nested hosts such as this project's CI machine, /dev/kvm
// works for a toy guest but QEMU's `-cpu host` aborts ("failed to set MSR 0x10a") and other CPU
// models hang silently. So the probe does what QEMU does first: create a VM and a vCPU, give it
// the host's supported CPUID, and set IA32_ARCH_CAPABILITIES to the value KVM advertises.
#pragma once

#include <string>

namespace patchbay::cli {

struct KvmProbe {
  bool usable = false;
  std::string reason;  // why not, when not usable
};

KvmProbe probe_kvm();

}  // namespace patchbay::cli
