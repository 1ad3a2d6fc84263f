// Which guest kernel to boot: an explicit image, or by default the newest Debian
// /boot/vmlinuz-<kver> whose /lib/modules/<kver> has sch_netem (the point of the VM).
//
// Example:
//   GuestKernel k = locate_guest_kernel(std::nullopt, "/boot", "/lib/modules");
//   // k.image == "/boot/vmlinuz-6.1.0-56-amd64", k.release == "6.1.0-56-amd64"
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace patchbay::cli {

struct GuestKernel {
  std::filesystem::path image;        // bzImage (or an ELF vmlinux)
  std::string release;                // e.g. 6.1.0-56-amd64: names /lib/modules/<release>
  std::filesystem::path modules_dir;  // <modules_root>/<release>
};

// Throws VmError(kKernelMissing) naming the image path (or /boot and the package to install)
// and VmError(kModulesMissing) naming the missing modules directory. `release` overrides the
// release derived from an explicit image's file name (vmlinuz-<release>).
GuestKernel locate_guest_kernel(const std::optional<std::filesystem::path>& image,
                                const std::optional<std::string>& release,
                                const std::filesystem::path& boot_dir,
                                const std::filesystem::path& modules_root);

// True if the modules directory of a release has sch_netem (any compression).
bool modules_have_netem(const std::filesystem::path& modules_dir);

}  // namespace patchbay::cli
