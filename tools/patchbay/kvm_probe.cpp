#include "kvm_probe.hpp"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "unique_fd.hpp"

namespace patchbay::cli {
using patchbay::internal::UniqueFd;

namespace {

constexpr std::uint32_t kMsrArchCapabilities = 0x10a;

// The KVM structs end in a zero-length array, which C++ pads differently from C (kvm_cpuid2 is
// 12 bytes in g++, 8 in C), and the size is part of the ioctl number. So the numbers and the
// layouts are spelled out with the C sizes.
constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, std::uint64_t);
constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, std::uint64_t);
constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, std::uint64_t);
constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, std::uint64_t);

struct OneMsr {
  std::uint32_t nmsrs = 1;
  std::uint32_t pad = 0;
  kvm_msr_entry entry{};
};

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

}  // namespace

KvmProbe probe_kvm() {
  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm.valid()) return {false, errno_text("/dev/kvm")};
  if (::ioctl(kvm.get(), KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
    return {false, "/dev/kvm: unexpected KVM API version"};
  }
  UniqueFd vm(::ioctl(kvm.get(), KVM_CREATE_VM, 0));
  if (!vm.valid()) return {false, errno_text("KVM_CREATE_VM")};
  UniqueFd vcpu(::ioctl(vm.get(), KVM_CREATE_VCPU, 0));
  if (!vcpu.valid()) return {false, errno_text("KVM_CREATE_VCPU")};

  constexpr std::size_t kMaxEntries = 256;
  // Header {nent, padding}, then the entries.
  std::vector<std::uint32_t> cpuid(2 + kMaxEntries * sizeof(kvm_cpuid_entry2) / 4, 0);
  cpuid[0] = kMaxEntries;
  if (::ioctl(kvm.get(), kGetSupportedCpuid, cpuid.data()) != 0) {
    return {false, errno_text("KVM_GET_SUPPORTED_CPUID")};
  }
  if (::ioctl(vcpu.get(), kSetCpuid2, cpuid.data()) != 0) {
    return {false, errno_text("KVM_SET_CPUID2")};
  }
  OneMsr msr;
  msr.entry.index = kMsrArchCapabilities;
  // The feature MSR query answers 1 if the host offers ARCH_CAPABILITIES at all; if not, QEMU
  // does not set it either and there is nothing to check.
  if (::ioctl(kvm.get(), kGetMsrs, &msr) == 1 && ::ioctl(vcpu.get(), kSetMsrs, &msr) != 1) {
    return {false,
            "KVM refuses IA32_ARCH_CAPABILITIES on a vCPU (nested KVM that QEMU cannot use)"};
  }
  return {true, {}};
}

}  // namespace patchbay::cli
