// The artifact listener: a failing test leaves its topology, kernel state and command output
// under PATCHBAY_OUTDIR/<suite>/<test>[/<param>] and records the path as a test property; a
// passing test leaves nothing unless PATCHBAY_KEEP asks for it.
#include <sys/wait.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "child_process.hpp"
#include "patchbay/gtest.hpp"

namespace {

namespace fs = std::filesystem;
using patchbay::RouterPreset;
using ::testing::HasSubstr;

bool victim_mode() { return std::getenv("PATCHBAY_LISTENER_VICTIM") != nullptr; }

// Victims: they only run when ListenerTest starts this binary with PATCHBAY_LISTENER_VICTIM.
class ListenerVictim : public patchbay::testing::LabTest {
 protected:
  void BuildAndTalk() {
    auto dc = lab().add_router("dc").preset(RouterPreset::Public).build();
    auto home = lab().add_router("home").preset(RouterPreset::Home).build();
    (void)lab().add_device("server").iface("eth0", dc).build();
    auto laptop = lab().add_device("laptop").iface("eth0", home).build();
    (void)laptop.run_command({"echo", "victim-output"});
  }
};

TEST_F(ListenerVictim, Fails) {
  if (!victim_mode()) GTEST_SKIP() << "helper for ListenerTest";
  BuildAndTalk();
  ADD_FAILURE() << "deliberate failure";
}

TEST_F(ListenerVictim, Passes) {
  if (!victim_mode()) GTEST_SKIP() << "helper for ListenerTest";
  BuildAndTalk();
}

class ListenerVictimP : public patchbay::testing::LabTest,
                        public ::testing::WithParamInterface<RouterPreset> {};

TEST_P(ListenerVictimP, Fails) {
  if (!victim_mode()) GTEST_SKIP() << "helper for ListenerTest";
  (void)lab().add_router("edge").preset(GetParam()).build();
  ADD_FAILURE() << "deliberate failure";
}

INSTANTIATE_TEST_SUITE_P(Presets, ListenerVictimP, ::testing::Values(RouterPreset::Home),
                         patchbay::testing::PresetName);

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

class ListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (victim_mode()) GTEST_SKIP() << "running as a victim";
    if (auto reason = patchbay::testing::lab_unavailable_reason()) GTEST_SKIP() << *reason;
    std::string tmpl = (fs::temp_directory_path() / "patchbay-listener-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Runs the victims in a child process; returns its exit status.
  int run_victims(const fs::path& outdir, bool keep) {
    std::vector<std::string> env{"PATCHBAY_LISTENER_VICTIM=1",
                                 "PATCHBAY_OUTDIR=" + outdir.string()};
    if (keep) env.push_back("PATCHBAY_KEEP=1");
    // The victims' deliberate failures stay out of this test's output.
    return pbtest::run_child(
               {"/proc/self/exe", "--gtest_filter=ListenerVictim.*:Presets/ListenerVictimP.*",
                "--gtest_output=xml:" + (dir_ / "report.xml").string(), "--gtest_brief=1"},
               env)
        .status;
  }

  fs::path dir_;
};

TEST_F(ListenerTest, FailedTestKeepsArtifactsAndPassedTestLeavesNothing) {
  fs::path out = dir_ / "out";
  int status = run_victims(out, /*keep=*/false);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0) << "the victims include failing tests";

  fs::path failed = out / "ListenerVictim" / "Fails";
  ASSERT_TRUE(fs::is_directory(failed));
  auto state = nlohmann::json::parse(read_file(failed / "state.json"));
  EXPECT_EQ(state["label"], "ListenerVictim.Fails");
  ASSERT_EQ(state["routers"].size(), 2u);
  EXPECT_EQ(state["routers"][1]["name"], "home");
  EXPECT_EQ(state["routers"][1]["nat"], "home");
  EXPECT_EQ(state["devices"][1]["interfaces"][0]["ip"], "10.0.1.2/24");

  // The summary names the failed assertion: where, and what it said.
  const std::string summary = read_file(failed / "summary.txt");
  EXPECT_THAT(summary, HasSubstr("ListenerVictim.Fails: FAILED"));
  EXPECT_THAT(summary, HasSubstr("listener_test.cpp:"));
  EXPECT_THAT(summary, HasSubstr("deliberate failure"));
  auto summary_json = nlohmann::json::parse(read_file(failed / "summary.json"));
  EXPECT_EQ(summary_json["test"], "ListenerVictim.Fails");
  ASSERT_EQ(summary_json["failures"].size(), 1u);
  EXPECT_THAT(summary_json["failures"][0]["file"].get<std::string>(),
              HasSubstr("listener_test.cpp"));
  EXPECT_GT(summary_json["failures"][0]["line"].get<int>(), 0);
  EXPECT_THAT(summary_json["failures"][0]["message"].get<std::string>(),
              HasSubstr("deliberate failure"));

  std::string events = read_file(failed / "events.jsonl");
  EXPECT_THAT(events, HasSubstr("\"kind\":\"router_added\""));
  EXPECT_THAT(events, HasSubstr("\"kind\":\"command_spawned\""));
  EXPECT_THAT(events, HasSubstr("\"kind\":\"lab_stopped\""));

  std::string home = read_file(failed / "router.home.kernel.txt");
  EXPECT_THAT(home, HasSubstr("br-lan"));
  EXPECT_THAT(home, HasSubstr("10.0.1.1"));
  EXPECT_THAT(home, HasSubstr("pb_nat"));
  EXPECT_THAT(home, HasSubstr("masq"));
  EXPECT_THAT(read_file(failed / "device.laptop.kernel.txt"), HasSubstr("10.0.1.2"));
  EXPECT_THAT(read_file(failed / "ix.ix.kernel.txt"), HasSubstr("198.18.0.1"));
  EXPECT_EQ(read_file(failed / "device.laptop.echo.stdout.log"), "victim-output\n");

  EXPECT_FALSE(fs::exists(out / "ListenerVictim" / "Passes"));
  EXPECT_TRUE(fs::exists(out / "ListenerVictim")) << "still holds the failed test";
  EXPECT_TRUE(fs::is_directory(out / "Presets_ListenerVictimP" / "Fails" / "Home"));

  std::string xml = read_file(dir_ / "report.xml");
  EXPECT_THAT(xml,
              HasSubstr("<property name=\"patchbay_artifacts\" value=\"" + failed.string() + "\""));
}

TEST_F(ListenerTest, KeepFlagKeepsPassedTestDirectories) {
  fs::path out = dir_ / "out";
  run_victims(out, /*keep=*/true);
  fs::path passed = out / "ListenerVictim" / "Passes";
  ASSERT_TRUE(fs::is_directory(passed));
  EXPECT_EQ(read_file(passed / "device.laptop.echo.stdout.log"), "victim-output\n");
  // The live outputs stay (docs/artifacts.md); the kernel dumps are only taken for failures.
  EXPECT_TRUE(fs::exists(passed / "events.jsonl"));
  EXPECT_TRUE(fs::exists(passed / "state.json"));
  EXPECT_FALSE(fs::exists(passed / "device.laptop.kernel.txt")) << "kernel state is for failures";
}

}  // namespace
