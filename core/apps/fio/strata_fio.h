/* The C interface between fio_engine.c (compiled against fio's headers, C) and strata_fio.cpp
 * (the Strata side, C++): one Strata App per fio job (thread), its bdevs from a JSON config, its
 * I/O submitted to a Strata Thread by message and completed into a ring the fio thread reaps. */
#ifndef STRATA_FIO_H
#define STRATA_FIO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct strata_fio;        /* one fio job's Strata instance */
struct strata_fio_target; /* an open bdev */
struct strata_fio_req;    /* one io_u's request, preallocated */

enum strata_fio_op { STRATA_FIO_READ, STRATA_FIO_WRITE, STRATA_FIO_TRIM, STRATA_FIO_FLUSH };

/* Loads json_conf (a Strata or SPDK JSON config) into a new App on a real scheduler running on
 * the cores of cpumask (NULL: "0x1"; reactors are not pinned, fio owns the CPU placement).
 * NULL on failure with a message in err. queue_size bounds the I/Os in flight. */
struct strata_fio* strata_fio_create(const char* json_conf, const char* cpumask,
                                     unsigned queue_size, char* err, size_t err_len);
void strata_fio_destroy(struct strata_fio* s);

/* A bdev's size in bytes and block size; -ENOENT if no such bdev. */
int strata_fio_bdev_size(struct strata_fio* s, const char* name, uint64_t* bytes,
                         uint32_t* block_size);
/* Names of the bdevs nobody claimed, for filename=* ; calls fn for each. */
void strata_fio_list_bdevs(struct strata_fio* s, void (*fn)(void* ctx, const char* name),
                           void* ctx);

struct strata_fio_target* strata_fio_open(struct strata_fio* s, const char* name, char* err,
                                          size_t err_len);
void strata_fio_close(struct strata_fio* s, struct strata_fio_target* t);

/* DMA-capable memory for fio's I/O buffers. */
void* strata_fio_dma_alloc(size_t len);
void strata_fio_dma_free(void* p);

struct strata_fio_req* strata_fio_req_alloc(struct strata_fio* s, void* user);
void strata_fio_req_free(struct strata_fio_req* r);
/* Queues one I/O (offset and length in bytes, multiples of the block size). 0: queued (it
 * completes through strata_fio_reap); -EBUSY: the message ring is full, retry after reaping;
 * other -errno: refused now. */
int strata_fio_submit(struct strata_fio* s, struct strata_fio_target* t, struct strata_fio_req* r,
                      enum strata_fio_op op, void* buf, uint64_t offset, uint64_t len);
/* Completed requests: up to max (user pointer, 0 or errno) pairs; returns how many. */
unsigned strata_fio_reap(struct strata_fio* s, void** users, int* errors, unsigned max);

#ifdef __cplusplus
}
#endif

#endif
