#include "cpio_writer.hpp"

#include <sys/stat.h>

#include <cstdio>

namespace patchbay::cli {

void CpioWriter::add_directory(std::string_view path, std::uint32_t mode) {
  add_entry(path, S_IFDIR | mode, {});
}

void CpioWriter::add_file(std::string_view path, std::string_view contents, std::uint32_t mode) {
  add_entry(path, S_IFREG | mode, contents);
}

void CpioWriter::add_symlink(std::string_view path, std::string_view target) {
  add_entry(path, S_IFLNK | 0777, target);
}

void CpioWriter::add_char_device(std::string_view path, std::uint32_t major, std::uint32_t minor,
                                 std::uint32_t mode) {
  add_entry(path, S_IFCHR | mode, {}, major, minor);
}

void CpioWriter::add_entry(std::string_view path, std::uint32_t mode, std::string_view data,
                           std::uint32_t rdev_major, std::uint32_t rdev_minor) {
  // newc header: magic plus 13 eight-digit hex fields; name and data each padded to 4 bytes.
  char header[111];
  std::snprintf(header, sizeof header, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
                next_inode_++, mode, 0u /*uid*/, 0u /*gid*/, 1u /*nlink*/, 0u /*mtime*/,
                static_cast<unsigned>(data.size()), 0u /*devmajor*/, 0u /*devminor*/, rdev_major,
                rdev_minor, static_cast<unsigned>(path.size() + 1), 0u /*check*/);
  out_.append(header, 110);
  out_.append(path);
  out_.push_back('\0');
  pad4();
  out_.append(data);
  pad4();
}

void CpioWriter::pad4() {
  while (out_.size() % 4 != 0) out_.push_back('\0');
}

std::string CpioWriter::finish() && {
  add_entry("TRAILER!!!", 0, {});
  return std::move(out_);
}

}  // namespace patchbay::cli
