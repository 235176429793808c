#!/usr/bin/env bash
# iSCSI on loopback, side by side: libiscsi's iscsi-perf (Debian's libiscsi-bin) against
# strata-tgt and against Debian's tgt (tgtd), the same initiator, the same LUN size and block
# size (LUN_MIB, 4 KiB blocks: a malloc bdev for strata-tgt, an rdwr file in /dev/shm for tgtd,
# both in RAM), 4 KiB random I/O at each queue depth, the target on core 0 (strata-tgt -m 0x1;
# tgtd and its threads under taskset), the initiator on core 1. Each (target, workload, qd)
# runs RUNS times, interleaved, a fresh target each run; prints every run (IOPS and the
# target's CPU cycles per I/O: its CPU time over the run, at the TSC rate, divided by the I/Os
# done), then the medians and strata/tgtd's IOPS ratio. strata-tgt busy-polls its core, so its
# CPU time counts idle polling too: "busy_cyc/io" counts only its busy poll iterations (from
# thread_get_stats), which is what an I/O costs it; tgtd sleeps when idle, so for tgtd the two
# are the same. "init_cpu" is the initiator's share of its core: near 100%, the initiator, not
# the target, sets the IOPS figure.
#   core/iscsi/bench/iscsi_perf.sh                 both targets, QDS="1 32 128", 3 x 5 s
#   TARGETS=tgtd WORKLOADS=randwrite QDS=32 RUNS=5 SECONDS_PER_RUN=10 LUN_MIB=256
# Workloads: randread is iscsi-perf -r (READ16). Debian 12's iscsi-perf (libiscsi 1.19) cannot
# write, so randwrite is iscsi_rw_perf.c beside this script (WRITE16 through the same libiscsi,
# built here with cc -liscsi when libiscsi-dev is installed, else left out with the reason).
# A strata-tgt without the iSCSI target is reported and left out (tgtd still runs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

BUILD_DIR=${BUILD_DIR:-build/dev}
QDS=${QDS:-"1 32 128"}
T=${SECONDS_PER_RUN:-5}
RUNS=${RUNS:-3}
PORT=${PORT:-3264}
LUN_MIB=${LUN_MIB:-256}
TGT=${STRATA_TGT:-$BUILD_DIR/core/apps/strata-tgt}
IQN=iqn.2026-12.io.strata:bench
CTL=${TGTD_CONTROL_PORT:-$((PORT % 1000 + 100))}
WORK=$(mktemp -d)
SHM=/dev/shm
[ -d "$SHM" ] && [ -w "$SHM" ] || SHM=$WORK
IMG=$(mktemp "$SHM/strata-iscsi-perf.XXXXXX")
TGT_PID=
CUR=
trap 'stop_target; rm -rf "$WORK" "$IMG"' EXIT

command -v iscsi-perf >/dev/null || { echo "iscsi-perf missing (ci/install-deps installs libiscsi-bin)" >&2; exit 1; }
read -ra workloads <<<"${WORKLOADS:-randread randwrite}"
RW_PERF=$WORK/iscsi_rw_perf
if [[ " ${workloads[*]} " == *" randwrite "* ]] &&
    ! cc -O2 -o "$RW_PERF" core/iscsi/bench/iscsi_rw_perf.c -liscsi 2>"$WORK/cc.log"; then
    echo "randwrite: left out (cannot build core/iscsi/bench/iscsi_rw_perf.c: libiscsi-dev missing? $(head -n1 "$WORK/cc.log"))"
    read -ra workloads <<<"${workloads[*]/randwrite/}"
fi
read -ra targets <<<"${TARGETS:-strata tgtd}"
targets=("${targets[@]//,/ }")
read -ra targets <<<"${targets[*]}"

cat >"$WORK/tgt.json" <<EOF
{"subsystems":[
 {"subsystem":"bdev","config":[
  {"method":"bdev_malloc_create","params":{"name":"Malloc0","num_blocks":$((LUN_MIB * 256)),"block_size":4096}}]},
 {"subsystem":"iscsi","config":[
  {"method":"iscsi_set_options","params":{"max_queue_depth":128}},
  {"method":"iscsi_create_portal_group","params":{"tag":1,"portals":[{"host":"127.0.0.1","port":"$PORT"}]}},
  {"method":"iscsi_create_initiator_group","params":{"tag":1,"initiators":["ANY"],"netmasks":["127.0.0.1/32"]}},
  {"method":"iscsi_create_target_node","params":{"name":"$IQN","alias_name":"bench",
   "pg_ig_maps":[{"pg_tag":1,"ig_tag":1}],"luns":[{"bdev_name":"Malloc0","lun_id":0}],
   "queue_depth":128,"disable_chap":true}}]}]}
EOF

tsc_hz() {  # the TSC's rate: the kernel's tsc_khz when exported, else the CPU's nominal MHz
    local mhz
    mhz=$(awk -F: '/^cpu MHz/ {print $2; exit}' /proc/cpuinfo)
    awk -v m="$mhz" 'BEGIN { printf "%.0f", m * 1e6 }'
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime of all its threads
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        kill -0 "$TGT_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "target did not listen on $PORT: $(tail -n 3 "$WORK/tgt.log")" >&2
    return 1
}

start_target() {  # start_target strata|tgtd: sets TGT_PID, CUR and URL
    CUR=$1
    case $1 in
    strata)
        "$TGT" -m 0x1 -c "$WORK/tgt.json" -r "$WORK/strata.sock" --log-level WARN \
            >"$WORK/tgt.log" 2>&1 &
        TGT_PID=$!
        URL="iscsi://127.0.0.1:$PORT/$IQN/0"
        ;;
    tgtd)
        truncate -s 0 "$IMG"
        truncate -s "${LUN_MIB}M" "$IMG"
        taskset -c 0 tgtd -f -C "$CTL" --iscsi "portal=127.0.0.1:$PORT" >"$WORK/tgt.log" 2>&1 &
        TGT_PID=$!
        wait_port
        local adm=(tgtadm -C "$CTL" --lld iscsi)
        "${adm[@]}" --mode target --op new --tid 1 --targetname "$IQN" &&
            "${adm[@]}" --mode logicalunit --op new --tid 1 --lun 1 --backing-store "$IMG" \
                --bstype rdwr --blocksize 4096 &&
            "${adm[@]}" --mode target --op bind --tid 1 --initiator-address 127.0.0.1
        # The LUN's data in RAM, as the malloc bdev's: written once before the runs.
        dd if=/dev/zero of="$IMG" bs=1M count="$LUN_MIB" conv=notrunc status=none
        URL="iscsi://127.0.0.1:$PORT/$IQN/1"
        ;;
    esac
    wait_port
}
stop_target() {
    [ -n "$TGT_PID" ] || return 0
    # tgtd -f leaves SIGTERM unanswered: it stops on tgtadm's "delete system".
    [ "$CUR" = tgtd ] && { tgtadm -C "$CTL" --op delete --mode system >/dev/null 2>&1 || true; }
    kill "$TGT_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$TGT_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$TGT_PID" 2>/dev/null || true
    wait "$TGT_PID" 2>/dev/null || true
    TGT_PID=
}

strata_usable() {  # prints why strata-tgt cannot serve iSCSI, nothing when it can
    [ -x "$TGT" ] || { echo "$TGT not built"; return; }
    start_target strata 2>/dev/null && { stop_target; return; }
    stop_target
    grep -m1 -E "unknown subsystem 'iscsi'|Method not found" "$WORK/tgt.log" ||
        echo "strata-tgt did not listen on $PORT: $(tail -n1 "$WORK/tgt.log")"
}

run_perf() {  # run_perf WORKLOAD QD -> "iops init_cpu%"
    local out
    # 4 KiB blocks: one block per request, random LBAs. GNU time reports the initiator's CPU.
    local timed=(/usr/bin/time -f "initiator_cpu %P" taskset -c 1)
    case $1 in
    randread) out=$("${timed[@]}" iscsi-perf -i "$IQN:initiator" -m "$2" -b 1 -r -t "$T" "$URL" 2>&1 | tr '\r' '\n') ;;
    randwrite) out=$("${timed[@]}" "$RW_PERF" -i "$IQN:initiator" -m "$2" -w -t "$T" "$URL" 2>&1) ;;
    esac
    echo "$out" >>"$WORK/perf.log"
    echo "$out" | awk '/^iops average/ { iops = $3 } /^initiator_cpu/ { cpu = $2 }
                       END { print (iops == "" ? "-" : iops), (cpu == "" ? "-" : cpu) }'
}
busy_ns() {  # strata-tgt's busy time over all its Threads (thread_get_stats), "-" for tgtd
    [ "$CUR" = strata ] || { echo -; return; }
    /usr/bin/python3 - "$WORK/strata.sock" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "thread_get_stats"}).encode())
buf = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        sys.exit("thread_get_stats: no answer")
    buf += chunk
    try:
        reply = json.loads(buf)
        break
    except ValueError:
        pass
print(sum(t["busy"] for t in reply["result"]["threads"]))
PY
}

usable=()
for tgt in "${targets[@]}"; do
    case $tgt in
    strata)
        why=$(strata_usable)
        if [ -n "$why" ]; then echo "strata: left out ($why)"; continue; fi ;;
    tgtd)
        command -v tgtd >/dev/null || { echo "tgtd: left out (not installed; ci/install-deps installs tgt)"; continue; } ;;
    *) echo "unknown target $tgt (strata, tgtd)" >&2; exit 2 ;;
    esac
    usable+=("$tgt")
done
[ "${#usable[@]}" -gt 0 ] || { echo "no target to measure" >&2; exit 1; }

HZ=$(tsc_hz)
TICK=$(getconf CLK_TCK)
echo "4 KiB ${workloads[*]} (iscsi-perf / iscsi_rw_perf), LUN ${LUN_MIB} MiB (4 KiB blocks), ${T} s per run, $RUNS runs, target core 0, initiator core 1"
printf '%-7s %-9s %4s %4s %10s %12s %13s %9s\n' target workload qd run iops tgt_cyc/io busy_cyc/io init_cpu
: >"$WORK/results"
for qd in $QDS; do
    for run in $(seq "$RUNS"); do
        for wl in "${workloads[@]}"; do
            for tgt in "${usable[@]}"; do
                start_target "$tgt"
                t0=$(cpu_ticks "$TGT_PID")
                b0=$(busy_ns)
                read -r iops icpu < <(run_perf "$wl" "$qd")
                b1=$(busy_ns)
                t1=$(cpu_ticks "$TGT_PID")
                stop_target
                cyc=$(awk -v d=$((t1 - t0)) -v tk="$TICK" -v hz="$HZ" -v i="$iops" -v t="$T" \
                    'BEGIN { n = i * t; if (n > 0) printf "%.0f", d / tk * hz / n; else print "-" }')
                busy=$cyc
                if [ "$b0" != - ]; then
                    busy=$(awk -v d=$((b1 - b0)) -v hz="$HZ" -v i="$iops" -v t="$T" \
                        'BEGIN { n = i * t; if (n > 0) printf "%.0f", d / 1e9 * hz / n; else print "-" }')
                fi
                printf '%-7s %-9s %4s %4s %10s %12s %13s %9s\n' "$tgt" "$wl" "$qd" "$run" "$iops" "$cyc" "$busy" "$icpu"
                echo "$tgt $wl $qd $iops $cyc $busy ${icpu%\%}" >>"$WORK/results"
            done
        done
    done
done

echo "medians:"
printf '%-9s %4s' workload qd
for tgt in "${usable[@]}"; do printf ' %12s %12s %13s %9s' "$tgt-iops" "$tgt-cyc/io" "busy-cyc/io" "init-cpu%"; done
[[ " ${usable[*]} " == *" strata "* && " ${usable[*]} " == *" tgtd "* ]] && printf ' %12s' strata/tgtd
echo
median() {  # median TARGET WORKLOAD QD COLUMN
    awk -v t="$1" -v w="$2" -v q="$3" -v c="$4" '$1 == t && $2 == w && $3 == q && $c != "-" { print $c }' "$WORK/results" |
        sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2];
                                            else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
for wl in "${workloads[@]}"; do for qd in $QDS; do
    printf '%-9s %4s' "$wl" "$qd"
    declare -A med=()
    for tgt in "${usable[@]}"; do
        med[$tgt]=$(median "$tgt" "$wl" "$qd" 4)
        printf ' %12s %12s %13s %9s' "${med[$tgt]}" "$(median "$tgt" "$wl" "$qd" 5)" \
            "$(median "$tgt" "$wl" "$qd" 6)" "$(median "$tgt" "$wl" "$qd" 7)"
    done
    if [ -n "${med[strata]:-}" ] && [ -n "${med[tgtd]:-}" ]; then
        awk -v s="${med[strata]}" -v t="${med[tgtd]}" 'BEGIN { if (t > 0 && s != "-") printf " %11.2fx", s / t; else printf " %12s", "-" }'
    fi
    echo
    unset med
done; done
echo "(iscsi-perf's output: rerun with KEEP=1 to keep $WORK)"
[ -n "${KEEP:-}" ] && { trap 'stop_target; rm -f "$IMG"' EXIT; echo "kept $WORK"; }
exit 0
