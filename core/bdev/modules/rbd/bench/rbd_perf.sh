#!/usr/bin/env bash
# rbd_perf.sh: Strata's bdevperf on an RBD image beside Ceph's own `rbd bench` on the same image,
# in one run, alternating: 4 KiB random read and random write at queue depth 32.
#
#   bash core/bdev/modules/rbd/bench/rbd_perf.sh [SECONDS]
#
# Uses the cluster in $STRATA_CEPH_DIR, else starts one with ci/ceph (and stops it at the end).
# bdevperf comes from build/dev (STRATA_BUILD_DIR). The image (256 MiB) is written once in full
# first, so reads hit allocated objects. rbd bench runs the same number of I/O bdevperf did in
# its timed run (io-total), with 32 I/O in flight (io-threads). Prints one line per case and run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../../.." && pwd)"
SECS="${1:-10}"
BUILD="${STRATA_BUILD_DIR:-$ROOT/build/dev}"
BDEVPERF="$BUILD/core/apps/bdevperf"
[ -x "$BDEVPERF" ] || { echo "rbd_perf: $BDEVPERF not built" >&2; exit 1; }

own=""
if [ -z "${STRATA_CEPH_DIR:-}" ]; then
    own=$(mktemp -d /tmp/strata-ceph-perf.XXXXXX) && rmdir "$own"
    eval "$(bash "$ROOT/ci/ceph" start "$own" | grep '^export ')"
fi
trap '[ -z "$own" ] || bash "$ROOT/ci/ceph" stop "$own" >/dev/null' EXIT
D="$STRATA_CEPH_DIR"
POOL="$(cat "$D/pool")"
IMG="perf-$$"
rbdc() { rbd -c "$D/ceph.conf" --id strata --keyring "$D/client.strata.keyring" "$@"; }
rbdc create --size 256M "$POOL/$IMG"
trap 'rbdc rm --no-progress "$POOL/$IMG" >/dev/null 2>&1 || true; [ -z "$own" ] || bash "$ROOT/ci/ceph" stop "$own" >/dev/null' EXIT
rbdc bench --io-type write --io-pattern seq --io-size 4M --io-threads 4 --io-total 256M \
    "$POOL/$IMG" >/dev/null

cfg=$(mktemp /tmp/rbd-perf.XXXXXX.json)
cat >"$cfg" <<EOF
{"subsystems":[{"subsystem":"bdev","config":[
 {"method":"bdev_rbd_register_cluster","params":{"name":"ceph","user_id":"strata",
   "config_file":"$D/ceph.conf","key_file":"$D/client.strata.keyring"}},
 {"method":"bdev_rbd_create","params":{"name":"Ceph0","pool_name":"$POOL","rbd_name":"$IMG",
   "block_size":4096,"cluster_name":"ceph"}}]}]}
EOF

echo "rbd_perf: $(date -u +%FT%TZ), ${SECS}s per bdevperf run, 4 KiB, QD 32, image $POOL/$IMG (256 MiB)"
printf '%-10s %-12s %10s %12s\n' case tool IOPS "avg lat us"
for w in randread randwrite; do
    for run in 1 2; do
        out=$("$BDEVPERF" -c "$cfg" -T Ceph0 -q 32 -o 4096 -w "$w" -t "$SECS" -m 0x1 2>&1 | tr '\r' '\n')
        line=$(echo "$out" | grep -E '^ *Total' | tail -n1)
        iops=$(echo "$line" | awk '{print $3}')
        lat=$(echo "$line" | awk '{print $(NF-2)}')
        printf '%-10s %-12s %10s %12s\n' "$w" "bdevperf" "${iops%.*}" "$lat"
        n=$(awk -v i="$iops" -v s="$SECS" 'BEGIN{printf "%d", i * s}')
        [ "$n" -gt 1000 ] || n=1000
        type=${w#rand}
        bench=$(rbdc bench --io-type "$type" --io-pattern rand --io-size 4K --io-threads 32 \
            --io-total "$((n * 4096))" "$POOL/$IMG" 2>&1 | grep -E '^elapsed' | tail -n1)
        # "elapsed: 10   ops: 40960   ops/sec: 4089.12   bytes/sec: ..."
        biops=$(echo "$bench" | sed -E 's/.*ops\/sec: *([0-9.]+).*/\1/')
        blat=$(awk -v i="$biops" 'BEGIN{ if (i > 0) printf "%.1f", 32 * 1e6 / i; else print "-" }')
        printf '%-10s %-12s %10s %12s\n' "$w" "rbd bench" "${biops%.*}" "$blat"
    done
done
rm -f "$cfg"
