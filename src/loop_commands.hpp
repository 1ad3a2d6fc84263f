// Work handed to an event loop's thread by other threads. The loop owns its kernel objects and
// its state; other threads never touch them, they post a function and wait for it instead.
//
//   LoopCommands commands("frame pump");         // eventfd; register commands.fd() for EPOLLIN
//   commands.call([&] { links_.erase(id); });    // any thread but the loop's: runs it there
//   ...
//   if (tag == &commands) commands.run_pending(); // in the loop, once its fd is readable
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "unique_fd.hpp"

namespace patchbay::internal {

class LoopCommands {
 public:
  // Throws Error(kKernel) naming `owner` if the eventfd cannot be made.
  explicit LoopCommands(std::string owner);

  // Readable while commands wait; the loop polls it with EPOLLIN.
  int fd() const { return wake_.get(); }

  // Queues `fn`, wakes the loop and waits until the loop ran it; exceptions propagate. Never
  // from the loop's own thread (it would wait for itself).
  void call(std::function<void()> fn);

  // On the loop's thread: runs every queued function, in order.
  void run_pending();

 private:
  std::string owner_;
  UniqueFd wake_;
  std::mutex mu_;
  std::vector<std::function<void()>> queued_;  // guarded by mu_
};

}  // namespace patchbay::internal
