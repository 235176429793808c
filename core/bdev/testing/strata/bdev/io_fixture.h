// Shared by GoogleTests of the bdev layer and its modules that drive bdevs directly (no App) on
// the runtime SimFixture: an I/O completion recorder, and a fixture holding one bdev open for
// writing on one Thread with a one-I/O-at-a-time helper that checks the layer's completion
// contract (accepted, never completed inside submit, completed exactly once).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include <strata/bdev/bdev.h>
#include <strata/runtime/sim_fixture.h>

namespace strata::bdev::testing {

struct Done {
    int calls = 0;
    IoStatus status;
    static void cb(void* ctx, const IoStatus& s) {
        auto* d = static_cast<Done*>(ctx);
        ++d->calls;
        d->status = s;
    }
};

// start_sim() first; call close_rw() in TearDown before the bdevs go.
class BdevIoFixture : public runtime::testing::SimFixture {
protected:
    // Opens `name` for writing on `thread` (default threads[0]), which then runs io(), into
    // desc / ch; its events go to `events`.
    void open_rw(const std::string& name, runtime::Thread* thread = nullptr) {
        io_thread = thread != nullptr ? thread : threads[0];
        on(io_thread, [&] {
            auto d = open(name, true, [this](Event e, Bdev&) { events.push_back(e); });
            ASSERT_TRUE(d.ok()) << d.error().message();
            desc = std::move(*d);
            ch = desc->get_channel();
            ASSERT_NE(ch, nullptr);
        });
    }
    void close_rw() {
        if (!desc) return;
        on(io_thread, [&] {
            if (ch) put_channel(ch);
            ch = nullptr;
            desc.reset();
        });
    }
    // submit(done, ctx) on the I/O Thread, then the simulator until it completed.
    template <class F>
    IoStatus io(F submit) {
        Done d;
        Status s;
        on(io_thread != nullptr ? io_thread : threads[0], [&] { s = submit(&Done::cb, &d); });
        EXPECT_TRUE(s.ok()) << s.to_string();
        if (!s.ok()) return IoStatus{s.code(), 0};
        EXPECT_EQ(d.calls, 0) << "callback ran inside submit";
        EXPECT_TRUE(poll_until([&] { return d.calls > 0; }));
        EXPECT_EQ(d.calls, 1);
        return d.status;
    }

    runtime::Thread* io_thread = nullptr;
    std::unique_ptr<Desc> desc;
    Channel* ch = nullptr;
    std::vector<Event> events;
};

}  // namespace strata::bdev::testing
