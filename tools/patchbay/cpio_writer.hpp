// An in-memory writer of the "newc" cpio format the kernel unpacks as initramfs.
//
// Example:
//   CpioWriter cpio;
//   cpio.add_directory("bin");
//   cpio.add_file("bin/busybox", bytes, 0755);
//   cpio.add_symlink("bin/sh", "busybox");
//   cpio.add_char_device("dev/console", 5, 1, 0600);
//   std::string archive = std::move(cpio).finish();
//
// Written here rather than by cpio(1) because entries such as /dev/console must be device nodes,
// which cpio(1) can only copy from a real node (and creating one needs root). Uncompressed on
// purpose: under TCG, decompressing in the guest costs more than QEMU copying a few more MB.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace patchbay::cli {

class CpioWriter {
 public:
  void add_directory(std::string_view path, std::uint32_t mode = 0755);
  void add_file(std::string_view path, std::string_view contents, std::uint32_t mode);
  void add_symlink(std::string_view path, std::string_view target);
  void add_char_device(std::string_view path, std::uint32_t major, std::uint32_t minor,
                       std::uint32_t mode);
  // Appends the trailer and returns the archive.
  std::string finish() &&;

 private:
  void add_entry(std::string_view path, std::uint32_t mode, std::string_view data,
                 std::uint32_t rdev_major = 0, std::uint32_t rdev_minor = 0);
  void pad4();

  std::string out_;
  std::uint32_t next_inode_ = 1;
};

}  // namespace patchbay::cli
