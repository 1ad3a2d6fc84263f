// NodeRuntime: the execution contexts of one node, each created lazily on first use:
//   * a blocking worker thread (run(), spawn_command()),
//   * an io_context thread (spawn() coroutines),
//   * user threads (spawn_thread()),
//   * the child processes the node started.
// Every thread enters the node's network namespace before running user code. Building a
// topology creates none of these.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "event_log.hpp"
#include "patchbay/process.hpp"
#include "unique_fd.hpp"
#include "worker_thread.hpp"

namespace patchbay::internal {

struct ProcessState;

struct NodeRuntimeConfig {
  std::string node_name;         // "laptop"
  std::string kind;              // "device", "router", "ix": used in thread and log file names
  int netns_fd = -1;             // borrowed; must outlive the runtime
  std::filesystem::path outdir;  // where command logs go
  // Returns the fd of the lab's PID namespace (creating it on first use) for commands.
  std::function<int()> pid_namespace_fd;
  // Receives command_spawned / command_exited events (see event_log.hpp); may be empty. Called
  // from whichever thread starts or reaps the command.
  std::function<void(std::string_view kind, const EventLog::Payload& payload)> on_event;
};

class NodeRuntime {
 public:
  explicit NodeRuntime(NodeRuntimeConfig config);
  ~NodeRuntime();  // shutdown()
  NodeRuntime(const NodeRuntime&) = delete;
  NodeRuntime& operator=(const NodeRuntime&) = delete;

  void run_blocking(const std::function<void()>& job);
  boost::asio::io_context& io_context();
  void start_user_thread(std::function<void(std::stop_token)> body);
  // Starts a command in the namespace (forked from the blocking worker, into the lab's PID
  // namespace), stdout/stderr to `<outdir>/<kind>.<node>.<label>[.<n>].{stdout,stderr}.log`.
  Process spawn(const Command& command);

  // Kills the node's children, stops the io_context, requests stop on and joins user threads,
  // stops the blocking worker. Idempotent; afterwards every call throws Error(kRemoved).
  void shutdown() {
    begin_shutdown();
    finish_shutdown();
  }
  // The two halves of shutdown(), so a lab can stop every node before joining any: a thread of
  // one node may be waiting for a process or coroutine of another.
  //   begin: refuse new work, kill processes, stop the io_context, request stop on user threads.
  //   finish: join the io thread and user threads, then the blocking worker.
  void begin_shutdown();
  void finish_shutdown();
  // Live threads (finished user threads are joined and not counted).
  std::size_t thread_count();
  // True if the calling thread is one of this runtime's threads.
  bool owns_current_thread() const;

 private:
  struct UserThread {
    std::jthread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  struct Retired {
    std::shared_ptr<WorkerThread> blocking;
    std::unique_ptr<boost::asio::io_context> io;
    std::thread io_thread;
    std::vector<UserThread> user_threads;
  };
  void join_finished_user_threads();  // caller holds mu_
  std::shared_ptr<WorkerThread> blocking_worker();
  void enter_namespace() const;

  NodeRuntimeConfig config_;
  mutable std::mutex mu_;
  bool shut_down_ = false;
  std::shared_ptr<WorkerThread> blocking_;
  std::unique_ptr<boost::asio::io_context> io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> io_guard_;
  std::thread io_thread_;
  std::vector<UserThread> user_threads_;
  Retired retired_;  // what begin_shutdown() took away, for finish_shutdown() to join
  std::vector<std::shared_ptr<ProcessState>> processes_;
  std::vector<std::string> used_labels_;
  bool pidns_entered_ = false;  // touched only on the blocking worker
};

}  // namespace patchbay::internal
