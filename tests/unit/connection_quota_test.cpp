#include "proxy/connection_quota.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace proxy {
namespace {

TEST(ConnectionQuota, RefusesBeyondTheLimitAcrossWorkers) {
  ConnectionQuota quota(3, 2);
  EXPECT_TRUE(quota.try_acquire(0));
  EXPECT_TRUE(quota.try_acquire(1));
  EXPECT_TRUE(quota.try_acquire(1));
  EXPECT_FALSE(quota.try_acquire(0));
  EXPECT_FALSE(quota.try_acquire(1));
  EXPECT_EQ(quota.open(), 3U);
  EXPECT_EQ(quota.held_by(0), 1U);
  EXPECT_EQ(quota.held_by(1), 2U);
}

TEST(ConnectionQuota, ReleaseMakesRoomAgain) {
  ConnectionQuota quota(1, 1);
  ASSERT_TRUE(quota.try_acquire(0));
  EXPECT_FALSE(quota.try_acquire(0));
  quota.release(0);
  EXPECT_EQ(quota.open(), 0U);
  EXPECT_TRUE(quota.try_acquire(0));
  EXPECT_EQ(quota.peak(), 1U);
}

TEST(ConnectionQuota, NeverExceedsTheLimitUnderConcurrentUse) {
  constexpr unsigned kLimit = 10;
  constexpr std::size_t kWorkers = 8;
  ConnectionQuota quota(kLimit, kWorkers);
  std::atomic<bool> over{false};
  std::vector<std::thread> threads;
  for (std::size_t worker = 0; worker < kWorkers; ++worker) {
    threads.emplace_back([&, worker] {
      for (int round = 0; round < 20000; ++round) {
        if (quota.try_acquire(worker)) {
          if (quota.open() > kLimit) over = true;
          quota.release(worker);
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_FALSE(over.load());
  EXPECT_LE(quota.peak(), kLimit);
  EXPECT_EQ(quota.open(), 0U);
}

TEST(ConnectionQuota, ReleaseWakesOnlyStarvingWorkers) {
  ConnectionQuota quota(1, 3);
  int woken[3] = {0, 0, 0};
  for (std::size_t worker = 0; worker < 3; ++worker) {
    quota.set_wakeup(worker, [&woken, worker] { ++woken[worker]; });
  }
  ASSERT_TRUE(quota.try_acquire(0));
  quota.release(0);
  EXPECT_EQ(woken[1] + woken[2], 0) << "nobody starves: no wake-up";

  ASSERT_TRUE(quota.try_acquire(0));
  quota.set_starving(2, true);
  quota.release(0);
  EXPECT_EQ(woken[1], 0);
  EXPECT_EQ(woken[2], 1);
}

TEST(ConnectionQuota, WorkerHoldingTwoMoreYieldsToAStarvingOne) {
  ConnectionQuota quota(4, 2);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(quota.try_acquire(0));
  EXPECT_FALSE(quota.should_yield(0, quota.held_by(0)))
      << "nobody else waits: keep the connections";
  quota.set_starving(1, true);
  EXPECT_TRUE(quota.should_yield(0, quota.held_by(0)));
  quota.release(0);
  ASSERT_TRUE(quota.try_acquire(1));
  EXPECT_TRUE(quota.should_yield(0, quota.held_by(0))) << "3 against 1";
  quota.release(0);
  ASSERT_TRUE(quota.try_acquire(1));
  EXPECT_FALSE(quota.should_yield(0, quota.held_by(0))) << "2 against 2: balanced, no more moves";
  quota.set_starving(1, false);
  EXPECT_FALSE(quota.others_starving(0));
}

TEST(ConnectionQuota, UnevenLimitSettlesWithinOneAndStopsMoving) {
  ConnectionQuota quota(10, 4);
  const unsigned split[4] = {3, 3, 2, 2};
  for (std::size_t worker = 0; worker < 4; ++worker) {
    for (unsigned i = 0; i < split[worker]; ++i) ASSERT_TRUE(quota.try_acquire(worker));
    quota.set_starving(worker, true);
  }
  for (std::size_t worker = 0; worker < 4; ++worker)
    EXPECT_FALSE(quota.should_yield(worker, quota.held_by(worker)));
}

TEST(ConnectionQuota, OwnStarvationDoesNotCountAsOthers) {
  ConnectionQuota quota(2, 2);
  quota.set_starving(0, true);
  EXPECT_FALSE(quota.others_starving(0));
  EXPECT_TRUE(quota.others_starving(1));
  quota.set_starving(0, true);  // idempotent
  quota.set_starving(0, false);
  EXPECT_FALSE(quota.others_starving(1));
}

TEST(ConnectionQuota, FewerSlotsThanWorkersRotateOnEveryRelease) {
  ConnectionQuota quota(1, 4);
  ASSERT_TRUE(quota.try_acquire(0));
  quota.set_starving(3, true);
  EXPECT_TRUE(quota.should_yield(0, quota.held_by(0)));
}

TEST(ConnectionQuota, EnoughSlotsDoNotRotateTheLastConnection) {
  ConnectionQuota quota(4, 2);
  ASSERT_TRUE(quota.try_acquire(0));
  quota.set_starving(1, true);
  EXPECT_FALSE(quota.should_yield(0, quota.held_by(0)))
      << "worker 1 can open its own: slots are free";
}

TEST(ConnectionQuota, ConnectionsBeingClosedDoNotCountTowardsYielding) {
  ConnectionQuota quota(2, 2);
  ASSERT_TRUE(quota.try_acquire(0));
  ASSERT_TRUE(quota.try_acquire(0));
  quota.set_starving(1, true);
  EXPECT_TRUE(quota.should_yield(0, 2));
  EXPECT_FALSE(quota.should_yield(0, 1)) << "one is already closing for worker 1";
}

TEST(ConnectionQuota, StarvingWorkerWakesOnlyWorkersThatHoldConnections) {
  ConnectionQuota quota(2, 3);
  int woken[3] = {0, 0, 0};
  for (std::size_t worker = 0; worker < 3; ++worker) {
    quota.set_wakeup(worker, [&woken, worker] { ++woken[worker]; });
  }
  ASSERT_TRUE(quota.try_acquire(1));
  quota.wake_holders(0);
  EXPECT_EQ(woken[0], 0);
  EXPECT_EQ(woken[1], 1);
  EXPECT_EQ(woken[2], 0);
}

}  // namespace
}  // namespace proxy
