// LoopCommands: functions posted from other threads run on the loop's thread, in order, and
// their exceptions reach the caller.
#include "loop_commands.hpp"

#include <poll.h>

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "patchbay/error.hpp"

namespace {

using patchbay::internal::LoopCommands;

// A minimal event loop: sleeps in poll() on the commands' fd, as FramePump sleeps in epoll.
class Loop {
 public:
  Loop() : thread_([this] { run(); }) {}
  ~Loop() {
    commands.call([this] { stopping_ = true; });
    thread_.join();
  }
  std::thread::id id() const { return thread_.get_id(); }

  LoopCommands commands{"test loop"};

 private:
  void run() {
    while (!stopping_) {
      pollfd p{commands.fd(), POLLIN, 0};
      if (::poll(&p, 1, -1) > 0) commands.run_pending();
    }
  }
  bool stopping_ = false;  // loop thread only
  std::thread thread_;
};

TEST(LoopCommandsTest, CallRunsOnTheLoopThreadAndWaitsForIt) {
  Loop loop;
  std::thread::id ran_on;
  int value = 0;
  loop.commands.call([&] {
    ran_on = std::this_thread::get_id();
    value = 42;
  });
  EXPECT_EQ(ran_on, loop.id());
  EXPECT_EQ(value, 42) << "call() returned before the function ran";
}

TEST(LoopCommandsTest, ExceptionsReachTheCaller) {
  Loop loop;
  EXPECT_THROW(loop.commands.call([] { throw std::invalid_argument("bad link"); }),
               std::invalid_argument);
  int after = 0;
  loop.commands.call([&] { after = 1; });
  EXPECT_EQ(after, 1) << "the loop keeps serving after a failed command";
}

TEST(LoopCommandsTest, CallsFromManyThreadsAllRunOnce) {
  Loop loop;
  std::vector<int> seen;  // touched on the loop thread only
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) loop.commands.call([&, t, i] { seen.push_back(t * 100 + i); });
    });
  }
  for (auto& c : callers) c.join();
  std::vector<int> all;
  loop.commands.call([&] { all = seen; });
  ASSERT_EQ(all.size(), 400u);
  // Each caller's own calls keep their order.
  std::vector<int> last(4, -1);
  for (int v : all) {
    EXPECT_GT(v % 100, last[v / 100]);
    last[v / 100] = v % 100;
  }
}

}  // namespace
