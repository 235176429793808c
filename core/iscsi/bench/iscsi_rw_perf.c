/* iscsi_rw_perf: random 4 KiB (one block of the LUN's size) READ16 or WRITE16 at a fixed queue
 * depth through libiscsi's asynchronous API, for core/iscsi/bench/iscsi_perf.sh. Debian 12's
 * iscsi-perf (libiscsi 1.19) only reads; this is the same initiator library, writing. One
 * thread, one connection, poll() on the socket; prints "iops average N (M MB/s)" as iscsi-perf
 * does, and "errors N" when a command failed (exit status 1 then).
 *
 *   iscsi_rw_perf [-i initiator-iqn] [-m queue-depth] [-t seconds] [-w] <iscsi-url>
 *   -w writes (a fixed pattern), default reads. Built by iscsi_perf.sh with
 *   cc -O2 iscsi_rw_perf.c -liscsi (libiscsi-dev).
 */
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct bench {
    struct iscsi_context *iscsi;
    int lun;
    int write;
    uint64_t blocks;
    uint32_t block_size;
    unsigned char *buf;
    uint64_t rng;
    uint64_t done;
    uint64_t errors;
    int inflight;
    int stopping;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t next_lba(struct bench *b) {  /* xorshift64 */
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return b->rng % b->blocks;
}

static void submit(struct bench *b);

static void completed(struct iscsi_context *iscsi, int status, void *command_data, void *priv) {
    struct bench *b = priv;
    struct scsi_task *task = command_data;
    (void)iscsi;
    b->inflight--;
    if (status == SCSI_STATUS_GOOD) {
        b->done++;
    } else {
        if (b->errors++ == 0) {
            fprintf(stderr, "iscsi_rw_perf: command failed: status %d, %s\n", status,
                    iscsi_get_error(b->iscsi));
        }
    }
    if (task != NULL) scsi_free_scsi_task(task);
    if (!b->stopping) submit(b);
}

static void submit(struct bench *b) {
    uint64_t lba = next_lba(b);
    struct scsi_task *task;
    if (b->write) {
        task = iscsi_write16_task(b->iscsi, b->lun, lba, b->buf, b->block_size, (int)b->block_size,
                                  0, 0, 0, 0, 0, completed, b);
    } else {
        task = iscsi_read16_task(b->iscsi, b->lun, lba, b->block_size, (int)b->block_size, 0, 0, 0,
                                 0, 0, completed, b);
    }
    if (task == NULL) {
        fprintf(stderr, "iscsi_rw_perf: cannot queue a command: %s\n", iscsi_get_error(b->iscsi));
        b->errors++;
        return;
    }
    b->inflight++;
}

static int service(struct bench *b, int timeout_ms) {
    struct pollfd pfd = {.fd = iscsi_get_fd(b->iscsi), .events = (short)iscsi_which_events(b->iscsi)};
    if (poll(&pfd, 1, timeout_ms) < 0) return -1;
    if (iscsi_service(b->iscsi, pfd.revents) < 0) {
        fprintf(stderr, "iscsi_rw_perf: %s\n", iscsi_get_error(b->iscsi));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *initiator = "iqn.2026-12.io.strata:iscsi-rw-perf";
    int qd = 32, seconds = 5, opt;
    struct bench b = {.rng = 0x9e3779b97f4a7c15ULL};
    while ((opt = getopt(argc, argv, "i:m:t:w")) != -1) {
        switch (opt) {
        case 'i': initiator = optarg; break;
        case 'm': qd = atoi(optarg); break;
        case 't': seconds = atoi(optarg); break;
        case 'w': b.write = 1; break;
        default:
            fprintf(stderr, "usage: iscsi_rw_perf [-i iqn] [-m qd] [-t seconds] [-w] <iscsi-url>\n");
            return 2;
        }
    }
    if (optind >= argc || qd < 1 || seconds < 1) {
        fprintf(stderr, "usage: iscsi_rw_perf [-i iqn] [-m qd] [-t seconds] [-w] <iscsi-url>\n");
        return 2;
    }
    b.iscsi = iscsi_create_context(initiator);
    struct iscsi_url *url = b.iscsi ? iscsi_parse_full_url(b.iscsi, argv[optind]) : NULL;
    if (url == NULL) {
        fprintf(stderr, "iscsi_rw_perf: bad URL %s: %s\n", argv[optind],
                b.iscsi ? iscsi_get_error(b.iscsi) : "no context");
        return 1;
    }
    iscsi_set_targetname(b.iscsi, url->target);
    iscsi_set_session_type(b.iscsi, ISCSI_SESSION_NORMAL);
    iscsi_set_header_digest(b.iscsi, ISCSI_HEADER_DIGEST_NONE);
    b.lun = url->lun;
    if (iscsi_full_connect_sync(b.iscsi, url->portal, url->lun) != 0) {
        fprintf(stderr, "iscsi_rw_perf: login to %s failed: %s\n", argv[optind], iscsi_get_error(b.iscsi));
        return 1;
    }
    struct scsi_task *task = iscsi_readcapacity16_sync(b.iscsi, b.lun);
    struct scsi_readcapacity16 *rc16 =
        task && task->status == SCSI_STATUS_GOOD ? scsi_datain_unmarshall(task) : NULL;
    if (rc16 == NULL) {
        fprintf(stderr, "iscsi_rw_perf: READ CAPACITY 16 failed: %s\n", iscsi_get_error(b.iscsi));
        return 1;
    }
    b.blocks = rc16->returned_lba + 1;
    b.block_size = rc16->block_length;
    scsi_free_scsi_task(task);
    b.buf = malloc(b.block_size);
    if (b.buf == NULL) return 1;
    memset(b.buf, 0xa5, b.block_size);

    for (int i = 0; i < qd; i++) submit(&b);
    double t0 = now_s(), end = t0 + seconds;
    while (now_s() < end && b.inflight > 0) {
        if (service(&b, 100) != 0) return 1;
    }
    double secs = now_s() - t0;
    uint64_t done = b.done;
    b.stopping = 1;
    while (b.inflight > 0) {
        if (service(&b, 1000) != 0) break;
    }
    uint64_t iops = (uint64_t)((double)done / secs);
    printf("%s %u-byte blocks, qd %d, %.1f s\n", b.write ? "randwrite" : "randread", b.block_size,
           qd, secs);
    printf("iops average %llu (%llu MB/s)\n", (unsigned long long)iops,
           (unsigned long long)(iops * b.block_size / 1000000));
    if (b.errors) printf("errors %llu\n", (unsigned long long)b.errors);
    iscsi_logout_sync(b.iscsi);
    iscsi_destroy_url(url);
    iscsi_destroy_context(b.iscsi);
    free(b.buf);
    return b.errors ? 1 : 0;
}
