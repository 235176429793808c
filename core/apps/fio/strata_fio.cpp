// The Strata side of the fio engine (fio_engine.c): one App per fio job on a RealScheduler,
// the job's bdevs opened on one Strata Thread, I/O handed to that Thread by message (no heap,
// no lock per I/O: the request is the io_u's, preallocated) and completions pushed into a ring
// the fio thread reaps in getevents.
#include "strata_fio.h"

#include <time.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>

#include <strata/base/mpsc_ring.h>
#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>
#include <strata/env/memory.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

using namespace strata;

struct strata_fio_target {
    std::unique_ptr<bdev::Desc> desc;
    bdev::Channel* ch = nullptr;
    uint32_t block_size = 0;
};

struct strata_fio_req {
    struct strata_fio* s = nullptr;
    void* user = nullptr;  // the io_u
    strata_fio_target* t = nullptr;
    strata_fio_op op = STRATA_FIO_READ;
    void* buf = nullptr;
    uint64_t offset_blocks = 0, num_blocks = 0;
    int error = 0;
    bdev::IoWaitEntry wait{};
};

struct strata_fio {
    std::unique_ptr<runtime::RealScheduler> sched;
    std::unique_ptr<rpc::App> app;
    runtime::Thread* io_thread = nullptr;
    MpscRing<strata_fio_req*> done;
    explicit strata_fio(size_t ring) : done(ring) {}

    // Runs fn on the I/O Thread (control path) and waits for it.
    void run_on_io(const std::function<void()>& fn) {
        std::atomic<bool> ran{false};
        (void)io_thread->post([&] {
            fn();
            ran.store(true);
        });
        while (!ran.load()) {
            struct timespec ts {
                0, 100'000
            };
            nanosleep(&ts, nullptr);
        }
    }
};

namespace {

size_t pow2_at_least(size_t n) {
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

void set_err(char* err, size_t len, const std::string& msg) {
    if (err && len) std::snprintf(err, len, "%s", msg.c_str());
}

void complete(strata_fio_req* r, int error) {
    r->error = error;
    // The ring holds every request of the job (sized at creation): a push cannot fail.
    while (!r->s->done.push(r)) {
    }
}

void on_done(void* ctx, const bdev::IoStatus& st) {
    complete(static_cast<strata_fio_req*>(ctx), st.ok() ? 0 : errc_to_errno(st.code));
}

void submit_on_thread(void* ctx) {
    auto* r = static_cast<strata_fio_req*>(ctx);
    strata_fio_target& t = *r->t;
    Status st;
    switch (r->op) {
        case STRATA_FIO_READ:
            st = bdev::read(*t.desc, *t.ch, r->buf, r->offset_blocks, r->num_blocks, on_done, r);
            break;
        case STRATA_FIO_WRITE:
            st = bdev::write(*t.desc, *t.ch, r->buf, r->offset_blocks, r->num_blocks, on_done, r);
            break;
        case STRATA_FIO_TRIM:
            st = bdev::unmap(*t.desc, *t.ch, r->offset_blocks, r->num_blocks, on_done, r);
            break;
        case STRATA_FIO_FLUSH:
            st = bdev::flush(*t.desc, *t.ch, r->offset_blocks, r->num_blocks, on_done, r);
            break;
    }
    if (st.ok()) return;
    if (st.code() == Errc::busy) {  // no bdev_io free: resubmit when one is
        r->wait.fn = submit_on_thread;
        r->wait.ctx = r;
        bdev::queue_io_wait(*t.ch, r->wait);
        return;
    }
    complete(r, errc_to_errno(st.code()));
}

}  // namespace

extern "C" {

strata_fio* strata_fio_create(const char* json_conf, const char* cpumask, unsigned queue_size,
                              char* err, size_t err_len) {
    auto config = rpc::App::read_config_file(json_conf ? json_conf : "");
    if (!config) {
        set_err(err, err_len, config.error().message());
        return nullptr;
    }
    auto cores = runtime::parse_core_mask(cpumask && cpumask[0] ? cpumask : "0x1");
    if (!cores || cores->empty()) {
        set_err(err, err_len,
                fmt::format("strata_cpumask '{}': bad core mask", cpumask ? cpumask : ""));
        return nullptr;
    }
    auto s = std::make_unique<strata_fio>(pow2_at_least(size_t{queue_size} * 2));
    runtime::RealSchedulerOptions so;
    so.cores = *cores;
    so.pin = false;  // fio places its own threads; several jobs may share a core
    s->sched = std::make_unique<runtime::RealScheduler>(so);
    rpc::AppOptions ao;
    ao.config = std::move(*config);
    ao.host_name = "fio";
    s->app = std::make_unique<rpc::App>(*s->sched, ao);
    {
        runtime::HostScope scope(s->app->host());
        stack::register_all_modules(*s->app);
        s->io_thread = s->sched->create_thread("fio_io", 0);
    }
    s->sched->start();
    std::atomic<bool> started{false};
    std::optional<Result<void>> result;
    s->app->start([&](Result<void> r) {
        result = std::move(r);
        started.store(true);
    });
    while (!started.load()) {
        struct timespec ts {
            0, 1'000'000
        };
        nanosleep(&ts, nullptr);
    }
    if (!result->ok()) {
        set_err(err, err_len, fmt::format("{}: {}", json_conf, result->error().message()));
        strata_fio_destroy(s.release());
        return nullptr;
    }
    return s.release();
}

void strata_fio_destroy(strata_fio* s) {
    if (!s) return;
    s->app->request_stop();
    while (!s->app->stopped()) {
        struct timespec ts {
            0, 1'000'000
        };
        nanosleep(&ts, nullptr);
    }
    s->sched->stop();
    s->app.reset();
    s->sched.reset();
    delete s;
}

int strata_fio_bdev_size(strata_fio* s, const char* name, uint64_t* bytes, uint32_t* block_size) {
    int rc = -ENOENT;
    s->run_on_io([&] {
        if (bdev::Bdev* b = bdev::find(name)) {
            *bytes = b->num_blocks() * b->block_size();
            *block_size = b->block_size();
            rc = 0;
        }
    });
    return rc;
}

void strata_fio_list_bdevs(strata_fio* s, void (*fn)(void*, const char*), void* ctx) {
    std::vector<std::string> names;
    s->run_on_io([&] {
        for (bdev::Bdev* b : bdev::list())
            if (std::string(b->claimed_by()).empty()) names.push_back(b->name());
    });
    for (const auto& n : names) fn(ctx, n.c_str());
}

strata_fio_target* strata_fio_open(strata_fio* s, const char* name, char* err, size_t err_len) {
    auto t = std::make_unique<strata_fio_target>();
    std::string msg;
    s->run_on_io([&] {
        auto d = bdev::open(name, true);
        if (!d) {
            msg = d.error().message();
            return;
        }
        t->desc = std::move(*d);
        t->ch = t->desc->get_channel();
        t->block_size = t->desc->bdev().block_size();
        if (!t->ch) msg = "no I/O channel";
    });
    if (!msg.empty()) {
        set_err(err, err_len, msg);
        if (t->desc) strata_fio_close(s, t.release());
        return nullptr;
    }
    return t.release();
}

void strata_fio_close(strata_fio* s, strata_fio_target* t) {
    s->run_on_io([&] {
        if (t->ch) bdev::put_channel(t->ch);
        t->ch = nullptr;
        t->desc.reset();
    });
    delete t;
}

void* strata_fio_dma_alloc(size_t len) {
    auto p = env::dma_alloc(len, 4096, true);
    return p ? *p : nullptr;
}

void strata_fio_dma_free(void* p) {
    if (p) env::dma_free(p);
}

strata_fio_req* strata_fio_req_alloc(strata_fio* s, void* user) {
    auto* r = new strata_fio_req;
    r->s = s;
    r->user = user;
    return r;
}

void strata_fio_req_free(strata_fio_req* r) {
    delete r;
}

int strata_fio_submit(strata_fio* s, strata_fio_target* t, strata_fio_req* r, strata_fio_op op,
                      void* buf, uint64_t offset, uint64_t len) {
    if (offset % t->block_size != 0 || len % t->block_size != 0)
        return -EINVAL;  // fio's bs and offsets must be multiples of the bdev's block size
    r->t = t;
    r->op = op;
    r->buf = buf;
    r->offset_blocks = offset / t->block_size;
    r->num_blocks = len / t->block_size;
    Status st = s->io_thread->send(submit_on_thread, r);
    if (st.ok()) return 0;
    return st.code() == Errc::busy ? -EBUSY : -errc_to_errno(st.code());
}

unsigned strata_fio_reap(strata_fio* s, void** users, int* errors, unsigned max) {
    unsigned n = 0;
    strata_fio_req* r = nullptr;
    while (n < max && s->done.pop(r)) {
        users[n] = r->user;
        errors[n] = r->error;
        ++n;
    }
    return n;
}

}  // extern "C"
