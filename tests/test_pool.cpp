// The KV-cache pool's bookkeeping (util/offset_allocator.h): first fit, alignment, coalescing, exhaustion.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "offset_allocator.h"

using kvw::OffsetAllocator;

TEST(OffsetAllocator, FirstFitAlignedAndExhausted) {
    OffsetAllocator a(10 * 1024);
    const auto x = a.allocate(1000), y = a.allocate(1);
    ASSERT_TRUE(x && y);
    EXPECT_EQ(*x, 0u);
    EXPECT_EQ(*y, 1024u);  // 1000 rounds up to 4 x 256
    EXPECT_EQ(a.used(), 1024u + 256u);
    EXPECT_FALSE(a.allocate(9 * 1024));  // 8960 bytes left
    EXPECT_TRUE(a.allocate(8960));
    EXPECT_FALSE(a.allocate(1));
}

TEST(OffsetAllocator, ReleaseCoalescesNeighbours) {
    OffsetAllocator a(4096);
    const size_t p0 = *a.allocate(1024), p1 = *a.allocate(1024), p2 = *a.allocate(1024);
    a.release(p1);
    EXPECT_EQ(a.largest_free(), 1024u);
    a.release(p0);  // merges with the hole after it
    EXPECT_EQ(a.largest_free(), 2048u);
    a.release(p2);  // merges with both sides and the tail
    EXPECT_EQ(a.largest_free(), 4096u);
    EXPECT_EQ(a.used(), 0u);
    EXPECT_EQ(*a.allocate(4096), 0u);
    EXPECT_THROW(a.release(12345), kvw::Error);
}

TEST(OffsetAllocator, RandomChurnKeepsInvariants) {
    // Slots of a few sizes (cache formats) come and go, as when a user toggles the format mid-play.
    OffsetAllocator a(1 << 20);
    std::mt19937 rng(3);
    std::vector<std::pair<size_t, size_t>> live;  // offset, aligned size
    size_t used = 0;
    for (int i = 0; i < 4000; ++i) {
        if (live.empty() || rng() % 3) {
            const size_t bytes = (1 + rng() % 4) * 9000;
            if (const auto off = a.allocate(bytes)) {
                for (const auto& [o, s] : live)
                    EXPECT_TRUE(*off + OffsetAllocator::aligned(bytes) <= o || o + s <= *off) << "overlap";
                live.emplace_back(*off, OffsetAllocator::aligned(bytes));
                used += OffsetAllocator::aligned(bytes);
            }
        } else {
            const size_t k = rng() % live.size();
            a.release(live[k].first);
            used -= live[k].second;
            live.erase(live.begin() + static_cast<long>(k));
        }
        ASSERT_EQ(a.used(), used);
        ASSERT_EQ(a.live_ranges(), live.size());
    }
    for (const auto& [o, s] : live) a.release(o);
    EXPECT_EQ(a.largest_free(), a.capacity());  // everything merged back into one range
}
