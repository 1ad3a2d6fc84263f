// Turns Debian's bzImage into the plain ELF vmlinux inside it. QEMU boots that ELF straight
// through the PVH entry point (CONFIG_PVH), which skips the in-guest XZ decompression: about
// 3.5 s per boot under TCG.
//
// Example:
//   if (!extract_vmlinux("/boot/vmlinuz-6.1.0-56-amd64", dir / "vmlinux", "/usr/bin/xz"))
//     boot the bzImage itself instead (slower, but it works)
#pragma once

#include <filesystem>
#include <string>

namespace patchbay::cli {

// Returns false if the image holds no XZ payload that decompresses to an ELF (another
// compression, say); throws VmError(kSetupFailed) only for I/O failures.
bool extract_vmlinux(const std::filesystem::path& bzimage, const std::filesystem::path& out,
                     const std::string& xz);

bool is_elf(const std::filesystem::path& path);

}  // namespace patchbay::cli
