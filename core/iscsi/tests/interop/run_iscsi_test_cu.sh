#!/usr/bin/env bash
# libiscsi's conformance suite (iscsi-test-cu, Debian's libiscsi-bin) against an iSCSI target on
# loopback, over two LUNs: a RAM LUN and a thin-provisioned one.
#   strata: strata-tgt with a JSON config in SPDK's iscsi_* method names: a 64 MiB malloc bdev
#           (LUN "malloc") and a 64 MiB thin lvol on a lvstore of its own (LUN "lvol"), one
#           portal group on 127.0.0.1:$PORT, one initiator group (ANY from 127.0.0.1/32), no CHAP.
#   tgtd:   Debian's tgt, the reference: the same sizes as rdwr files, the second with tgt's
#           thin_provisioning=1 (UNMAP punches holes).
# Prints one line per test (PASS, SKIP and FAIL, a FAIL with the suite's first message and
# whether it is expected), then one summary line per LUN and a verdict line. Exit status: 0
# when every failure is listed in the expected-failures file, 1 on a NEW failure (or a test
# that never ran: the suite crashed or hung), 77 when it cannot run here (no iscsi-test-cu, or
# a strata-tgt without the iSCSI target: "unknown subsystem 'iscsi'" / iscsi_*: "Method not
# found"); ctest shows 77 as Skipped. STRATA_REQUIRE_ISCSI=1 turns that skip into a failure.
#   run_iscsi_test_cu.sh                      strata-tgt from $BUILD_DIR (default build/dev)
#   run_iscsi_test_cu.sh --target tgtd        Debian's tgtd (root: it needs /var/run/tgtd)
#   TESTS=ALL.Read10 LUNS=malloc PORT=3262 KEEP=1 run_iscsi_test_cu.sh
#   --expected FILE   the expected failures (default expected-failures-<target>.txt beside this
#                     script); a line is "[<lun>:]<Suite>.<Test> <reason>", # comments
#   --write-expected  print the failures of this run in that format (to start a list)
#   --parse OUT       only print how iscsi-test-cu's output OUT parses (the parser's test,
#                     tests/interop/parse_test.sh)
# TESTS is iscsi-test-cu's -t (default ALL: the SCSI and iSCSI families, 230 tests); the URL
# is given twice, so the MultipathIO tests run over two sessions (MULTIPATH=0: once);
# TEST_TIMEOUT bounds one LUN's run (default 300 s; ctest allows 900 s for both).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../../.." && pwd)"

TARGET=strata
EXPECTED=
WRITE_EXPECTED=0
while [ $# -gt 0 ]; do
    case "$1" in
    --target) TARGET=$2; shift 2 ;;
    --target=*) TARGET=${1#*=}; shift ;;
    --expected) EXPECTED=$2; shift 2 ;;
    --expected=*) EXPECTED=${1#*=}; shift ;;
    --write-expected) WRITE_EXPECTED=1; shift ;;
    --parse) PARSE_ONLY=$2; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "run_iscsi_test_cu.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
case "$TARGET" in strata | tgtd) ;; *) echo "--target strata|tgtd" >&2; exit 2 ;; esac

BUILD_DIR=${BUILD_DIR:-$ROOT/build/dev}
TGT=${STRATA_TGT:-$BUILD_DIR/core/apps/strata-tgt}
PORT=${PORT:-3262}
TESTS=${TESTS:-ALL}
LUNS=${LUNS:-"malloc lvol"}
TEST_TIMEOUT=${TEST_TIMEOUT:-300}
LUN_MIB=64
IQN_BASE=iqn.2026-12.io.strata
INI=$IQN_BASE:iscsi-test-cu
INI2=$IQN_BASE:iscsi-test-cu-2
EXPECTED=${EXPECTED:-$HERE/expected-failures-$TARGET.txt}
WORK=$(mktemp -d /tmp/iscsi-test-cu.XXXXXX)
TGT_PID=

skip() {  # STRATA_REQUIRE_ISCSI=1 (set once the target has landed): a skip is a failure
    if [ "${STRATA_REQUIRE_ISCSI:-0}" = 1 ]; then echo "iscsi-test-cu: FAIL (cannot run: $*)"; exit 1; fi
    echo "iscsi-test-cu: SKIP ($*)"
    exit 77
}
cleanup() {
    if [ -n "$TGT_PID" ]; then
        # tgtd -f leaves SIGTERM unanswered: it stops on tgtadm's "delete system".
        if [ "$TARGET" = tgtd ]; then "${TGTADM[@]}" --op delete --mode system >/dev/null 2>&1; fi
        kill -TERM "$TGT_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$TGT_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$TGT_PID" 2>/dev/null
        wait "$TGT_PID" 2>/dev/null
    fi
    if [ -n "${KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

[ -n "${PARSE_ONLY:-}" ] || command -v iscsi-test-cu >/dev/null || skip "iscsi-test-cu not installed (ci/install-deps installs libiscsi-bin)"

wait_port() {  # wait_port PID: until something listens on $PORT, or PID exits
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ---- targets: each sets TGT_PID and URL_<lun> ----------------------------------------------
start_strata() {
    [ -x "$TGT" ] || { echo "iscsi-test-cu: FAIL ($TGT not built)"; exit 1; }
    local blocks=$((LUN_MIB * 2048))
    cat >"$WORK/tgt.json" <<EOF
{"subsystems":[
 {"subsystem":"bdev","config":[
  {"method":"bdev_malloc_create","params":{"name":"Malloc0","num_blocks":$blocks,"block_size":512}},
  {"method":"bdev_malloc_create","params":{"name":"Malloc1","num_blocks":$((blocks * 2)),"block_size":512}},
  {"method":"bdev_lvol_create_lvstore","params":{"bdev_name":"Malloc1","lvs_name":"lvs0"}},
  {"method":"bdev_lvol_create","params":{"lvs_name":"lvs0","lvol_name":"lvol0","size_in_mib":$LUN_MIB,
   "thin_provision":true}}]},
 {"subsystem":"iscsi","config":[
  {"method":"iscsi_create_portal_group","params":{"tag":1,
   "portals":[{"host":"127.0.0.1","port":"$PORT"}]}},
  {"method":"iscsi_create_initiator_group","params":{"tag":1,"initiators":["ANY"],
   "netmasks":["127.0.0.1/32"]}},
  {"method":"iscsi_create_target_node","params":{"name":"$IQN_BASE:malloc","alias_name":"malloc",
   "pg_ig_maps":[{"pg_tag":1,"ig_tag":1}],"luns":[{"bdev_name":"Malloc0","lun_id":0}],
   "queue_depth":64,"disable_chap":true}},
  {"method":"iscsi_create_target_node","params":{"name":"$IQN_BASE:lvol","alias_name":"lvol",
   "pg_ig_maps":[{"pg_tag":1,"ig_tag":1}],"luns":[{"bdev_name":"lvs0/lvol0","lun_id":0}],
   "queue_depth":64,"disable_chap":true}}]}]}
EOF
    "$TGT" -m 0x1 -c "$WORK/tgt.json" -r "$WORK/strata.sock" --log-level WARN >"$WORK/tgt.log" 2>&1 &
    TGT_PID=$!
    # Initialized (the config loaded) or gone.
    for _ in $(seq 300); do
        grep -q 'framework initialized' "$WORK/tgt.log" && break
        kill -0 "$TGT_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q 'framework initialized' "$WORK/tgt.log"; then
        local why
        why=$(grep -m1 -E "unknown subsystem 'iscsi'|\(iscsi_[a-z_]*\): Method not found|Method not found: 'iscsi_" "$WORK/tgt.log")
        [ -n "$why" ] && skip "this strata-tgt has no iSCSI target yet: $why"
        cat "$WORK/tgt.log"
        echo "iscsi-test-cu: FAIL (strata-tgt did not load the config)"
        exit 1
    fi
    wait_port "$TGT_PID" || { cat "$WORK/tgt.log"; echo "iscsi-test-cu: FAIL (strata-tgt not listening on 127.0.0.1:$PORT)"; exit 1; }
    URL_malloc="iscsi://127.0.0.1:$PORT/$IQN_BASE:malloc/0"
    URL_lvol="iscsi://127.0.0.1:$PORT/$IQN_BASE:lvol/0"
}

start_tgtd() {
    command -v tgtd >/dev/null && command -v tgtadm >/dev/null ||
        skip "tgtd not installed (ci/install-deps installs tgt)"
    local ctl=${TGTD_CONTROL_PORT:-$((PORT % 1000 + 100))}
    TGTADM=(tgtadm -C "$ctl" --lld iscsi)
    tgtd -f -C "$ctl" --iscsi "portal=127.0.0.1:$PORT" >"$WORK/tgt.log" 2>&1 &
    TGT_PID=$!
    wait_port "$TGT_PID" || { cat "$WORK/tgt.log"; echo "iscsi-test-cu: FAIL (tgtd not listening)"; exit 1; }
    local tid=0 lun
    for lun in malloc lvol; do
        tid=$((tid + 1))
        truncate -s "${LUN_MIB}M" "$WORK/$lun.img"
        "${TGTADM[@]}" --mode target --op new --tid "$tid" --targetname "$IQN_BASE:$lun" &&
            "${TGTADM[@]}" --mode logicalunit --op new --tid "$tid" --lun 1 \
                --backing-store "$WORK/$lun.img" --bstype rdwr &&
            "${TGTADM[@]}" --mode target --op bind --tid "$tid" --initiator-address 127.0.0.1 ||
            { echo "iscsi-test-cu: FAIL (tgtadm setup of $lun)"; exit 1; }
        if [ "$lun" = lvol ]; then
            "${TGTADM[@]}" --mode logicalunit --op update --tid "$tid" --lun 1 \
                --params thin_provisioning=1 || { echo "iscsi-test-cu: FAIL (tgtadm thin_provisioning)"; exit 1; }
        fi
        # tgtd's LUN 0 is its controller; the disk is LUN 1.
        eval "URL_$lun=iscsi://127.0.0.1:$PORT/$IQN_BASE:$lun/1"
    done
}

# ---- one LUN's run ---------------------------------------------------------------------------
# parse OUT: "<Suite>.<Test> PASS|SKIP|FAIL <message>" per test, from CUnit's verbose output:
# "Suite: S", "  Test: T ...", the test's own lines ("[SKIPPED] why", "[FAILED] what"), then
# "passed" or "FAILED" at the start of a line, or right after "..." when it printed nothing
# (teardown messages may follow on the same line), a FAILED followed by "    1. file.c:line  -
# assertion" lines. Unbuffered (stdbuf), so the tests' own lines on stderr stay in place.
parse() {
    awk '
    function close_test(verdict) {
        if (name == "") return
        if (verdict == "FAIL") msg = (failmsg != "" ? failmsg : "failed")
        else if (skipmsg != "") { verdict = "SKIP"; msg = skipmsg }
        else msg = ""
        printf "%s %s %s\n", name, verdict, msg
        last = name; name = ""
    }
    /^Suite: / { suite = $2; next }
    /^  Test: / {
        name = suite "." $2; skipmsg = ""; failmsg = ""
        line = $0; sub(/^  Test: [^ ]* \.\.\./, "", line)
    }
    !/^  Test: / { line = $0 }
    name != "" {
        # The verdict starts its line; what follows it on that line comes from the teardown.
        if (line ~ /^passed/) { close_test("PASS"); next }
        if (line ~ /^FAILED/) { close_test("FAIL"); next }
        if (line ~ /\[SKIPPED\]/ && skipmsg == "") { skipmsg = line; sub(/.*\[SKIPPED\] */, "", skipmsg) }
        if (line ~ /\[FAILED\]/ && failmsg == "") { failmsg = line; sub(/.*\[FAILED\] */, "", failmsg) }
        next
    }
    /^    [0-9]+\. / && last != "" && !(last in asserted) {
        asserted[last] = 1; a = $0; sub(/^ *[0-9]+\. */, "", a); print last " ASSERT " a
    }
    END { if (name != "") printf "%s CRASH %s\n", name, "the suite ended during this test" }
    ' "$1"
}

if [ -n "${PARSE_ONLY:-}" ]; then
    parse "$PARSE_ONLY"
    exit 0
fi

# expected LUN TEST: prints the reason when the file lists TEST (for LUN or for every LUN).
expected() {
    [ -r "$EXPECTED" ] || return 1
    awk -v lun="$1" -v t="$2" '
        /^[ \t]*(#|$)/ { next }
        { k = $1; r = $0; sub(/^[^ \t]+[ \t]*/, "", r)
          if (k == t || k == lun ":" t) { print (r == "" ? "listed" : r); found = 1; exit } }
        END { exit !found }' "$EXPECTED"
}

run_lun() {  # run_lun LUN URL: runs the suite, prints the per-test list, sets SUMMARY_<lun>
    local lun=$1 url=$2 out="$WORK/$lun.out" res="$WORK/$lun.res" t0=$SECONDS rc=0 MP_URL=
    # The same URL again as the "multipath" one: the MultipathIO tests run over two sessions.
    [ "${MULTIPATH:-1}" = 1 ] && MP_URL=$url
    mkdir -p "$WORK/$lun"
    (cd "$WORK/$lun" && timeout --kill-after=10 "$TEST_TIMEOUT" stdbuf -o0 -e0 iscsi-test-cu --dataloss \
        -i "$INI" -I "$INI2" -t "$TESTS" "$url" $MP_URL) >"$out" 2>&1 || rc=$?
    local secs=$((SECONDS - t0))
    parse "$out" >"$res"
    # Tests of the family that never reported (a crash or a hang stopped the run).
    iscsi-test-cu -l 2>/dev/null | awk -F. -v t="$TESTS" '
        NF == 3 && (index($0 ".", t ".") == 1 || t == $1 || t == $1 "." $2) { print $2 "." $3 }' |
        sort -u >"$WORK/$lun.all"
    awk '$2 != "ASSERT" {print $1}' "$res" | sort -u >"$WORK/$lun.seen"
    comm -23 "$WORK/$lun.all" "$WORK/$lun.seen" | sed 's/$/ NOTRUN the suite stopped before it/' >>"$res"

    local pass=0 skip=0 fail=0 exp=0 new=0 fixed=0 name verdict msg why
    echo "--- $TARGET $lun: iscsi-test-cu -t $TESTS $url (${secs}s, exit $rc) ---"
    while read -r name verdict msg; do
        case "$verdict" in
        PASS) pass=$((pass + 1)); echo "PASS $lun $name"
              if why=$(expected "$lun" "$name"); then
                  fixed=$((fixed + 1)); echo "     (listed as expected to fail: $why; remove it from $(basename "$EXPECTED"))"
              fi ;;
        SKIP) skip=$((skip + 1)); echo "SKIP $lun $name ($msg)" ;;
        ASSERT) ;;
        *)
            fail=$((fail + 1))
            local detail=$msg a
            a=$(awk -v n="$name" '$1 == n && $2 == "ASSERT" { $1 = $2 = ""; sub(/^ +/, ""); print; exit }' "$res")
            [ -n "$a" ] && detail="$detail; $a"
            if why=$(expected "$lun" "$name"); then
                exp=$((exp + 1)); echo "FAIL $lun $name ($detail) [expected: $why]"
            else
                new=$((new + 1)); echo "FAIL $lun $name ($detail) [NEW]"
                echo "$lun:$name $verdict: $detail" >>"$WORK/new"
            fi ;;
        esac
    done <"$res"
    # CUnit's own count ("tests  Total Ran Passed Failed Inactive") must agree with the list.
    local cu_failed
    cu_failed=$(awk '$1 == "tests" && NF == 6 { print $5 }' "$out" | tail -n1)
    if [ -n "$cu_failed" ] && [ "$cu_failed" -ne "$(awk '$2 == "FAIL"' "$res" | wc -l)" ]; then
        echo "FAIL $lun (the list above disagrees with CUnit's count of $cu_failed failed tests: $out)"
        echo "$lun: parse: CUnit counted $cu_failed failed tests" >>"$WORK/new"
        new=$((new + 1))
    fi
    local line="$lun: $pass passed, $skip skipped, $fail failed ($exp expected, $new new) of $((pass + skip + fail)) in ${secs}s"
    [ "$fixed" -gt 0 ] && line="$line; $fixed listed as failing now pass"
    SUMMARIES+=("$line")
    NEW=$((NEW + new))
}

SUMMARIES=()
NEW=0
start_"$TARGET"
: >"$WORK/new"
for lun in $LUNS; do
    url_var="URL_$lun"
    [ -n "${!url_var:-}" ] || { echo "unknown LUN $lun (malloc, lvol)" >&2; exit 2; }
    run_lun "$lun" "${!url_var}"
done
if [ "$TARGET" = strata ] && ! kill -0 "$TGT_PID" 2>/dev/null; then
    echo "--- strata-tgt log ---"; cat "$WORK/tgt.log"
    SUMMARIES+=("strata-tgt exited during the run")
    NEW=$((NEW + 1))
fi
if [ "$WRITE_EXPECTED" = 1 ]; then
    echo "--- the failures of this run, in $(basename "$EXPECTED")'s format ---"
    for lun in $LUNS; do
        awk -v l="$lun" '$2 == "FAIL" || $2 == "CRASH" || $2 == "NOTRUN" {
            m = $0; sub(/^[^ ]+ [^ ]+ /, "", m); print l ":" $1 " " m }' "$WORK/$lun.res"
    done
fi
if [ "$NEW" -eq 0 ]; then
    echo "iscsi-test-cu: PASS ($TARGET; $(IFS=';'; echo "${SUMMARIES[*]}" | sed 's/;/; /g'); no new failure)"
    exit 0
fi
echo "iscsi-test-cu: FAIL ($TARGET; $(IFS=';'; echo "${SUMMARIES[*]}" | sed 's/;/; /g'); new failures:"
sed 's/^/  /' "$WORK/new"
echo ")"
exit 1
