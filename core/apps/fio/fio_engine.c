/* fio external ioengine on Strata bdevs, like SPDK's fio bdev plugin (app/fio/bdev):
 *   [global]
 *   ioengine=external:/path/to/libstrata_fio.so
 *   spdk_json_conf=/path/to/bdevs.json     (strata_json_conf is the same option)
 *   thread=1
 *   [job]
 *   filename=Malloc0
 * Built against the headers of the fio source tree fio itself was built from (Debian: the fio
 * source package; see ci/fetch-fio-source). Each fio job (thread) gets its own Strata App:
 * the plugin keeps no state outside the job's td->io_ops_data. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fio.h"
#include "optgroup.h"

#include "strata_fio.h"

struct strata_fio_options {
    void* pad; /* fio: the first member of an engine's option struct is reserved */
    char* json_conf;
    char* strata_json_conf;
    char* cpumask;
};

struct strata_fio_job {
    struct strata_fio* s;
    struct io_u** events;
    unsigned nevents;
    unsigned capacity;
    void** users;
    int* errors;
    /* Every bdev this job opened, closed by cleanup (fio may drop f->engine_data before). */
    struct strata_fio_target** targets;
    unsigned ntargets;
};

static const char* conf_of(struct thread_data* td) {
    struct strata_fio_options* o = td->eo;
    if (o->strata_json_conf && o->strata_json_conf[0]) return o->strata_json_conf;
    return o->json_conf;
}

static void add_one(void* ctx, const char* name) {
    add_file((struct thread_data*)ctx, name, 0, 1);
}

/* Loads the config (once per job) and fills in every file's size. */
static int strata_setup(struct thread_data* td) {
    struct strata_fio_options* o = td->eo;
    struct strata_fio_job* job = td->io_ops_data;
    char err[512] = "";
    unsigned i;
    struct fio_file* f;

    if (!td->o.use_thread) {
        log_err("strata: set thread=1 (the Strata engine runs fio jobs as threads)\n");
        return 1;
    }
    if (!conf_of(td) || !conf_of(td)[0]) {
        log_err("strata: spdk_json_conf=<file> is required (the JSON config creating the bdevs)\n");
        return 1;
    }
    if (!job) {
        job = calloc(1, sizeof(*job));
        if (!job) return 1;
        job->capacity = td->o.iodepth ? td->o.iodepth : 1;
        job->events = calloc(job->capacity, sizeof(*job->events));
        job->users = calloc(job->capacity, sizeof(*job->users));
        job->errors = calloc(job->capacity, sizeof(*job->errors));
        job->s = strata_fio_create(conf_of(td), o->cpumask, job->capacity, err, sizeof(err));
        if (!job->s || !job->events || !job->users || !job->errors) {
            log_err("strata: %s\n", err[0] ? err : "out of memory");
            if (job->s) strata_fio_destroy(job->s);
            free(job->events);
            free(job->users);
            free(job->errors);
            free(job);
            return 1;
        }
        td->io_ops_data = job;
    }
    if (td->o.nr_files == 1 && strcmp(td->files[0]->file_name, "*") == 0) {
        /* filename=* : every bdev nobody claimed */
        td->files[0]->real_file_size = 0;
        strata_fio_list_bdevs(job->s, add_one, td);
    }
    for_each_file(td, f, i) {
        uint64_t bytes = 0;
        uint32_t bs = 0;
        if (strcmp(f->file_name, "*") == 0) continue;
        if (strata_fio_bdev_size(job->s, f->file_name, &bytes, &bs) != 0) {
            log_err("strata: no bdev named '%s' in %s\n", f->file_name, conf_of(td));
            return 1;
        }
        f->real_file_size = bytes;
        f->filetype = FIO_TYPE_BLOCK;
        fio_file_set_size_known(f);
    }
    return 0;
}

static int strata_init(struct thread_data* td) {
    struct strata_fio_job* job = td->io_ops_data;
    unsigned i;
    struct fio_file* f;
    char err[512] = "";

    if (!job) {
        if (strata_setup(td) != 0) return 1;
        job = td->io_ops_data;
    }
    if (job->targets) return 0; /* opened already */
    job->targets = calloc(td->o.nr_files ? td->o.nr_files : 1, sizeof(*job->targets));
    if (!job->targets) return 1;
    for_each_file(td, f, i) {
        if (strcmp(f->file_name, "*") == 0) continue;
        f->engine_data = strata_fio_open(job->s, f->file_name, err, sizeof(err));
        if (!f->engine_data) {
            log_err("strata: %s: %s\n", f->file_name, err);
            return 1;
        }
        job->targets[job->ntargets++] = f->engine_data;
    }
    return 0;
}

static void strata_cleanup(struct thread_data* td) {
    struct strata_fio_job* job = td->io_ops_data;
    unsigned i;
    struct fio_file* f;

    if (!job) return;
    for_each_file(td, f, i) f->engine_data = NULL;
    for (i = 0; i < job->ntargets; ++i) strata_fio_close(job->s, job->targets[i]);
    free(job->targets);
    strata_fio_destroy(job->s);
    free(job->events);
    free(job->users);
    free(job->errors);
    free(job);
    td->io_ops_data = NULL;
}

static int strata_open(struct thread_data* td, struct fio_file* f) {
    return 0;
}
static int strata_close(struct thread_data* td, struct fio_file* f) {
    return 0;
}

static int strata_iomem_alloc(struct thread_data* td, size_t total_mem) {
    td->orig_buffer = strata_fio_dma_alloc(total_mem);
    return td->orig_buffer == NULL;
}

static void strata_iomem_free(struct thread_data* td) {
    strata_fio_dma_free(td->orig_buffer);
}

static int strata_io_u_init(struct thread_data* td, struct io_u* io_u) {
    struct strata_fio_job* job = td->io_ops_data;
    io_u->engine_data = job ? strata_fio_req_alloc(job->s, io_u) : NULL;
    return io_u->engine_data == NULL;
}

static void strata_io_u_free(struct thread_data* td, struct io_u* io_u) {
    if (io_u->engine_data) strata_fio_req_free(io_u->engine_data);
    io_u->engine_data = NULL;
}

static enum fio_q_status strata_queue(struct thread_data* td, struct io_u* io_u) {
    struct strata_fio_job* job = td->io_ops_data;
    struct strata_fio_target* t = io_u->file->engine_data;
    enum strata_fio_op op;
    int rc;

    if (!t) {
        io_u->error = ENODEV;
        return FIO_Q_COMPLETED;
    }
    switch (io_u->ddir) {
        case DDIR_READ:
            op = STRATA_FIO_READ;
            break;
        case DDIR_WRITE:
            op = STRATA_FIO_WRITE;
            break;
        case DDIR_TRIM:
            op = STRATA_FIO_TRIM;
            break;
        case DDIR_SYNC:
            op = STRATA_FIO_FLUSH;
            break;
        default:
            io_u->error = EINVAL;
            return FIO_Q_COMPLETED;
    }
    rc = strata_fio_submit(job->s, t, io_u->engine_data, op, io_u->xfer_buf, io_u->offset,
                           io_u->xfer_buflen);
    if (rc == -EBUSY) return FIO_Q_BUSY;
    if (rc != 0) {
        io_u->error = -rc;
        return FIO_Q_COMPLETED;
    }
    return FIO_Q_QUEUED;
}

static uint64_t ns_since(const struct timespec* t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (uint64_t)(t1.tv_sec - t0->tv_sec) * 1000000000ull + (uint64_t)t1.tv_nsec -
           (uint64_t)t0->tv_nsec;
}

static int strata_getevents(struct thread_data* td, unsigned int min, unsigned int max,
                            const struct timespec* t) {
    struct strata_fio_job* job = td->io_ops_data;
    struct timespec t0;
    uint64_t timeout = t ? (uint64_t)t->tv_sec * 1000000000ull + (uint64_t)t->tv_nsec : 0;
    unsigned spins = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    job->nevents = 0;
    if (max > job->capacity) max = job->capacity;
    for (;;) {
        unsigned n = strata_fio_reap(job->s, job->users, job->errors, max - job->nevents);
        for (unsigned i = 0; i < n; ++i) {
            struct io_u* io_u = job->users[i];
            io_u->error = job->errors[i];
            job->events[job->nevents++] = io_u;
        }
        if (job->nevents >= min || job->nevents >= max) break;
        if (t && ns_since(&t0) > timeout) break;
        if (n == 0 && ++spins > 256) {
            /* The reactors complete the I/O: after a short spin, yield the CPU to them. */
            struct timespec nap = {0, 20000};
            nanosleep(&nap, NULL);
        }
    }
    return (int)job->nevents;
}

static struct io_u* strata_event(struct thread_data* td, int event) {
    struct strata_fio_job* job = td->io_ops_data;
    return job->events[event];
}

static int strata_invalidate(struct thread_data* td, struct fio_file* f) {
    return 0;
}

static struct fio_option options[] = {
    {
        .name = "spdk_json_conf",
        .lname = "JSON config creating the bdevs (SPDK's option name)",
        .type = FIO_OPT_STR_STORE,
        .off1 = offsetof(struct strata_fio_options, json_conf),
        .help = "A Strata or SPDK JSON config file creating the bdevs",
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "strata_json_conf",
        .lname = "JSON config creating the bdevs",
        .type = FIO_OPT_STR_STORE,
        .off1 = offsetof(struct strata_fio_options, strata_json_conf),
        .help = "A Strata or SPDK JSON config file creating the bdevs",
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "strata_cpumask",
        .lname = "Strata reactor core mask",
        .type = FIO_OPT_STR_STORE,
        .off1 = offsetof(struct strata_fio_options, cpumask),
        .help = "Cores of the job's Strata reactors (default 0x1; not pinned)",
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = NULL,
    },
};

/* fio finds the engine by this symbol (dlsym "ioengine"). */
struct ioengine_ops ioengine = {
    .name = "strata_bdev",
    .version = FIO_IOOPS_VERSION,
    .flags = FIO_RAWIO | FIO_NOEXTEND | FIO_NODISKUTIL | FIO_MEMALIGN | FIO_DISKLESSIO,
    .setup = strata_setup,
    .init = strata_init,
    .queue = strata_queue,
    .getevents = strata_getevents,
    .event = strata_event,
    .cleanup = strata_cleanup,
    .open_file = strata_open,
    .close_file = strata_close,
    .invalidate = strata_invalidate,
    .iomem_alloc = strata_iomem_alloc,
    .iomem_free = strata_iomem_free,
    .io_u_init = strata_io_u_init,
    .io_u_free = strata_io_u_free,
    .option_struct_size = sizeof(struct strata_fio_options),
    .options = options,
};
