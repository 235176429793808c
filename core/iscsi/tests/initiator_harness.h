// What the initiator's tests share (initiator_test.cpp against a scripted target,
// initiator_e2e_test.cpp against the real one): drive the simulator, run code on a Thread, log
// in, run one command to completion, make a data pattern.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <strata/base/random.h>
#include <strata/iscsi/testing/initiator.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/thread.h>

namespace strata::iscsi::testing {

struct InitiatorHarness {
    static constexpr uint64_t kSecond = 1'000'000'000;

    std::unique_ptr<runtime::SimScheduler> sim;
    runtime::Thread* ini_thread = nullptr;
    std::unique_ptr<Initiator> ini;

    bool run(const std::function<bool()>& pred, uint64_t timeout_ns = 30 * kSecond) {
        return sim->run_until(pred, sim->now_ns() + timeout_ns);
    }
    // Runs fn on `t` and drives the simulator until it has run.
    template <class F>
    void on(runtime::Thread* t, F&& fn) {
        bool done = false;
        ASSERT_TRUE(t->post([&] {
                         fn();
                         done = true;
                     }).ok());
        ASSERT_TRUE(run([&] { return done; }));
    }
    template <class F>
    void on(runtime::Thread& t, F&& fn) {
        on(&t, std::forward<F>(fn));
    }

    // Logs in (a new Initiator on ini_thread); the login's status. clear_unit_attention: then
    // TEST UNIT READY until the unit attention a new I_T nexus may see (power on / reset,
    // sense key 6) is consumed, as an OS initiator's scan does.
    Status login(InitiatorOptions o, bool clear_unit_attention = false) {
        std::optional<Status> st;
        on(ini_thread, [&] {
            ini = std::make_unique<Initiator>(std::move(o));
            ini->login([&](Status s) { st = s; });
        });
        EXPECT_TRUE(run([&] { return st.has_value(); })) << "login never finished";
        if (!st) return Status(Errc::timeout);
        if (!st->ok() || ini->session().discovery || !clear_unit_attention) return *st;
        for (int i = 0; i < 3; ++i) {
            const ScsiResult r =
                run_cmd([&](ScsiDone d) { return ini->test_unit_ready(0, std::move(d)); });
            if (r.ok()) break;
            EXPECT_EQ(r.sense_key(), 6) << "TEST UNIT READY: status " << int(r.status);
        }
        return *st;
    }

    // One command, run to completion (a refusal or a timeout comes back as `transport`).
    ScsiResult run_cmd(const std::function<Result<uint32_t>(ScsiDone)>& submit) {
        std::optional<ScsiResult> res;
        on(ini_thread, [&] {
            auto r = submit([&](const ScsiResult& x) { res = x; });
            if (!r.ok()) {
                ScsiResult f;
                f.transport = Status(r.code());
                res = f;
            }
        });
        EXPECT_TRUE(run([&] { return res.has_value(); })) << "command never completed";
        if (!res) {
            ScsiResult f;
            f.transport = Status(Errc::timeout);
            return f;
        }
        return *res;
    }

    static std::vector<uint8_t> pattern(size_t n, uint64_t seed) {
        std::vector<uint8_t> v(n);
        Prng p(seed);
        for (auto& x : v) x = uint8_t(p.next());
        return v;
    }
};

}  // namespace strata::iscsi::testing
