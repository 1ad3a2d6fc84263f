#include "vmlinux_extract.hpp"

#include <fcntl.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "exit_codes.hpp"
#include "subprocess.hpp"
#include "temp_dir.hpp"

namespace patchbay::cli {
namespace fs = std::filesystem;

bool is_elf(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  char magic[4] = {};
  return fd.valid() && ::read(fd.get(), magic, 4) == 4 &&
         std::memcmp(magic,
                     "\x7f"
                     "ELF",
                     4) == 0;
}

bool extract_vmlinux(const fs::path& bzimage, const fs::path& out, const std::string& xz) {
  const std::string image = read_file(bzimage);
  static constexpr std::string_view kXzMagic(
      "\xfd"
      "7zXZ\0",
      6);
  const fs::path payload = out.string() + ".xz";
  // The first match is the payload in practice; a few more tries cover a stray match in the
  // setup code before it.
  std::size_t pos = 0;
  for (int attempt = 0; attempt < 4; ++attempt, ++pos) {
    pos = std::string_view(image).find(kXzMagic, pos);
    if (pos == std::string_view::npos) break;
    // The payload is followed by the decompressor's trailer; --single-stream ignores it.
    write_file(payload, std::string_view(image).substr(pos));
    UniqueFd out_fd(::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!out_fd.valid()) {
      throw VmError(ExitCode::kSetupFailed,
                    "cannot create " + out.string() + ": " + std::strerror(errno));
    }
    UniqueFd devnull(::open("/dev/null", O_WRONLY | O_CLOEXEC));
    SpawnSpec spec;
    spec.argv = {xz, "-dc", "--single-stream", payload.string()};
    spec.stdout_fd = out_fd.get();
    spec.stderr_fd = devnull.get();
    Child child = spawn(spec);
    const int status = child.wait();
    std::error_code ec;
    fs::remove(payload, ec);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && is_elf(out)) return true;
  }
  std::error_code ec;
  fs::remove(out, ec);
  return false;
}

}  // namespace patchbay::cli
