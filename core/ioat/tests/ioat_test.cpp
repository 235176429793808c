// Driver tests against the channel model (filled in below as the model lands).
#include <gtest/gtest.h>

#include <strata/ioat/ioat.h>

TEST(IoatDriver, HeaderCompiles) { SUCCEED(); }
