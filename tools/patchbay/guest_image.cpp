#include "guest_image.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <system_error>

#include "cpio_writer.hpp"
#include "exit_codes.hpp"
#include "guest_init.hpp"
#include "subprocess.hpp"
#include "temp_dir.hpp"
#include "vmlinux_extract.hpp"

namespace patchbay::cli {
namespace fs = std::filesystem;

namespace {

// Bump when the layout of an entry changes, so old entries are not reused.
constexpr int kFormatVersion = 1;

std::string stat_key(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return path.string() + " missing";
  return path.string() + " " + std::to_string(st.st_size) + " " + std::to_string(st.st_ino) + " " +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

// FNV-1a: a cache key, not a security boundary.
std::string fnv1a_hex(std::string_view text) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string require_tool(const std::string& name, const std::string& package) {
  auto path = find_executable(name);
  if (!path) {
    throw VmError(ExitCode::kSetupFailed, name + " not found in PATH (install the Debian package " +
                                              package + "); needed to build the guest initramfs");
  }
  return *path;
}

// Libraries of a dynamic executable as ldd lists them, including the loader (by absolute path).
std::vector<std::string> shared_libraries(const std::string& ldd, const std::string& exe) {
  std::vector<std::string> libs;
  std::istringstream in(run_capture({ldd, exe}));
  std::string line;
  while (std::getline(in, line)) {
    std::size_t start = line.find("=> ");
    start = start == std::string::npos ? line.find_first_not_of(" \t") : start + 3;
    if (start == std::string::npos || line[start] != '/') continue;  // linux-vdso, static
    libs.push_back(line.substr(start, line.find(' ', start) - start));
  }
  return libs;
}

// Module files in load order, each once; built-in modules need no file.
std::vector<fs::path> module_files(const std::string& modprobe, const GuestKernel& kernel) {
  std::vector<std::string> argv = {modprobe, "-a", "-S", kernel.release, "--show-depends"};
  argv.insert(argv.end(), kInitramfsModules.begin(), kInitramfsModules.end());
  std::string out;
  try {
    out = run_capture(argv);
  } catch (const VmError& e) {
    throw VmError(ExitCode::kModulesMissing,
                  std::string("the guest kernel's modules are incomplete in ") +
                      kernel.modules_dir.string() + ": " + e.what());
  }
  std::vector<fs::path> files;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("insmod ")) continue;
    std::string path = line.substr(7);
    path = path.substr(0, path.find(' '));
    if (std::find(files.begin(), files.end(), fs::path(path)) == files.end()) files.push_back(path);
  }
  for (const fs::path& f : files) {
    if (f.extension() != ".ko") {
      throw VmError(ExitCode::kModulesMissing,
                    "module " + f.string() +
                        " is compressed; the initramfs's busybox insmod needs plain .ko files");
    }
  }
  return files;
}

// Parent directories of `path` that the archive does not have yet, outermost first.
void add_parents(CpioWriter& cpio, std::vector<std::string>& dirs, const std::string& path) {
  for (std::size_t slash = path.find('/'); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    std::string dir = path.substr(0, slash);
    if (std::find(dirs.begin(), dirs.end(), dir) != dirs.end()) continue;
    cpio.add_directory(dir);
    dirs.push_back(dir);
  }
}

std::string build_initramfs(const std::string& busybox, const std::vector<std::string>& libs,
                            const std::vector<fs::path>& modules) {
  CpioWriter cpio;
  std::vector<std::string> dirs;
  for (const char* d : {"bin", "dev", "proc", "sys", "lower", "rw", "newroot", "mod"}) {
    cpio.add_directory(d);
    dirs.emplace_back(d);
  }
  // The kernel opens /dev/console for init's stdio before /init can mount devtmpfs.
  cpio.add_char_device("dev/console", 5, 1, 0600);
  cpio.add_file("bin/busybox", read_file(busybox), 0755);
  for (std::string_view applet : kGuestInitApplets) {
    cpio.add_symlink("bin/" + std::string(applet), "busybox");
  }
  for (const std::string& lib : libs) {
    const std::string rel = lib.substr(1);  // the loader path is baked into busybox: keep it
    add_parents(cpio, dirs, rel);
    cpio.add_file(rel, read_file(lib), 0755);
  }
  std::string order;
  for (const fs::path& m : modules) {
    cpio.add_file("mod/" + m.filename().string(), read_file(m), 0644);
    order += m.filename().string() + "\n";
  }
  cpio.add_file("mod/order", order, 0644);
  cpio.add_file("init", guest_init_script(), 0755);
  return std::move(cpio).finish();
}

}  // namespace

fs::path default_cache_root() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg == '/') {
    return fs::path(xdg) / "patchbay" / "vm";
  }
  if (const char* home = std::getenv("HOME"); home && *home == '/') {
    return fs::path(home) / ".cache" / "patchbay" / "vm";
  }
  return fs::temp_directory_path() / ("patchbay-vm-cache-" + std::to_string(::getuid()));
}

GuestImage prepare_guest_image(const GuestKernel& kernel, const fs::path& cache_root,
                               bool verbose) {
  const std::string busybox = require_tool("busybox", "busybox");
  std::ostringstream key;
  key << "format " << kFormatVersion << "\n"
      << "image " << stat_key(kernel.image) << "\n"
      << "modules.dep " << stat_key(kernel.modules_dir / "modules.dep") << "\n"
      << "busybox " << stat_key(busybox) << "\n"
      << "init " << fnv1a_hex(guest_init_script()) << "\n";
  for (const std::string& m : kInitramfsModules) key << "module " << m << "\n";
  const fs::path entry = cache_root / (kernel.release + "-" + fnv1a_hex(key.str()));

  GuestImage image;
  image.busybox = busybox;
  image.initramfs = entry / "initramfs.cpio";
  std::error_code ec;
  if (fs::exists(image.initramfs, ec)) {
    image.kernel = fs::exists(entry / "vmlinux", ec) ? entry / "vmlinux" : kernel.image;
    return image;
  }

  if (verbose) std::cerr << "patchbay vm: building guest image in " << entry << "\n";
  const std::string xz = require_tool("xz", "xz-utils");
  const std::string modprobe = require_tool("modprobe", "kmod");
  const std::string ldd = require_tool("ldd", "libc-bin");
  const std::vector<fs::path> modules = module_files(modprobe, kernel);
  const std::vector<std::string> libs = shared_libraries(ldd, busybox);

  TempDir build = TempDir::create(cache_root, ".build-");
  bool have_vmlinux = is_elf(kernel.image);
  if (!have_vmlinux) {
    have_vmlinux = extract_vmlinux(kernel.image, build.path() / "vmlinux", xz);
    if (!have_vmlinux) {
      std::cerr << "patchbay vm: no XZ-compressed ELF kernel inside " << kernel.image
                << "; booting the bzImage itself (several seconds slower under TCG)\n";
    }
  }
  write_file(build.path() / "initramfs.cpio", build_initramfs(busybox, libs, modules));
  write_file(build.path() / "key.txt", key.str());  // what the hash covers, for debugging

  if (::rename(build.path().c_str(), entry.c_str()) == 0) {
    build.release();
  } else if (errno != EEXIST && errno != ENOTEMPTY) {
    throw VmError(ExitCode::kSetupFailed, "cannot move the guest image into " + entry.string() +
                                              ": " + std::strerror(errno));
  }  // else a concurrent run published the same entry first; ours is removed with `build`
  image.built = true;
  image.kernel = fs::exists(entry / "vmlinux", ec) ? entry / "vmlinux" : kernel.image;
  return image;
}

}  // namespace patchbay::cli
