#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "patchbay/error.hpp"
#include "patchbay/gtest.hpp"

namespace patchbay::testing {
namespace {

// summary.txt (for people) and summary.json (for tools): which assertions of the current test
// failed, where, and what they said, next to the artifacts that explain them.
void write_failure_summary(const std::filesystem::path& dir) {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  if (info == nullptr) return;
  const std::string name = std::string(info->test_suite_name()) + "." + info->name();
  const ::testing::TestResult* result = info->result();
  nlohmann::json failures = nlohmann::json::array();
  std::ofstream text(dir / "summary.txt");
  text << name << ": FAILED\n";
  for (int i = 0; i < result->total_part_count(); ++i) {
    const ::testing::TestPartResult& part = result->GetTestPartResult(i);
    if (!part.failed()) continue;
    const std::string file = part.file_name() ? part.file_name() : "";
    text << "\n" << (file.empty() ? "unknown file" : file);
    if (part.line_number() >= 0) text << ":" << part.line_number();
    text << (part.fatally_failed() ? " (fatal)" : "") << "\n" << part.message() << "\n";
    failures.push_back({{"file", file.empty() ? nlohmann::json(nullptr) : nlohmann::json(file)},
                        {"line", part.line_number() >= 0 ? nlohmann::json(part.line_number())
                                                         : nlohmann::json(nullptr)},
                        {"fatal", part.fatally_failed()},
                        {"message", part.message()}});
  }
  text << "\nartifacts: " << dir.string() << "\n";
  std::ofstream json(dir / "summary.json");
  json << nlohmann::json{{"test", name}, {"status", "failed"}, {"failures", failures}}.dump(2)
       << "\n";
}

}  // namespace

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
        write_failure_summary(dir);
        RecordProperty("patchbay_artifacts", dir.string());
      } catch (const std::exception& e) {
        std::cout << "[ patchbay ] writing artifacts to " << dir << " failed: " << e.what() << "\n";
      }
    }
  }
  lab_.reset();
}

}  // namespace patchbay::testing
