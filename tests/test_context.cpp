// Context policy: the window, recall of the first chunk and by field-of-view overlap, and budget eviction.
#include <gtest/gtest.h>

#include "context_policy.h"

using namespace kvw;

namespace {
std::vector<StoredChunk> chunks(int n, uint64_t bytes = 100) {
    std::vector<StoredChunk> v;
    for (int i = 0; i < n; ++i)
        v.push_back(StoredChunk{i, CameraPose{0, 2, 2.f * i, 0, 0}, bytes});  // walking north
    return v;
}
MotionParams motion;
}  // namespace

TEST(Context, FovOverlapIsOneForSamePoseAndZeroBehind) {
    const CameraPose a{0, 2, 0, 0, 0};
    EXPECT_FLOAT_EQ(fov_overlap(a, a, motion), 1.f);
    CameraPose behind = a;
    behind.yaw_deg = 180;
    EXPECT_FLOAT_EQ(fov_overlap(a, behind, motion), 0.f);
    CameraPose slightly = a;
    slightly.yaw_deg = 20;
    const float o = fov_overlap(a, slightly, motion);
    EXPECT_GT(o, 0.3f);
    EXPECT_LT(o, 1.f);
    CameraPose far_away = a;
    far_away.x = 500;
    EXPECT_FLOAT_EQ(fov_overlap(a, far_away, motion), 0.f);
}

TEST(Context, WindowThenRecallFirstThenBestOverlap) {
    ContextSettings s;
    s.window = 3;
    s.recall = 2;
    auto stored = chunks(10);
    // Chunk 4 looked the way we look now (it is turned toward us from ahead); others face away.
    for (auto& c : stored) c.pose.yaw_deg = 180;
    stored[4].pose = CameraPose{0, 2, 0, 0, 0};
    const ContextChoice c = choose_context(10, stored, CameraPose{0, 2, 1, 0, 0}, s, motion);
    EXPECT_EQ(c.window, (std::vector<int>{7, 8, 9}));
    EXPECT_EQ(c.recalled, (std::vector<int>{0, 4}));
    EXPECT_EQ(c.context,
              (std::vector<int>{0, 4, 7, 8, 9}));  // recalled first (oldest first), then the window

    // Early on, chunk 0 is simply in the window and nothing is recalled.
    const ContextChoice early = choose_context(2, chunks(2), CameraPose{}, s, motion);
    EXPECT_EQ(early.context, (std::vector<int>{0, 1}));
    EXPECT_TRUE(early.recalled.empty());

    // recall_first off: chunk 0 competes on overlap like any other.
    s.recall_first = false;
    s.recall = 1;
    const ContextChoice nf = choose_context(10, stored, CameraPose{0, 2, 1, 0, 0}, s, motion);
    EXPECT_EQ(nf.recalled, (std::vector<int>{4}));
    // Ties go to the older chunk.
    std::vector<StoredChunk> same = chunks(8);
    for (auto& ch : same) ch.pose = CameraPose{0, 2, 0, 0, 0};
    EXPECT_EQ(choose_context(8, same, CameraPose{0, 2, 0, 0, 0}, s, motion).recalled, (std::vector<int>{0}));
}

TEST(Context, BudgetEvictsOldestOutsideContextFirst) {
    ContextSettings s;
    s.window = 2;
    s.recall = 1;
    s.budget_bytes = 650;  // five stored chunks of 100 plus the new one fit, eight do not
    auto stored = chunks(8);
    const EvictionResult r = evict_for_budget(8, stored, CameraPose{0, 2, 16, 0, 0}, 100, s, motion);
    // Context of chunk 8: chunk 0 (recalled first) and the window 6, 7. Evicted: 1, 2, 3 (oldest outside).
    EXPECT_EQ(r.evicted, (std::vector<int>{1, 2, 3}));
    EXPECT_FALSE(r.window_truncated);
    EXPECT_EQ(stored.size(), 5u);
    EXPECT_EQ(r.choice.context, (std::vector<int>{0, 6, 7}));

    // A budget for two chunks only: the window is cut (oldest window chunk first), chunk 0 survives.
    s.budget_bytes = 250;
    auto small = chunks(5);
    const EvictionResult t = evict_for_budget(5, small, CameraPose{}, 100, s, motion);
    EXPECT_TRUE(t.window_truncated);
    ASSERT_EQ(small.size(), 1u);
    EXPECT_EQ(small[0].index, 0);

    // A budget below one chunk is an error, never a crash.
    s.budget_bytes = 50;
    auto one = chunks(1);
    EXPECT_THROW(evict_for_budget(1, one, CameraPose{}, 100, s, motion), Error);
    // Unlimited: nothing evicted.
    s.budget_bytes = 0;
    auto many = chunks(50);
    EXPECT_TRUE(evict_for_budget(50, many, CameraPose{}, 100, s, motion).evicted.empty());
}
