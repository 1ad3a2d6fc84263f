// FrameBufferPool: size classes, reuse, and the cap on what it keeps.
#include "frame_buffer_pool.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace {

using patchbay::internal::FrameBuffer;
using patchbay::internal::FrameBufferPool;

TEST(FrameBufferPoolTest, SmallFramesGetSmallBuffersAndSuperpacketsLargeOnes) {
  FrameBufferPool pool;
  FrameBuffer ack = pool.take(76);
  EXPECT_EQ(ack.capacity, FrameBufferPool::kSmall);
  EXPECT_EQ(ack.len, 76u);
  FrameBuffer jumbo = pool.take(9014 + 10);
  EXPECT_EQ(jumbo.capacity, FrameBufferPool::kSmall);
  FrameBuffer gso = pool.take(65'000);
  EXPECT_EQ(gso.capacity, FrameBufferPool::kLarge);
  EXPECT_NE(gso.data(), nullptr);
}

TEST(FrameBufferPoolTest, GivenBuffersAreReusedWithinTheirClass) {
  FrameBufferPool pool;
  FrameBuffer a = pool.take(100);
  FrameBuffer b = pool.take(60'000);
  const unsigned char* small = a.data();
  const unsigned char* large = b.data();
  pool.give(std::move(a));
  pool.give(std::move(b));
  FrameBuffer c = pool.take(60'000);
  FrameBuffer d = pool.take(1500);
  EXPECT_EQ(c.data(), large);
  EXPECT_EQ(d.data(), small);
  EXPECT_EQ(c.len, 60'000u) << "len is the new frame's";
}

TEST(FrameBufferPoolTest, KeepsAtMostItsCapAfterABurst) {
  FrameBufferPool pool;
  std::vector<FrameBuffer> burst;
  for (std::size_t i = 0; i < FrameBufferPool::kKeepLarge + 5; ++i)
    burst.push_back(pool.take(70'000));
  std::vector<const unsigned char*> seen;
  for (FrameBuffer& b : burst) {
    seen.push_back(b.data());
    pool.give(std::move(b));
  }
  // The first kKeepLarge buffers come back; the rest went to the allocator.
  std::size_t reused = 0;
  std::vector<FrameBuffer> again;
  for (std::size_t i = 0; i < FrameBufferPool::kKeepLarge + 5; ++i) {
    again.push_back(pool.take(70'000));
    for (std::size_t k = 0; k < FrameBufferPool::kKeepLarge; ++k) {
      if (again.back().data() == seen[k]) {
        ++reused;
        break;
      }
    }
  }
  EXPECT_EQ(reused, FrameBufferPool::kKeepLarge);
  pool.give(FrameBuffer{});  // an empty buffer is ignored
}

}  // namespace
