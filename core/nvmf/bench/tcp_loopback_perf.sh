#!/usr/bin/env bash
# NVMe-oF/TCP on loopback, side by side: Strata's initiator (strata-nvme-perf) against Strata's
# target (strata-tgt) and, when SPDK_DIR names an SPDK build (../shared/SPDK-ANCHOR.md), against
# SPDK's nvmf_tgt with the same initiator, and SPDK's spdk_nvme_perf against both targets.
# Null bdev, 4 KiB (IO_SIZE) random read, target on core 0, initiator on core 1, each run RUNS times,
# interleaved; prints IOPS, mean/p50/p99 latency where the tool reports them, and the target's
# CPU cycles per I/O (its CPU time over the run, at the TSC rate, divided by the I/Os done).
#
#   core/nvmf/bench/tcp_loopback_perf.sh                     Strata only
#   SPDK_DIR=/tmp/spdk core/nvmf/bench/tcp_loopback_perf.sh  with SPDK
#   QDS="32 128" SECONDS_PER_RUN=5 RUNS=3 BUILD_DIR=build/dev
# An A/B of initiator builds: INITIATORS adds strata-nvme-perf binaries as name=path, TARGETS
# picks the targets, PERF_STAT=1 runs each initiator under `perf stat` and adds its readv calls
# and syscalls per I/O (busy-polling, most are the polls that find nothing):
#   SPDK_DIR=/tmp/spdk TARGETS=spdk INITIATORS="base=/tmp/perf-base" PERF_STAT=1 \
#       core/nvmf/bench/tcp_loopback_perf.sh
# Strata's target on another socket implementation: a target named strata-IMPL (IMPL: posix,
# uring) sets it with sock_set_default_impl; STRATA_TGT picks the strata-tgt binary, and a
# target written NAME@PATH runs the strata-tgt at PATH (an A/B of target builds in one run):
#   TARGETS="strata strata-uring strata-uring@/tmp/tgt-before" core/nvmf/bench/tcp_loopback_perf.sh
# A target named strata-IMPL+OPTION also sets the boolean OPTION of IMPL (sock_impl_set_options):
#   TARGETS="strata-uring strata-uring+enable_registered_recv_buffers" core/nvmf/bench/tcp_loopback_perf.sh
# Digests: DIGESTS=1 makes every initiator ask for header and data digests (-H -I, the flags
# of both strata-nvme-perf and spdk_nvme_perf); the target "strata-accel" is Strata's target
# computing data digests through the accel framework (ddgst_accel_threshold ACCEL_THRESHOLD,
# default 1: all of them), "strata" computes them inline. IO_SIZE (default 4096) sets -o and
# PATTERN (default randread; randwrite sends the data the other way) -w:
#   DIGESTS=1 TARGETS="strata strata-accel" IO_SIZE=65536 core/nvmf/bench/tcp_loopback_perf.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

BUILD_DIR=${BUILD_DIR:-build/dev}
QDS=${QDS:-"32 128"}
T=${SECONDS_PER_RUN:-5}
RUNS=${RUNS:-3}
PORT=${PORT:-4420}
IO_SIZE=${IO_SIZE:-4096}
PATTERN=${PATTERN:-randread}
ACCEL_THRESHOLD=${ACCEL_THRESHOLD:-1}
NQN=nqn.2016-06.io.spdk:cnode1
TRID="trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:$PORT subnqn:$NQN"
TGT=${STRATA_TGT:-$BUILD_DIR/core/apps/strata-tgt}
PERF=$BUILD_DIR/core/apps/strata-nvme-perf
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

[ -x "$TGT" ] && [ -x "$PERF" ] || { echo "build $TGT and $PERF first" >&2; exit 1; }
bash ci/hugepages >/dev/null 2>&1 || true

cat >"$WORK/tgt.json" <<EOF
{"subsystems":[
 {"subsystem":"bdev","config":[
   {"method":"bdev_null_create","params":{"name":"Null0","num_blocks":262144,"block_size":4096}}]},
 {"subsystem":"nvmf","config":[
   {"method":"nvmf_create_transport","params":{"trtype":"TCP"}},
   {"method":"nvmf_create_subsystem","params":{"nqn":"$NQN","allow_any_host":true,
     "serial_number":"SPDK00000000000001"}},
   {"method":"nvmf_subsystem_add_ns","params":{"nqn":"$NQN","namespace":{"bdev_name":"Null0"}}},
   {"method":"nvmf_subsystem_add_listener","params":{"nqn":"$NQN","listen_address":
     {"trtype":"TCP","adrfam":"IPv4","traddr":"127.0.0.1","trsvcid":"$PORT"}}}]}]}
EOF

# strata-accel: the same target with data digests through accel.
sed "s/\"params\":{\"trtype\":\"TCP\"}/\"params\":{\"trtype\":\"TCP\",\"ddgst_accel_threshold\":$ACCEL_THRESHOLD}/" \
    "$WORK/tgt.json" >"$WORK/tgt-accel.json"
grep -q ddgst_accel_threshold "$WORK/tgt-accel.json" || { echo "tgt-accel.json not made" >&2; exit 1; }

tsc_hz() {  # the TSC's rate: the kernel's tsc_khz when exported, else the CPU's nominal MHz
    local mhz
    mhz=$(awk -F: '/^cpu MHz/ {print $2; exit}' /proc/cpuinfo)
    awk -v m="$mhz" 'BEGIN { printf "%.0f", m * 1e6 }'
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, clock ticks
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "target did not listen on $PORT" >&2
    return 1
}

start_target() {  # start_target strata|strata-accel|strata-IMPL|spdk[@PATH]: sets TGT_PID
    local name=${1%%@*} bin=$TGT
    [[ $1 == *@* ]] && bin=${1#*@}
    case $name in
    strata | strata-*)
        local cfg=$WORK/tgt.json
        if [ "$name" = strata-accel ]; then
            cfg=$WORK/tgt-accel.json
        elif [ "$name" != strata ]; then
            local impl=${name#strata-} opts=""
            if [[ $impl == *+* ]]; then  # strata-IMPL+OPTION: sock_impl_set_options OPTION true
                opts=',{"method":"sock_impl_set_options","params":{"impl_name":"'"${impl%%+*}"'","'"${impl#*+}"'":true}}'
                impl=${impl%%+*}
            fi
            cfg=$WORK/tgt-${name#strata-}.json
            sed 's/^{"subsystems":\[$/{"subsystems":[{"subsystem":"sock","config":[{"method":"sock_set_default_impl","params":{"impl_name":"'"$impl"'"}}'"$opts"']},/' \
                "$WORK/tgt.json" >"$cfg"
        fi
        "$bin" -m 0x1 -c "$cfg" -r "$WORK/strata.sock" --log-level WARN >"$WORK/tgt.log" 2>&1 &
        ;;
    spdk)
        LD_LIBRARY_PATH=$SPDK_DIR/build/lib "$SPDK_DIR/build/bin/nvmf_tgt" -m 0x1 \
            -r "$WORK/spdk.sock" --json "$WORK/tgt.json" >"$WORK/tgt.log" 2>&1 &
        ;;
    esac
    TGT_PID=$!
    wait_port
}
stop_target() { kill "$TGT_PID" 2>/dev/null; wait "$TGT_PID" 2>/dev/null || true; }

run_initiator() {  # run_initiator strata|spdk|name=path QD -> "iops mean_us p50_us p99_us ios rv/io sc/io"
    local out cmd=() extra=()
    case $1 in
    strata) cmd=("$PERF") ;;
    spdk)
        cmd=(env "LD_LIBRARY_PATH=$SPDK_DIR/build/lib" "$SPDK_DIR/build/bin/spdk_nvme_perf")
        extra=(-L) ;;
    *=*) cmd=("${1#*=}") ;;
    esac
    rm -f "$WORK/stat"
    [ -n "${PERF_STAT:-}" ] &&
        cmd=(perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_readv -o "$WORK/stat" "${cmd[@]}")
    [ -n "${DIGESTS:-}" ] && extra+=(-H -I)
    out=$("${cmd[@]}" -q "$2" -o "$IO_SIZE" -w "$PATTERN" -t "$T" -c 0x2 -r "$TRID" "${extra[@]}" 2>&1)
    echo "$out" >>"$WORK/perf.log"
    # Both tools print a Total line: "Total : IOPS MiB/s avg min max" (latencies in us).
    echo "$out" | awk -v t="$T" '
        /^Total/ { for (i = 1; i <= NF; i++) if ($i == ":") { iops = $(i+1); avg = $(i+3) }; total = 1; next }
        total && /p50/ { for (i = 1; i < NF; i++) { if ($i == "p50") p50 = $(i+1); if ($i == "p99") p99 = $(i+1) }; total = 0 }
        /^ *50\.00000% *:/ && p50 == "" { p50 = $NF; sub(/us$/, "", p50) }
        /^ *99\.00000% *:/ && p99 == "" { p99 = $NF; sub(/us$/, "", p99) }
        END { printf "%s %s %s %s %.0f", iops, avg, (p50 == "" ? "-" : p50), (p99 == "" ? "-" : p99), iops * t }'
    if [ -f "$WORK/stat" ]; then
        awk '/raw_syscalls/ { gsub(",", "", $1); sc = $1 } /sys_enter_readv/ { gsub(",", "", $1); rv = $1 }
             END { printf " %s %s", rv, sc }' "$WORK/stat"
    fi
    echo
}

targets=(strata)
initiators=(strata)
if [ -n "${SPDK_DIR:-}" ]; then targets+=(spdk); initiators+=(spdk); fi
[ -n "${TARGETS:-}" ] && read -ra targets <<<"$TARGETS"
read -ra more <<<"${INITIATORS:-}"
initiators+=("${more[@]}")
HZ=$(tsc_hz)
TICK=$(getconf CLK_TCK)
printf '%-12s %-9s %4s %4s %10s %9s %9s %9s %12s%s\n' target initiator qd run iops mean_us p50 p99 \
    tgt_cyc/io "${PERF_STAT:+  readv/io  syscalls/io}"
for qd in $QDS; do
    for run in $(seq "$RUNS"); do
        for tgt in "${targets[@]}"; do
            for ini in "${initiators[@]}"; do
                start_target "$tgt"
                t0=$(cpu_ticks "$TGT_PID")
                read -r iops avg p50 p99 ios rv sc < <(run_initiator "$ini" "$qd")
                t1=$(cpu_ticks "$TGT_PID")
                stop_target
                cyc=$(awk -v d=$((t1 - t0)) -v tk="$TICK" -v hz="$HZ" -v n="$ios" \
                    'BEGIN { if (n > 0) printf "%.0f", d / tk * hz / n; else print "-" }')
                calls=""
                [ -n "${rv:-}" ] && calls=$(awk -v rv="$rv" -v sc="$sc" -v n="$ios" \
                    'BEGIN { if (n > 0) printf "  %8.2f  %11.2f", rv / n, sc / n }')
                label=$tgt
                [[ $tgt == *@* ]] && label=${tgt%%@*}@$(basename "${tgt#*@}")
                printf '%-12s %-9s %4s %4s %10s %9s %9s %9s %12s%s\n' "$label" "${ini%%=*}" "$qd" \
                    "$run" "$iops" "$avg" "$p50" "$p99" "$cyc" "$calls"
            done
        done
    done
done
echo "(raw output of the initiators: rerun with KEEP=1 to keep $WORK)"
[ -n "${KEEP:-}" ] && { trap - EXIT; echo "kept $WORK"; }
exit 0
