// `patchbay vm run` as a black box: exit codes, the two output streams, live streaming, the
// working directory, the environment, the read-write share, the timeout, and that no QEMU
// outlives the runner. Each guest boot costs 4-6 s under TCG, so one boot serves all the
// command tests (VmRunCommandTest shares it; ctest runs each suite as one test).
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "cli_process.hpp"

namespace patchbay::vmtest {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

// The runner's documented exit codes (docs/vm.md).
constexpr int kKernelMissing = 120;
constexpr int kModulesMissing = 121;
constexpr int kQemuMissing = 122;
constexpr int kTimeout = 124;
constexpr int kVmFailed = 125;

class ScratchDir {
 public:
  ScratchDir() {
    std::string templ = (fs::temp_directory_path() / "patchbay-vm-test.XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A process that is gone, or a zombie waiting for a reaper that is not us, runs nothing.
bool process_alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const std::size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z';
}

std::string process_name(pid_t pid) {
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(comm, name);
  return name;
}

std::optional<pid_t> read_pid(const fs::path& file) {
  std::ifstream in(file);
  pid_t pid = 0;
  if (in >> pid && pid > 0) return pid;
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// One guest run, observed from every side.

// A value that breaks naive quoting: quotes, spaces, a newline, $ and a backslash.
constexpr const char* kTrickyValue = "it's \"quoted\" $HOME\\n and\na second line";

class VmRunCommandTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    scratch_ = new ScratchDir();
    const fs::path work = scratch_->path() / "work dir";  // a space, to test the quoting
    share_ = scratch_->path() / "out";
    fs::create_directories(work);
    fs::create_directories(share_);
    const std::string share = share_.string();
    // The guest waits for a file the host creates only after it has read "first" from the
    // runner's stdout: if output arrived only at the end, the guest would give up (exit 3).
    const std::string script =
        "echo first\n"
        "i=0; while [ ! -e \"$SHARE/go\" ]; do i=$((i+1)); [ $i -gt 600 ] && exit 3; sleep 0.1; "
        "done\n"
        "echo second\n"
        "echo to-stderr >&2\n"
        "pwd > \"$SHARE/cwd\"\n"
        "printf %s \"$PB_VM_TEST_VALUE\" > \"$SHARE/env\"\n"
        "printf %s \"${DISPLAY-unset}\" > \"$SHARE/display\"\n"
        "printf %s \"$PB_VM_FROM_OPTION\" > \"$SHARE/option\"\n"
        "echo written-in-the-guest > \"$SHARE/result.txt\"\n"
        "exit 7\n";
    CliRun run;
    run.args = {"vm", "run", "--timeout", "120", "--share", share, "--env", "PB_VM_FROM_OPTION=yes",
                "--", "sh",  "-c",        script};
    run.cwd = work.string();
    run.env = {"SHARE=" + share, std::string("PB_VM_TEST_VALUE=") + kTrickyValue, "DISPLAY=:99"};
    run.on_stdout = [](const std::string& out, pid_t) {
      if (!go_created_ && out.find("first\n") != std::string::npos) {
        std::ofstream(share_ / "go").put('1');
        go_created_ = true;
        go_time_ = Clock::now();
      }
    };
    result_ = new CliResult(run_cli(run));
    work_ = work;
  }
  static void TearDownTestSuite() {
    delete result_;
    delete scratch_;
  }
  void SetUp() override {
    ASSERT_FALSE(result_->killed_at_deadline) << "stderr:\n" << result_->err;
  }

  static inline ScratchDir* scratch_ = nullptr;
  static inline CliResult* result_ = nullptr;
  static inline fs::path share_, work_;
  static inline bool go_created_ = false;
  static inline Clock::time_point go_time_{};
};

TEST_F(VmRunCommandTest, ExitCodeOfTheCommandIsTheRunnersExitCode) {
  EXPECT_EQ(result_->exit_code, 7) << "stderr:\n" << result_->err;
}

TEST_F(VmRunCommandTest, StdoutOfTheCommandArrivesOnStdoutOnly) {
  EXPECT_EQ(result_->out, "first\nsecond\n");
  EXPECT_EQ(result_->err.find("first"), std::string::npos) << result_->err;
}

TEST_F(VmRunCommandTest, StderrOfTheCommandArrivesOnStderrOnly) {
  EXPECT_NE(result_->err.find("to-stderr\n"), std::string::npos) << result_->err;
  EXPECT_EQ(result_->out.find("to-stderr"), std::string::npos) << result_->out;
}

TEST_F(VmRunCommandTest, StdoutStreamsWhileTheCommandStillRuns) {
  // The host saw "first" and answered while the guest was waiting for the answer.
  ASSERT_TRUE(go_created_) << "stdout: " << result_->out;
  EXPECT_LT(go_time_, result_->ended);
  EXPECT_NE(result_->out.find("second"), std::string::npos) << "the guest never saw the answer";
}

TEST_F(VmRunCommandTest, CommandRunsInTheCallersWorkingDirectory) {
  EXPECT_EQ(slurp(share_ / "cwd"), work_.string() + "\n");
}

TEST_F(VmRunCommandTest, CallersEnvironmentArrivesExactly) {
  EXPECT_EQ(slurp(share_ / "env"), kTrickyValue);
  EXPECT_EQ(slurp(share_ / "option"), "yes");  // --env KEY=VALUE
}

TEST_F(VmRunCommandTest, HostSessionVariablesAreNotPassed) {
  EXPECT_EQ(slurp(share_ / "display"), "unset");
}

TEST_F(VmRunCommandTest, FilesWrittenToTheShareAppearOnTheHost) {
  EXPECT_EQ(slurp(share_ / "result.txt"), "written-in-the-guest\n");
}

// ---------------------------------------------------------------------------------------------
// Hung guests and a killed runner.

TEST(VmRunTimeoutTest, HungCommandIsKilledAtTheTimeoutWithExitCode124AndNoQemuLeft) {
  ScratchDir scratch;
  const fs::path pid_file = scratch.path() / "qemu.pid";
  constexpr int kTimeoutS = 10;
  CliRun run;
  run.args = {
      "vm", "run",   "--timeout", std::to_string(kTimeoutS), "--pid-file", pid_file.string(),
      "--", "sleep", "100"};
  const CliResult r = run_cli(run);
  EXPECT_EQ(r.exit_code, kTimeout) << r.err;
  EXPECT_NE(r.err.find("timed out after 10 s"), std::string::npos) << r.err;
  EXPECT_GE(r.seconds(), kTimeoutS);
  EXPECT_LT(r.seconds(), kTimeoutS + 20) << "the kill came late";
  const auto qemu = read_pid(pid_file);
  ASSERT_TRUE(qemu.has_value()) << "no QEMU PID written";
  // The runner reaped its QEMU before exiting; if the PID exists at all now, it was recycled.
  EXPECT_FALSE(process_alive(*qemu) && process_name(*qemu).starts_with("qemu-system"))
      << "QEMU " << *qemu << " survived the runner";
}

TEST(VmRunParentDeathTest, QemuDiesWhenTheRunnerIsKilled) {
  ScratchDir scratch;
  const fs::path pid_file = scratch.path() / "qemu.pid";
  std::optional<pid_t> qemu;
  CliRun run;
  run.args = {"vm",         "run",
              "--timeout",  "120",
              "--pid-file", pid_file.string(),
              "--",         "sh",
              "-c",         "echo ready; sleep 100"};
  run.deadline = seconds(60);
  // A SIGKILLed runner cannot delete its run directory: keep it in our scratch directory.
  run.env = {"TMPDIR=" + scratch.path().string()};
  // Killed once the guest runs the command: QEMU is fully up and busy, not just started.
  run.on_stdout = [&](const std::string& out, pid_t runner) {
    if (qemu || out.find("ready\n") == std::string::npos) return;
    qemu = read_pid(pid_file);
    ::kill(runner, SIGKILL);  // no chance to clean up: PR_SET_PDEATHSIG must
  };
  const CliResult r = run_cli(run);
  ASSERT_TRUE(qemu.has_value()) << "the guest never ran the command: " << r.err;
  EXPECT_FALSE(r.killed_at_deadline);
  const auto deadline = Clock::now() + seconds(10);
  while (process_alive(*qemu) && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(process_alive(*qemu)) << "QEMU " << *qemu << " outlived its SIGKILLed runner";
}

TEST(VmRunCrashTest, GuestPanicEndsTheRunAtOnceWithExitCode125) {
  // No init in the initramfs under that name: the kernel panics, and with panic=-1 QEMU exits
  // instead of waiting for the timeout.
  constexpr int kTimeoutS = 120;
  CliRun run;
  run.args = {
      "vm", "run", "--timeout", std::to_string(kTimeoutS), "--append", "rdinit=/no-such-init",
      "--", "true"};
  const CliResult r = run_cli(run);
  EXPECT_EQ(r.exit_code, kVmFailed) << r.err;
  EXPECT_NE(r.err.find("without an exit code"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Kernel panic"), std::string::npos) << "console tail missing:\n" << r.err;
  EXPECT_LT(r.seconds(), kTimeoutS / 2) << "the panic did not end QEMU";
}

// ---------------------------------------------------------------------------------------------
// Setup errors: no guest is booted.

TEST(VmRunErrorsTest, MissingKernelImageIsNamedWithItsExitCode) {
  CliRun run;
  run.args = {"vm", "run", "--kernel", "/nonexistent/vmlinuz-1.2.3", "--", "true"};
  const CliResult r = run_cli(run);
  EXPECT_EQ(r.exit_code, kKernelMissing) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/vmlinuz-1.2.3"), std::string::npos) << r.err;
}

TEST(VmRunErrorsTest, NoDefaultKernelNamesTheBootDirectoryAndThePackage) {
  ScratchDir empty_boot;
  CliRun run;
  run.args = {"vm", "run", "--boot-dir", empty_boot.path().string(), "--", "true"};
  const CliResult r = run_cli(run);
  EXPECT_EQ(r.exit_code, kKernelMissing) << r.err;
  EXPECT_NE(r.err.find(empty_boot.path().string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("linux-image-amd64"), std::string::npos) << r.err;
}

TEST(VmRunErrorsTest, MissingModulesDirectoryIsNamedWithItsExitCode) {
  ScratchDir scratch;
  const fs::path image = scratch.path() / "vmlinuz-9.9.9-nomodules";
  std::ofstream(image) << "not a kernel";
  CliRun run;
  run.args = {"vm", "run", "--kernel", image.string(), "--", "true"};
  const CliResult r = run_cli(run);
  EXPECT_EQ(r.exit_code, kModulesMissing) << r.err;
  EXPECT_NE(r.err.find("/lib/modules/9.9.9-nomodules"), std::string::npos) << r.err;
}

TEST(VmRunErrorsTest, MissingQemuNamesThePackageWithItsExitCode) {
  CliRun run;
  run.args = {"vm", "run", "--qemu", "/nonexistent/qemu-system-x86_64", "--", "true"};
  const CliResult r = run_cli(run);
  EXPECT_EQ(r.exit_code, kQemuMissing) << r.err;
  EXPECT_NE(r.err.find("qemu-system-x86"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace patchbay::vmtest
