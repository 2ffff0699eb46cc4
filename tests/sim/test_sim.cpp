#include <gtest/gtest.h>

#include "kvworld/sim.h"

TEST(Sim, Placeholder) { EXPECT_TRUE(true); }
