// Per-node logs: one spdlog logger per node whose lines land in the node's files of the lab's
// output directory (formats.md §4):
//
//   <kind>.<name>.tracing.jsonl  {"fields":{"message":"..."},"level":"INFO","target":"...",
//                                 "timestamp":"2026-11-25T07:01:02.123456Z"}  (keys sorted)
//   <kind>.<name>.tracing.log    the same line as text: "<ts>  INFO <target>: <message>"
//
//   NodeLogFiles files = NodeLogFiles::create(outdir, "device", "laptop");
//   std::shared_ptr<spdlog::logger> user = files.logger("laptop");     // target "laptop"
//   std::shared_ptr<spdlog::logger> lib = files.logger("patchbay");    // the library's lines
//   user->info("handshake done");
//
// Files are created on the first line (a node that logs nothing has none) and flushed after
// every line, so a killed test still leaves what was logged. Every logger of a node shares one
// appending writer, whichever thread logs. Without an output directory the loggers discard
// everything at no cost beyond the level check.
#pragma once

#include <spdlog/common.h>
#include <spdlog/sinks/sink.h>
#include <filesystem>
#include <memory>
#include <string>

namespace spdlog {
class logger;
}

namespace patchbay::internal {

// PATCHBAY_LOG: trace, debug, info (default), warn, error, critical or off.
spdlog::level::level_enum node_log_level_from_env();

class NodeLogFiles {
 public:
  // `outdir` empty: loggers that write nothing.
  static NodeLogFiles create(const std::filesystem::path& outdir, const std::string& kind,
                             const std::string& name);
  // A logger with `target` as its name, writing to the node's files at the PATCHBAY_LOG level.
  std::shared_ptr<spdlog::logger> logger(const std::string& target) const;

 private:
  std::shared_ptr<spdlog::sinks::sink> sink_;  // null: discard
};

}  // namespace patchbay::internal
