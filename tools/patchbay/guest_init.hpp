// The guest's first stage: /init inside the initramfs (busybox ash). It loads the modules,
// mounts the host root read-only over 9p with a tmpfs overlay on top, mounts the run directory
// and the extra shares, names the output ports, and switch_roots into the host userland to run
// the generated command script.
//
// Example:
//   cpio.add_file("init", guest_init_script(), 0755);
//   for (const char* applet : kGuestInitApplets) cpio.add_symlink(..., "busybox");
#pragma once

#include <array>
#include <string_view>

namespace patchbay::cli {

// 9p tags and virtio-serial port names shared by the QEMU command line and the guest scripts.
inline constexpr std::string_view kHostRootTag = "hostroot";
inline constexpr std::string_view kRunDirTag = "pbrun";
inline constexpr std::string_view kStdoutPort = "org.patchbay.stdout";
inline constexpr std::string_view kStderrPort = "org.patchbay.stderr";
// Where the run directory appears in the guest (a tmpfs /run keeps it off the read-only root).
inline constexpr std::string_view kGuestRunDir = "/run/patchbay";

// The busybox applets /init uses; each becomes a symlink in /bin of the initramfs.
inline constexpr std::array<std::string_view, 11> kGuestInitApplets = {
    "sh", "mount",    "insmod", "mkdir", "switch_root", "poweroff",
    "ip", "hostname", "cat",    "ln",    "sleep"};

std::string_view guest_init_script();

}  // namespace patchbay::cli
