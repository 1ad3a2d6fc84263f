#include "guest_kernel.hpp"

#include <string.h>

#include <algorithm>
#include <fstream>
#include <system_error>
#include <vector>

#include "exit_codes.hpp"

namespace patchbay::cli {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kImagePrefix = "vmlinuz-";

std::string release_from_image_name(const fs::path& image) {
  const std::string name = image.filename().string();
  if (name.starts_with(kImagePrefix)) return name.substr(kImagePrefix.size());
  return {};
}

}  // namespace

bool modules_have_netem(const fs::path& modules_dir) {
  // modules.dep lists every module by path, whatever its compression, and is what modprobe reads.
  std::ifstream dep(modules_dir / "modules.dep");
  std::string line;
  while (std::getline(dep, line)) {
    const std::size_t colon = line.find(':');
    const std::string path = line.substr(0, colon);
    if (path.ends_with("/sch_netem.ko") || path.find("/sch_netem.ko.") != std::string::npos) {
      return true;
    }
  }
  return false;
}

GuestKernel locate_guest_kernel(const std::optional<fs::path>& image,
                                const std::optional<std::string>& release, const fs::path& boot_dir,
                                const fs::path& modules_root) {
  std::error_code ec;
  if (image) {
    if (!fs::is_regular_file(*image, ec)) {
      throw VmError(ExitCode::kKernelMissing,
                    "kernel image " + image->string() + " does not exist or is not a file");
    }
    std::string rel = release ? *release : release_from_image_name(*image);
    if (rel.empty()) {
      throw VmError(ExitCode::kKernelMissing,
                    "cannot tell the kernel release of " + image->string() +
                        " (expected a name vmlinuz-<release>); pass --kernel-release");
    }
    const fs::path mods = modules_root / rel;
    if (!fs::is_directory(mods, ec)) {
      throw VmError(ExitCode::kModulesMissing,
                    "kernel modules directory " + mods.string() + " for " + image->string() +
                        " is missing (install the matching linux-image package)");
    }
    if (!fs::is_regular_file(mods / "modules.dep", ec)) {
      throw VmError(ExitCode::kModulesMissing,
                    (mods / "modules.dep").string() + " is missing (run depmod " + rel + ")");
    }
    return {*image, rel, mods};
  }

  // Newest release first, by version order (6.1.0-10 after 6.1.0-9).
  std::vector<std::pair<std::string, fs::path>> candidates;
  for (const fs::directory_entry& e : fs::directory_iterator(boot_dir, ec)) {
    std::string rel = release_from_image_name(e.path());
    if (rel.empty() || !e.is_regular_file(ec)) continue;
    if (release && rel != *release) continue;
    candidates.emplace_back(std::move(rel), e.path());
  }
  std::sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
    return ::strverscmp(a.first.c_str(), b.first.c_str()) > 0;
  });
  std::string seen;
  for (const auto& [rel, path] : candidates) {
    const fs::path mods = modules_root / rel;
    if (modules_have_netem(mods)) return {path, rel, mods};
    seen += "\n  " + path.string() + ": " +
            (fs::is_directory(mods, ec) ? mods.string() + " has no sch_netem"
                                        : mods.string() + " is missing");
  }
  throw VmError(ExitCode::kKernelMissing,
                "no guest kernel: no " + (boot_dir / "vmlinuz-*").string() + " with sch_netem in " +
                    modules_root.string() + "/<release>" +
                    (seen.empty() ? std::string(" (none found)") : ":" + seen) +
                    "\ninstall one with: apt-get install linux-image-amd64 (or pass --kernel)");
}

}  // namespace patchbay::cli
