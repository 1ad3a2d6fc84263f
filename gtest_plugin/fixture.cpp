#include <iostream>

#include "patchbay/error.hpp"
#include "patchbay/gtest.hpp"

namespace patchbay::testing {

void LabTest::SetUp() {
  if (auto reason = lab_unavailable_reason()) GTEST_SKIP() << *reason;
}

Lab& LabTest::lab() {
  if (!lab_) {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    LabOptions options = lab_options();
    if (options.label.empty() && info != nullptr) {
      options.label = std::string(info->test_suite_name()) + "." + info->name();
    }
    if (options.outdir.empty()) options.outdir = current_test_outdir();
    lab_.emplace(std::move(options));
  }
  return *lab_;
}

void LabTest::TearDown() {
  if (lab_ && HasFailure()) {
    std::filesystem::path dir = current_test_outdir();
    if (dir.empty()) {
      std::cout << "[ patchbay ] set PATCHBAY_OUTDIR=<dir> to keep this test's topology, kernel "
                   "state and command output\n";
    } else {
      try {
        lab_->write_artifacts(dir);
        RecordProperty("patchbay_artifacts", dir.string());
      } catch (const std::exception& e) {
        std::cout << "[ patchbay ] writing artifacts to " << dir << " failed: " << e.what() << "\n";
      }
    }
  }
  lab_.reset();
}

}  // namespace patchbay::testing
