// The artifact listener: gives each test a directory under PATCHBAY_OUTDIR before it starts and
// removes it after a pass (unless PATCHBAY_KEEP is set); LabTest fills it on failure.
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <string>

#include "patchbay/gtest.hpp"

namespace patchbay::testing {
namespace {

std::mutex g_mu;
std::filesystem::path g_current;

std::string safe(std::string_view text) {
  std::string out;
  for (char c : text) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.';
    out.push_back(ok ? c : '_');
  }
  if (out.empty() || out == "." || out == "..") out = "_" + out;
  return out;
}

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

// PATCHBAY_OUTDIR as a normalised path ("a/b/" and "a/b" alike), where the clean-up of empty
// directories stops.
std::filesystem::path normalised_base() {
  const char* base = std::getenv("PATCHBAY_OUTDIR");
  if (base == nullptr || *base == '\0') return {};
  std::filesystem::path p = std::filesystem::path(base).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();
  return p;
}

class ArtifactListener : public ::testing::EmptyTestEventListener {
  void OnTestStart(const ::testing::TestInfo& info) override {
    const char* base = std::getenv("PATCHBAY_OUTDIR");
    std::lock_guard lock(g_mu);
    g_current.clear();
    if (base == nullptr || *base == '\0') return;
    // TEST_P names look like "Prefix/Suite" + "Test/Param": keep suite/test/param as levels.
    std::string name = info.name();
    std::string param;
    if (info.value_param() != nullptr) {
      auto slash = name.rfind('/');
      if (slash != std::string::npos) {
        param = name.substr(slash + 1);
        name = name.substr(0, slash);
      }
    }
    std::filesystem::path dir = normalised_base() / safe(info.test_suite_name()) / safe(name);
    if (!param.empty()) dir /= safe(param);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);  // a previous run's leftovers would mislead
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      std::cout << "[ patchbay ] cannot create artifact directory " << dir.string() << ": "
                << ec.message() << " (artifacts of this test are not kept)" << std::endl;
      return;
    }
    g_current = dir;
  }

  void OnTestEnd(const ::testing::TestInfo& info) override {
    std::filesystem::path dir;
    {
      std::lock_guard lock(g_mu);
      dir = std::exchange(g_current, {});
    }
    if (dir.empty()) return;
    if (info.result()->Failed()) {
      std::cout << "[ patchbay ] artifacts of " << info.test_suite_name() << "." << info.name()
                << ": " << dir.string() << std::endl;
    } else if (!env_flag("PATCHBAY_KEEP")) {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
      // Drop the suite (and test) levels too once nothing is left in them.
      const std::filesystem::path base = normalised_base();
      for (auto parent = dir.parent_path().lexically_normal();
           !base.empty() && parent != base && parent.string().size() > base.string().size();
           parent = parent.parent_path()) {
        if (!std::filesystem::remove(parent, ec)) break;  // not empty
      }
    }
  }
};

}  // namespace

std::filesystem::path current_test_outdir() {
  std::lock_guard lock(g_mu);
  return g_current;
}

void install_listener() {
  ::testing::UnitTest::GetInstance()->listeners().Append(new ArtifactListener);
}

}  // namespace patchbay::testing
