#include <unistd.h>

#include <cstring>
#include <mutex>
#include <string>

#include "patchbay/bootstrap.hpp"
#include "patchbay/gtest.hpp"

namespace patchbay::testing {
namespace {

std::optional<std::string>& unavailable_reason() {
  static std::optional<std::string> reason = "patchbay::testing::init() was not called in main()";
  return reason;
}

bool only_lists_tests(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--gtest_list_tests") == 0) return true;
  }
  return false;
}

}  // namespace

void init(int argc, char** argv) {
  // CMake's test discovery runs the binary with --gtest_list_tests on hosts that may have no
  // user namespaces; listing must stay cheap and side-effect free.
  if (only_lists_tests(argc, argv)) return;
  const BootstrapReport& report = try_enter_user_namespace();
  if (report.entered) {
    unavailable_reason().reset();
  } else if (::geteuid() == 0) {
    // Root in the initial user namespace can still build labs; they never touch the host.
    unavailable_reason().reset();
  } else {
    unavailable_reason() = "cannot enter a user namespace: " + report.error;
  }
}

std::optional<std::string> lab_unavailable_reason() { return unavailable_reason(); }

std::string PresetName(const ::testing::TestParamInfo<RouterPreset>& info) {
  return std::string(to_string(info.param));
}

}  // namespace patchbay::testing
