#include "worker_thread.hpp"

#include <pthread.h>

#include "patchbay/error.hpp"

namespace patchbay::internal {

void set_current_thread_name(const std::string& name) {
  // The kernel keeps 15 bytes; the end of a name ("...r4:sw") is the informative part.
  std::string cut = name.size() > 15 ? name.substr(name.size() - 15) : name;
  ::pthread_setname_np(::pthread_self(), cut.c_str());
}

WorkerThread::WorkerThread(std::string name, std::function<void()> on_start)
    : name_(std::move(name)) {
  thread_ = std::thread([this, start = std::move(on_start)]() mutable { loop(std::move(start)); });
}

void WorkerThread::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WorkerThread::call(const std::function<void()>& job) {
  if (on_worker_thread()) {
    job();
    return;
  }
  std::exception_ptr error;
  bool done = false;
  {
    std::unique_lock lock(mu_);
    if (stopping_)
      throw Error(ErrorKind::kRemoved, name_, "worker thread '" + name_ + "' has stopped");
    jobs_.push_back(Job{&job, &error, &done});
    cv_.notify_all();
    cv_.wait(lock, [&] { return done; });
  }
  if (error) std::rethrow_exception(error);
}

void WorkerThread::loop(std::function<void()> on_start) {
  set_current_thread_name(name_);
  std::exception_ptr start_error;
  if (on_start) {
    try {
      on_start();
    } catch (...) {
      start_error = std::current_exception();
    }
  }
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping and drained
    Job job = jobs_.front();
    jobs_.pop_front();
    lock.unlock();
    std::exception_ptr error = start_error;
    if (!error) {
      try {
        (*job.fn)();
      } catch (...) {
        error = std::current_exception();
      }
    }
    lock.lock();
    *job.error = error;
    *job.done = true;
    cv_.notify_all();
  }
}

}  // namespace patchbay::internal
