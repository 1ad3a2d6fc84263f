// The boot files of the guest, built once per kernel and host userland and cached:
// <cache>/<release>-<hash>/{vmlinux,initramfs.cpio}. The hash covers everything they are built
// from (kernel image, modules.dep, busybox, the /init text, the format), so an upgraded package
// gets a fresh entry. Entries are built in a private directory and renamed into place, so
// runs that start at the same time (ctest -j2) never see half a file: one rename wins, the
// other build is thrown away.
//
// Example:
//   GuestImage img = prepare_guest_image(kernel, default_cache_root(), /*verbose=*/false);
//   qemu ... -kernel img.kernel -initrd img.initramfs
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "guest_kernel.hpp"

namespace patchbay::cli {

struct GuestImage {
  std::filesystem::path kernel;     // the extracted ELF vmlinux, or the bzImage if none
  std::filesystem::path initramfs;  // uncompressed newc cpio
  std::filesystem::path busybox;    // the host busybox the guest scripts may call after switch_root
  bool built = false;               // false: taken from the cache
};

// The modules loaded in /init, in `modprobe --show-depends` order: enough to reach the host
// root (virtio PCI, 9p, overlay) and the output ports (virtio_console). Everything else
// (sch_netem, veth, nf_tables...) autoloads later through the host's modprobe.
inline const std::vector<std::string> kInitramfsModules = {"virtio_pci", "9pnet_virtio", "9p",
                                                           "overlay", "virtio_console"};

// $XDG_CACHE_HOME/patchbay/vm, else $HOME/.cache/patchbay/vm, else a per-user /tmp directory.
std::filesystem::path default_cache_root();

// Throws VmError: kSetupFailed for a missing busybox/xz/modprobe/ldd (naming the package) or an
// unwritable cache, kModulesMissing if modprobe cannot resolve a module for this release.
GuestImage prepare_guest_image(const GuestKernel& kernel, const std::filesystem::path& cache_root,
                               bool verbose);

}  // namespace patchbay::cli
