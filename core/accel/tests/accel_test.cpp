// The accel framework on the software module: every op's results, iovec forms, crc32c against
// the RFC 3720 check values, argument refusals, the task pool's busy refusal, batching,
// asynchronous completion (never inside submit), stats and the lifecycle.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <vector>

#include <strata/base/crc.h>

#include "accel_fixture.h"

namespace strata::accel::testing {
namespace {

class AccelTest : public AccelFixture {};

TEST_F(AccelTest, OpcodeNamesAreSpdks) {
    const char* names[] = {"copy", "fill", "compare", "crc32c", "copy_crc32c", "xor"};
    for (size_t i = 0; i < kOpcodeCount; ++i) {
        EXPECT_EQ(opcode_name(static_cast<Opcode>(i)), names[i]);
        EXPECT_EQ(opcode_from_name(names[i]), static_cast<Opcode>(i));
    }
    EXPECT_FALSE(opcode_from_name("dualcast").has_value());
    EXPECT_FALSE(opcode_from_name("").has_value());
}

TEST_F(AccelTest, CopyFillCompareAcrossLengthsAndAlignments) {
    start(false);
    auto* src = alloc(70'000);
    auto* dst = alloc(70'000);
    for (size_t len : {size_t{0}, size_t{1}, size_t{7}, size_t{64}, size_t{4095}, size_t{4097},
                       size_t{65'536}}) {
        for (size_t off : {size_t{0}, size_t{1}, size_t{63}}) {
            SCOPED_TRACE(::testing::Message() << "len " << len << " off " << off);
            pattern(src, 70'000, static_cast<uint32_t>(len + off));
            std::memset(dst, 0xEE, 70'000);
            Op op;
            op.opcode = Opcode::copy;
            op.dst = dst + off;
            op.src = src + off;
            op.len = len;
            ASSERT_TRUE(run(op).ok());
            EXPECT_EQ(std::memcmp(dst + off, src + off, len), 0);
            EXPECT_EQ(dst[off + len], 0xEE);  // nothing past the end

            op.opcode = Opcode::compare;
            uint64_t where = 0;
            op.miscompare_offset = &where;
            EXPECT_TRUE(run(op).ok());
            if (len > 0) {
                dst[off + len - 1] ^= 1;
                Status s = run(op);
                EXPECT_EQ(s, Errc::corrupt);
                EXPECT_STREQ(s.context(), "miscompare");
                EXPECT_EQ(where, len - 1);
            }

            op = Op{};
            op.opcode = Opcode::fill;
            op.dst = dst + off;
            op.len = len;
            op.fill_byte = 0x5A;
            ASSERT_TRUE(run(op).ok());
            for (size_t i = 0; i < len; ++i) ASSERT_EQ(dst[off + i], 0x5A) << i;
            EXPECT_EQ(dst[off + len], 0xEE);
        }
    }
}

TEST_F(AccelTest, Crc32cMatchesRfc3720CheckValues) {
    start(false);
    auto* buf = alloc(64);
    struct Case {
        void (*fill)(uint8_t*);
        uint32_t crc;
    };
    const Case cases[] = {
        {[](uint8_t* b) { std::memset(b, 0, 32); }, 0x8A9136AAu},
        {[](uint8_t* b) { std::memset(b, 0xFF, 32); }, 0x62A8AB43u},
        {[](uint8_t* b) {
             for (int i = 0; i < 32; ++i) b[i] = static_cast<uint8_t>(i);
         },
         0x46DD794Eu},
        {[](uint8_t* b) {
             for (int i = 0; i < 32; ++i) b[i] = static_cast<uint8_t>(31 - i);
         },
         0x113FDB5Cu},
    };
    for (const auto& c : cases) {
        c.fill(buf);
        uint32_t crc = 0;
        Op op;
        op.opcode = Opcode::crc32c;
        op.src = buf;
        op.len = 32;
        op.crc_dst = &crc;
        ASSERT_TRUE(run(op).ok());
        EXPECT_EQ(crc, c.crc);
    }
    // "123456789" and seeding with a previous result continues the CRC (SPDK's seed semantics).
    std::memcpy(buf, "123456789", 9);
    uint32_t a = 0, b = 0;
    Op op;
    op.opcode = Opcode::crc32c;
    op.src = buf;
    op.len = 4;
    op.crc_dst = &a;
    ASSERT_TRUE(run(op).ok());
    op.src = buf + 4;
    op.len = 5;
    op.seed = a;
    op.crc_dst = &b;
    ASSERT_TRUE(run(op).ok());
    EXPECT_EQ(b, 0xE3069283u);
}

TEST_F(AccelTest, IovecCrcCopyAndCopyCrcAgreeWithFlat) {
    start(false);
    auto* src = alloc(10'000);
    auto* dst = alloc(10'000);
    pattern(src, 10'000, 9);
    const uint32_t want = crc32c(7, src, 10'000);
    // Uneven pieces on both sides, including an empty one.
    struct iovec siov[4] = {{src, 1}, {src + 1, 0}, {src + 1, 4999}, {src + 5000, 5000}};
    struct iovec diov[3] = {{dst, 3000}, {dst + 3000, 7000 - 1}, {dst + 9999, 1}};
    uint32_t crc = 0;
    Op op;
    op.opcode = Opcode::crc32c;
    op.src_iov = siov;
    op.src_iovcnt = 4;
    op.seed = 7;
    op.crc_dst = &crc;
    ASSERT_TRUE(run(op).ok());
    EXPECT_EQ(crc, want);

    op = Op{};
    op.opcode = Opcode::copy;
    op.src_iov = siov;
    op.src_iovcnt = 4;
    op.dst_iov = diov;
    op.dst_iovcnt = 3;
    ASSERT_TRUE(run(op).ok());
    EXPECT_EQ(std::memcmp(dst, src, 10'000), 0);

    std::memset(dst, 0, 10'000);
    crc = 0;
    op.opcode = Opcode::copy_crc32c;
    op.crc_dst = &crc;
    op.seed = 7;
    ASSERT_TRUE(run(op).ok());
    EXPECT_EQ(std::memcmp(dst, src, 10'000), 0);
    EXPECT_EQ(crc, want);

    // The convenience form: flat destination, iovec source.
    std::memset(dst, 0, 10'000);
    crc = 0;
    Done d;
    on(threads[0],
       [&] { ASSERT_TRUE(ch[0]->submit_copy_crc32cv(dst, siov, 4, &crc, 7, &Done::fn, &d).ok()); });
    ASSERT_TRUE(poll_until([&] { return d.calls == 1; }));
    EXPECT_TRUE(d.status.ok());
    EXPECT_EQ(crc, want);
    EXPECT_EQ(std::memcmp(dst, src, 10'000), 0);
}

TEST_F(AccelTest, XorOfOneToManySourcesAlignedAndNot) {
    start(false);
    constexpr size_t kLen = 4096 + 100;
    std::vector<uint8_t*> srcs;
    for (uint32_t i = 0; i < kMaxXorSources; ++i) {
        srcs.push_back(alloc(kLen + 64));
        pattern(srcs.back(), kLen + 64, 100 + i);
    }
    auto* dst = alloc(kLen + 64);
    for (uint32_t n : {1u, 2u, 3u, 8u, kMaxXorSources}) {
        for (size_t off : {size_t{0}, size_t{5}}) {
            for (size_t len : {size_t{1}, size_t{63}, size_t{64}, kLen}) {
                SCOPED_TRACE(::testing::Message()
                             << n << " sources, off " << off << " len " << len);
                std::vector<const void*> p;
                for (uint32_t i = 0; i < n; ++i) p.push_back(srcs[i] + off);
                Op op;
                op.opcode = Opcode::xor_;
                op.dst = dst + off;
                op.xor_srcs = p.data();
                op.xor_nsrcs = n;
                op.len = len;
                ASSERT_TRUE(run(op).ok());
                for (size_t b = 0; b < len; ++b) {
                    uint8_t x = 0;
                    for (uint32_t i = 0; i < n; ++i) x ^= srcs[i][off + b];
                    ASSERT_EQ(dst[off + b], x) << b;
                }
            }
        }
    }
}

TEST_F(AccelTest, BadArgumentsAreRefusedWithoutCallback) {
    start(false);
    auto* buf = alloc(4096);
    uint32_t crc = 0;
    const void* srcs[2] = {buf, nullptr};
    struct iovec one = {buf, 10};
    struct iovec two = {buf, 20};
    struct iovec null_base = {nullptr, 8};
    std::vector<Op> bad;
    auto add = [&](auto f) {
        Op op;
        f(op);
        bad.push_back(op);
    };
    add([&](Op& o) {
        o.opcode = Opcode::copy;
        o.dst = buf;
        o.len = 8;
    });  // null src
    add([&](Op& o) {
        o.opcode = Opcode::copy;
        o.src = buf;
        o.len = 8;
    });  // null dst
    add([&](Op& o) {
        o.opcode = Opcode::fill;
        o.len = 8;
    });  // null dst
    add([&](Op& o) {
        o.opcode = Opcode::crc32c;
        o.src = buf;
        o.len = 8;
    });  // null crc
    add([&](Op& o) {
        o.opcode = Opcode::copy_crc32c;
        o.src = buf;
        o.dst = buf + 8;
        o.len = 8;
    });
    add([&](Op& o) {
        o.opcode = Opcode::copy;
        o.src_iov = &one;
        o.src_iovcnt = 1;
        o.dst_iov = &two;
        o.dst_iovcnt = 1;
    });  // totals
    add([&](Op& o) {
        o.opcode = Opcode::copy;
        o.src_iov = &one;
        o.src_iovcnt = 0;
        o.dst = buf;
        o.len = 10;
    });  // iovcnt 0
    add([&](Op& o) {
        o.opcode = Opcode::crc32c;
        o.src_iov = &null_base;
        o.src_iovcnt = 1;
        o.crc_dst = &crc;
    });  // null base
    add([&](Op& o) {
        o.opcode = Opcode::xor_;
        o.dst = buf;
        o.len = 8;
        o.xor_srcs = srcs;
        o.xor_nsrcs = 0;
    });  // 0 sources
    add([&](Op& o) {
        o.opcode = Opcode::xor_;
        o.dst = buf;
        o.len = 8;
        o.xor_srcs = srcs;
        o.xor_nsrcs = kMaxXorSources + 1;
    });
    add([&](Op& o) {
        o.opcode = Opcode::xor_;
        o.dst = buf;
        o.len = 8;
        o.xor_srcs = srcs;
        o.xor_nsrcs = 2;
    });  // null src
    add([&](Op& o) {
        o.opcode = Opcode::xor_;
        o.dst = buf;
        o.len = 8;
        o.xor_nsrcs = 1;
    });
    add([&](Op& o) { o.opcode = static_cast<Opcode>(200); });
    for (size_t i = 0; i < bad.size(); ++i) {
        SCOPED_TRACE(i);
        EXPECT_EQ(run(bad[i]), Errc::invalid_argument);
    }
    Op fine;
    fine.opcode = Opcode::fill;
    fine.dst = buf;
    fine.len = 8;
    on(threads[0],
       [&] { EXPECT_EQ(ch[0]->submit(fine, nullptr, nullptr), Errc::invalid_argument); });
    EXPECT_EQ(ch[0]->outstanding(), 0u);
    EXPECT_EQ(ch[0]->tasks_available(), options().task_count);
}

TEST_F(AccelTest, CompletionsNeverRunInsideSubmit) {
    start(false);
    auto* buf = alloc(4096);
    Done d;
    on(threads[0], [&] {
        ASSERT_TRUE(ch[0]->submit_fill(buf, 1, 4096, &Done::fn, &d).ok());
        EXPECT_EQ(d.calls, 0);
        EXPECT_EQ(ch[0]->outstanding(), 1u);
    });
    ASSERT_TRUE(poll_until([&] { return d.calls == 1; }));
    EXPECT_EQ(ch[0]->outstanding(), 0u);
}

TEST_F(AccelTest, ExhaustedTaskPoolRefusesBusyThenRecovers) {
    ASSERT_TRUE(set_options({4, 2}).ok());
    start(false);
    auto* buf = alloc(4096);
    std::array<Done, 5> d;
    on(threads[0], [&] {
        for (int i = 0; i < 4; ++i)
            ASSERT_TRUE(ch[0]->submit_fill(buf, 1, 64, &Done::fn, &d[i]).ok());
        EXPECT_EQ(ch[0]->submit_fill(buf, 1, 64, &Done::fn, &d[4]), Errc::busy);
        EXPECT_EQ(ch[0]->tasks_available(), 0u);
    });
    ASSERT_TRUE(poll_until([&] { return d[3].calls == 1; }));
    EXPECT_EQ(d[4].calls, 0);
    on(threads[0], [&] { ASSERT_TRUE(ch[0]->submit_fill(buf, 1, 64, &Done::fn, &d[4]).ok()); });
    ASSERT_TRUE(poll_until([&] { return d[4].calls == 1; }));
    EXPECT_EQ(stats_now().busy, 1u);
    // Options are fixed while running.
    EXPECT_EQ(set_options({8, 8}).code(), Errc::already_exists);
    EXPECT_EQ(set_options({0, 8}).code(), Errc::invalid_argument);
}

TEST_F(AccelTest, BatchCompletesOnceWithPerOpStatus) {
    start(false);
    auto* a = alloc(8192);
    auto* b = alloc(8192);
    auto* c = alloc(8192);
    pattern(a, 8192, 1);
    uint32_t crc = 0;
    uint64_t where = 0;
    std::array<Op, 4> ops{};
    ops[0].opcode = Opcode::copy;
    ops[0].dst = b;
    ops[0].src = a;
    ops[0].len = 8192;
    ops[1].opcode = Opcode::crc32c;
    ops[1].src = a;
    ops[1].len = 8192;
    ops[1].crc_dst = &crc;
    ops[2].opcode = Opcode::compare;  // a vs c (zeroes): miscompares
    ops[2].src = a;
    ops[2].dst = c;
    ops[2].len = 8192;
    ops[2].miscompare_offset = &where;
    ops[3].opcode = Opcode::fill;
    ops[3].dst = c + 4096;
    ops[3].len = 4096;
    ops[3].fill_byte = 0x77;
    Done d;
    on(threads[0], [&] { ASSERT_TRUE(ch[0]->submit_batch(ops.data(), 4, &Done::fn, &d).ok()); });
    ASSERT_TRUE(poll_until([&] { return d.calls > 0; }));
    EXPECT_EQ(d.calls, 1);
    EXPECT_EQ(d.status, Errc::corrupt);  // the first failure in array order
    EXPECT_TRUE(ops[0].status.ok());
    EXPECT_TRUE(ops[1].status.ok());
    EXPECT_EQ(ops[2].status, Errc::corrupt);
    EXPECT_TRUE(ops[3].status.ok());
    EXPECT_EQ(std::memcmp(a, b, 8192), 0);
    EXPECT_EQ(crc, crc32c(0, a, 8192));
    EXPECT_EQ(c[8191], 0x77);
    const Stats s = stats_now();
    EXPECT_EQ(s.batches, 1u);
    EXPECT_EQ(s.ops[static_cast<size_t>(Opcode::compare)].failed, 1u);
    EXPECT_EQ(s.ops[static_cast<size_t>(Opcode::copy)].num_bytes, 8192u);
}

TEST_F(AccelTest, BatchIsRefusedAsAWhole) {
    ASSERT_TRUE(set_options({8, 1}).ok());
    start(false);
    auto* a = alloc(4096);
    std::array<Op, 3> ops{};
    for (auto& op : ops) {
        op.opcode = Opcode::fill;
        op.dst = a;
        op.len = 64;
    }
    ops[2].dst = nullptr;  // one bad op refuses the batch
    Done d;
    on(threads[0], [&] {
        EXPECT_EQ(ch[0]->submit_batch(ops.data(), 3, &Done::fn, &d), Errc::invalid_argument);
        EXPECT_EQ(ch[0]->submit_batch(ops.data(), 0, &Done::fn, &d), Errc::invalid_argument);
        EXPECT_EQ(ch[0]->submit_batch(ops.data(), 9, &Done::fn, &d), Errc::invalid_argument);
        EXPECT_EQ(ch[0]->tasks_available(), 8u);
        ops[2].dst = a;
        ASSERT_TRUE(ch[0]->submit_batch(ops.data(), 3, &Done::fn, &d).ok());
        // The one batch record is in use: a second batch is busy, not queued.
        Done d2;
        EXPECT_EQ(ch[0]->submit_batch(ops.data(), 1, &Done::fn, &d2), Errc::busy);
    });
    ASSERT_TRUE(poll_until([&] { return d.calls == 1; }));
    EXPECT_TRUE(d.status.ok());
}

TEST_F(AccelTest, ChannelsPerThreadAndStatsOverLiveAndGoneChannels) {
    start(false, 2);
    EXPECT_NE(ch[0], ch[1]);
    auto* a = alloc(4096);
    Op op;
    op.opcode = Opcode::fill;
    op.dst = a;
    op.len = 4096;
    ASSERT_TRUE(run(op, 0).ok());
    ASSERT_TRUE(run(op, 1).ok());
    ASSERT_TRUE(run(op, 1).ok());
    Stats s = stats_now();
    EXPECT_EQ(s.ops[static_cast<size_t>(Opcode::fill)].executed, 3u);
    EXPECT_EQ(s.ops[static_cast<size_t>(Opcode::fill)].num_bytes, 3u * 4096);
    ASSERT_EQ(s.module_ops.size(), module_names().size());
    EXPECT_EQ(s.module_ops[0], 3u);  // software
    // Thread 1 lets its channel go: its counts stay in the totals.
    on(threads[1], [&] { put_channel(ch[1]); });
    ch[1] = nullptr;
    run_for(1000);
    s = stats_now();
    EXPECT_EQ(s.ops[static_cast<size_t>(Opcode::fill)].executed, 3u);
}

TEST_F(AccelTest, LifecycleErrors) {
    EXPECT_FALSE(running());
    on(threads[0], [&] { EXPECT_EQ(get_channel(), nullptr); });
    start(false);
    // A second App in the process (two Python Worlds) shares the framework: the first fini
    // leaves it running for the other, the last one stops it.
    on(threads[0], [&] { EXPECT_TRUE(init().ok()); });
    bool first_done = false;
    on(threads[0], [&] { fini([](void* c) { *static_cast<bool*>(c) = true; }, &first_done); });
    ASSERT_TRUE(poll_until([&] { return first_done; }));
    EXPECT_TRUE(running());
    stop();
    EXPECT_FALSE(running());
    // fini when not running still calls back (by message).
    bool done = false;
    on(threads[0], [&] { fini([](void* c) { *static_cast<bool*>(c) = true; }, &done); });
    ASSERT_TRUE(poll_until([&] { return done; }));
    // And the framework starts again.
    start(false);
    EXPECT_TRUE(running());
}

}  // namespace
}  // namespace strata::accel::testing
