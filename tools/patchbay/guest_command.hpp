// The scripts the runner hands to the guest through the run directory: mounts.sh (sourced by
// /init to mount the read-write shares) and cmd.sh (stage two, run by the host's /bin/sh after
// switch_root: the command with its environment and working directory, its exit code into
// the run directory, then power-off).
//
// Example:
//   GuestCommand c{.argv = {"ctest", "-L", "vm"}, .cwd = "/src/build", .env =
//   filtered_environment(environ, {})}; write_file(run / "cmd.sh", command_script(c,
//   "/usr/bin/busybox"));
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace patchbay::cli {

struct GuestCommand {
  std::vector<std::string> argv;
  std::filesystem::path cwd;
  std::vector<std::string> env;  // KEY=VALUE, exactly what the command gets
};

// Variables that describe the host session rather than the command's needs; the guest has no
// such display, agent, bus, terminal session or service manager. Matched by name.
inline constexpr std::string_view kDroppedEnvironment[] = {"DISPLAY",
                                                           "WAYLAND_DISPLAY",
                                                           "XAUTHORITY",
                                                           "DBUS_SESSION_BUS_ADDRESS",
                                                           "XDG_RUNTIME_DIR",
                                                           "XDG_SESSION_ID",
                                                           "SSH_AUTH_SOCK",
                                                           "SSH_AGENT_PID",
                                                           "SSH_CONNECTION",
                                                           "SSH_CLIENT",
                                                           "SSH_TTY",
                                                           "GPG_AGENT_INFO",
                                                           "INVOCATION_ID",
                                                           "JOURNAL_STREAM",
                                                           "NOTIFY_SOCKET",
                                                           "LISTEN_PID",
                                                           "LISTEN_FDS",
                                                           "LISTEN_FDNAMES",
                                                           "WINDOWID",
                                                           "TMUX",
                                                           "TMUX_PANE",
                                                           "STY",
                                                           "OLDPWD",
                                                           "SHLVL",
                                                           "_",
                                                           "PWD"};

// The caller's environment minus kDroppedEnvironment, with PWD set to `cwd`, then `overrides`
// (KEY=VALUE) applied in order.
std::vector<std::string> filtered_environment(char** environ_, const std::filesystem::path& cwd,
                                              const std::vector<std::string>& overrides);

// A single-quoted shell word: safe for any byte string without NUL.
std::string shell_quote(std::string_view word);

struct GuestShare {
  std::string tag;             // the 9p mount tag
  std::filesystem::path path;  // host path = guest mount point
};

std::string mounts_script(const std::vector<GuestShare>& shares);

std::string command_script(const GuestCommand& command, const std::filesystem::path& busybox);

}  // namespace patchbay::cli
