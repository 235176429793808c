#!/usr/bin/env bash
# NVMe/TCP initiators side by side against one SPDK nvmf_tgt on loopback: builds of
# strata-nvme-perf (an A/B of two builds) and SPDK's spdk_nvme_perf, interleaved run by run in
# the same window, so a busy machine shifts them alike and the ratios hold. Null bdev
# (262144 x 4096), 4 KiB random read, target on core 0, initiators on core 1. Each initiator runs
# under `perf stat` (tracepoints), which gives its syscalls and readv calls per I/O and its user
# and system CPU time per I/O (it busy-polls, so these are 1/IOPS split, plus what it spins on).
#
#   SPDK_DIR=/tmp/spdk INIS="base=/tmp/perf-main new=build/dev/core/apps/strata-nvme-perf spdk" \
#       RUNS=4 SECONDS_PER_RUN=4 QDS="32 128" core/nvme/bench/tcp_initiator_ab.sh
# INIS: name=binary for each strata-nvme-perf build; the word spdk for spdk_nvme_perf.
set -uo pipefail
SPDK_DIR=${SPDK_DIR:?SPDK_DIR names an SPDK build (nvmf_tgt, spdk_nvme_perf)}
INIS=${INIS:-"strata=build/dev/core/apps/strata-nvme-perf spdk"}
T=${SECONDS_PER_RUN:-4}
RUNS=${RUNS:-3}
QDS=${QDS:-"32 128"}
PORT=${PORT:-4432}
NQN=nqn.2016-06.io.spdk:cnode1
TRID="trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:$PORT subnqn:$NQN"
WORK=$(mktemp -d)
cat >"$WORK/tgt.json" <<J
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
J
LD_LIBRARY_PATH=$SPDK_DIR/build/lib "$SPDK_DIR/build/bin/nvmf_tgt" -m 0x1 -r "$WORK/spdk.sock" \
    --json "$WORK/tgt.json" >"$WORK/tgt.log" 2>&1 &
TP=$!
trap 'kill $TP 2>/dev/null; wait $TP 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_readv
printf '%-6s %4s %3s %9s %11s %8s %10s %10s\n' ini qd run iops syscalls/io readv/io user_ns/io sys_ns/io
for qd in $QDS; do
    for run in $(seq "$RUNS"); do
        for ini in $INIS; do
            name=${ini%%=*}
            if [ "$ini" = spdk ]; then
                cmd=(env "LD_LIBRARY_PATH=$SPDK_DIR/build/lib" "$SPDK_DIR/build/bin/spdk_nvme_perf")
            else
                cmd=("${ini#*=}")
            fi
            out=$(perf stat -e "$EVENTS" -o "$WORK/st" "${cmd[@]}" -q "$qd" -o 4096 -w randread \
                -t "$T" -c 0x2 -r "$TRID" 2>&1)
            iops=$(echo "$out" | awk '/^Total/ { for (i = 1; i <= NF; i++) if ($i == ":") print $(i+1) }')
            awk -v n="$name" -v q="$qd" -v r="$run" -v i="${iops:-0}" -v t="$T" '
                /raw_syscalls/ { gsub(",", "", $1); sc = $1 }
                /sys_enter_readv/ { gsub(",", "", $1); rv = $1 }
                /seconds user/ { us = $1 }
                /seconds sys/ { sy = $1 }
                END { ios = i * t; if (ios == 0) ios = 1
                      printf "%-6s %4s %3s %9.0f %11.2f %8.2f %10.0f %10.0f\n", n, q, r, i,
                             sc / ios, rv / ios, us * 1e9 / ios, sy * 1e9 / ios }' "$WORK/st"
        done
    done
done
