// WorkerThread: one thread that runs posted jobs in order, with a start hook.
//
// The lab's control thread (which does all kernel work) and each node's blocking worker are
// WorkerThreads. The start hook runs on the new thread before any job — e.g. setns() into the
// node's namespace — so jobs execute in the right namespace.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

namespace patchbay::internal {

class WorkerThread {
 public:
  // `name` becomes the thread name (cut to 15 bytes). If `on_start` throws, the worker keeps
  // running but every call() rethrows that exception.
  explicit WorkerThread(std::string name, std::function<void()> on_start = {});
  // Finishes queued jobs, then joins.
  ~WorkerThread() { stop(); }
  // Finishes queued jobs and joins now; later call()s throw Error(kRemoved). Idempotent; must
  // not be called from the worker itself.
  void stop();
  WorkerThread(const WorkerThread&) = delete;
  WorkerThread& operator=(const WorkerThread&) = delete;

  // Runs `job` on the worker and waits for it; exceptions propagate to the caller. Called from
  // the worker itself, runs `job` inline (no deadlock).
  void call(const std::function<void()>& job);

  // Typed convenience over call().
  template <class F>
  auto invoke(F&& f) -> std::invoke_result_t<F&> {
    using R = std::invoke_result_t<F&>;
    if constexpr (std::is_void_v<R>) {
      call([&f] { f(); });
    } else {
      std::optional<R> result;
      call([&f, &result] { result.emplace(f()); });
      return std::move(*result);
    }
  }

  bool on_worker_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  struct Job {
    const std::function<void()>* fn;
    std::exception_ptr* error;
    bool* done;
  };
  void loop(std::function<void()> on_start);

  std::string name_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::exception_ptr start_error_;
  std::thread thread_;
};

// Names the calling thread (cut to the kernel's 15-byte limit, keeping the end).
void set_current_thread_name(const std::string& name);

}  // namespace patchbay::internal
