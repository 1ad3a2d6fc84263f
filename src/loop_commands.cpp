#include "loop_commands.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <future>
#include <utility>

#include "patchbay/error.hpp"

namespace patchbay::internal {

LoopCommands::LoopCommands(std::string owner)
    : owner_(std::move(owner)), wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!wake_.valid()) {
    const int err = errno;
    throw Error(ErrorKind::kKernel, owner_, owner_ + ": cannot create an eventfd", err);
  }
}

void LoopCommands::call(std::function<void()> fn) {
  std::packaged_task<void()> task(std::move(fn));
  std::future<void> done = task.get_future();
  {
    std::lock_guard lock(mu_);
    queued_.emplace_back([&task] { task(); });
  }
  std::uint64_t one = 1;
  if (::write(wake_.get(), &one, sizeof one) < 0 && errno != EAGAIN) {
    const int err = errno;
    throw Error(ErrorKind::kKernel, owner_, owner_ + ": cannot wake the loop", err);
  }
  done.get();
}

void LoopCommands::run_pending() {
  std::uint64_t count;
  [[maybe_unused]] ssize_t r = ::read(wake_.get(), &count, sizeof count);
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(queued_);
  }
  for (std::function<void()>& fn : batch) fn();  // a packaged_task keeps its exception
}

}  // namespace patchbay::internal
