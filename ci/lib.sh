# Shared helpers for the ci/ scripts. Source it, do not run it.
STRATA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export STRATA_ROOT
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.ccache}"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
# Paths relative to the checkout in the cache keys: a clean clone elsewhere reuses the cache.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$STRATA_ROOT}"
STRATA_JOBS="${STRATA_JOBS:-$(nproc)}"
STRATA_LOG_DIR="${STRATA_LOG_DIR:-$STRATA_ROOT/build/logs}"
mkdir -p "$STRATA_LOG_DIR"
STAGE_RESULTS=()
STAGE_FAILURES=0

# Seconds each stage may take on a fresh machine (cold: no ccache, no packages), from the cold
# figures in docs/performance.md ("CI time budget") plus a little room. Over budget prints a
# WARNING line, it does not fail: the budgets keep the default run well inside CI's 90 minutes
# while later issues add stages (ci_budget_total sums what a run will do).
declare -A STAGE_BUDGET=(
    [install-deps]=540 [hugepages]=30 [build-dev]=780 [ctest]=300 [ctest-long]=300
    [ceph]=60 [pytest]=180 [swarm]=150 [vm]=180 [build-asan]=1200 [ctest-asan]=480 [build-tsan]=330
    [ctest-tsan]=90 [build-fuzz]=600 [fuzz-smoke]=340
)
CI_LIMIT_SECONDS=5400
STAGE_OVER_BUDGET=0

# stage NAME CMD...: runs CMD with its output in build/logs/NAME.log and prints one line
# "[stage] NAME: PASS|FAIL (Ns, budget Bs)", the count lines of test runners, a WARNING line
# when over budget, and the log tail on failure.
stage() {
    local name="$1"; shift
    local log="$STRATA_LOG_DIR/$name.log"
    local start=$SECONDS rc=0
    echo "[stage] $name: running ($*)"
    "$@" >"$log" 2>&1 || rc=$?
    local secs=$((SECONDS - start)) result=PASS budget="${STAGE_BUDGET[$name]:-}"
    [ "$rc" -eq 0 ] || result=FAIL
    if [ -n "$budget" ]; then
        echo "[stage] $name: $result (${secs}s, budget ${budget}s, $(disk_free) free)"
    else
        echo "[stage] $name: $result (${secs}s, no budget: add one to STAGE_BUDGET in ci/lib.sh)"
    fi
    # Counts from the runners CI readers look for.
    grep -E '^[0-9]+% tests passed|tests failed out of|^=+ .*(passed|failed|error).* in [0-9.]+s|^[0-9]+ (passed|failed)|^\[fuzz\]|^\[demo\]|^install-deps:|^hugepages|^vm:' "$log" || true
    if [ -n "$budget" ] && [ "$secs" -gt "$budget" ]; then
        echo "[stage] $name: WARNING: ${secs}s is over its budget of ${budget}s" \
             "(ci/lib.sh STAGE_BUDGET)"
        STAGE_OVER_BUDGET=$((STAGE_OVER_BUDGET + 1))
    fi
    if [ "$rc" -ne 0 ]; then
        echo "    --- last 60 lines of $log ---"
        tail -n 60 "$log" | sed 's/^/    /'
        STAGE_FAILURES=$((STAGE_FAILURES + 1))
    fi
    STAGE_RESULTS+=("$(printf '%-14s %-4s %5ss of %5ss' "$name" "$result" "$secs" "${budget:--}")")
    return "$rc"
}

# disk_free: the space left where the build trees live, e.g. "17G". A full disk fails a build
# with "No space left on device" in whatever stage it reaches; this tells which stage filled it.
disk_free() {
    df -h --output=avail "$STRATA_ROOT/build" 2>/dev/null | tail -n 1 | tr -d ' '
}

# prune_tree PRESET: under CI (CI set, or STRATA_CI_PRUNE=1) deletes build/PRESET once the
# stages that use it are done. A CI run is a one-shot clone; its trees (dev ~7 GB, asan ~4 GB)
# together with the ccache filled the CI host's disk once. STRATA_CI_PRUNE=0 keeps them.
prune_tree() {
    local prune="${STRATA_CI_PRUNE:-}"
    [ -n "$prune" ] || { [ -n "${CI:-}" ] && prune=1 || prune=0; }
    [ "$prune" = 1 ] || return 0
    rm -rf "${STRATA_ROOT:?}/build/$1"
    echo "[stage] pruned build/$1 ($(disk_free) free)"
}

# ci_budget_total STAGE...: the sum of those stages' budgets.
ci_budget_total() {
    local total=0 s
    for s in "$@"; do total=$((total + ${STAGE_BUDGET[$s]:-0})); done
    echo "$total"
}

# not_run NAME WHY: records a stage that could not run because an earlier one failed.
not_run() {
    echo "[stage] $1: NOT RUN ($2)"
    STAGE_RESULTS+=("$(printf '%-14s %-4s' "$1" "SKIP") ($2)")
}

# Stages listed in STRATA_CI_SKIP (space separated) are skipped, for local runs.
skipped() {
    case " ${STRATA_CI_SKIP:-} " in *" $1 "*) echo "[stage] $1: SKIPPED (STRATA_CI_SKIP)"; return 0 ;; esac
    return 1
}

# Adds a stage's test counts (ctest and pytest closing lines in its log) to the totals and prints
# them, naming the skipped tests: a skip is not a pass.
#   ctest: "80% tests passed, 1 tests failed out of 5" counts its skipped tests (GTEST_SKIP through
#   SKIP_REGULAR_EXPRESSION or SKIP_RETURN_CODE) as passed; they are listed as "(Skipped)" under
#   "The following tests did not run:" (where "(Disabled)" ones are not counted at all).
#   pytest: "3 passed, 1 failed, 2 skipped, 1 error in 4.20s" (an error counts as failed).
TOTAL_PASSED=0
TOTAL_FAILED=0
TOTAL_SKIPPED=0
count_tests() {
    local log="$STRATA_LOG_DIR/$1.log" line n f s p names
    [ -f "$log" ] || return 0
    line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n1 || true)
    if [ -n "$line" ]; then
        f=$(echo "$line" | sed -E 's/.*passed, ([0-9]+) tests? failed out of ([0-9]+).*/\1/')
        n=$(echo "$line" | sed -E 's/.*passed, ([0-9]+) tests? failed out of ([0-9]+).*/\2/')
        names=$(ctest_skipped "$log")
        s=0
        [ -n "$names" ] && s=$(echo "$names" | wc -l)
        p=$((n - f - s))
        echo "    $1: $p passed, $f failed, $s skipped (ctest)"
        if [ -n "$names" ]; then
            printf '%s\n' "$names" | sed -n '1,20s/^/      skipped: /p'
            if [ "$s" -gt 20 ]; then echo "      ... and $((s - 20)) more (build/logs/$1.log)"; fi
        fi
        TOTAL_PASSED=$((TOTAL_PASSED + p))
        TOTAL_FAILED=$((TOTAL_FAILED + f))
        TOTAL_SKIPPED=$((TOTAL_SKIPPED + s))
        return 0
    fi
    line=$(grep -E '[0-9]+ (passed|failed|skipped|errors?)' "$log" | grep -E ' in [0-9.]+s' \
        | tail -n1 || true)
    if [ -n "$line" ]; then
        p=$(pytest_count "$line" passed)
        f=$(( $(pytest_count "$line" failed) + $(pytest_count "$line" 'errors?') ))
        s=$(pytest_count "$line" skipped)
        echo "    $1: $p passed, $f failed, $s skipped (pytest)"
        TOTAL_PASSED=$((TOTAL_PASSED + p))
        TOTAL_FAILED=$((TOTAL_FAILED + f))
        TOTAL_SKIPPED=$((TOTAL_SKIPPED + s))
    fi
    return 0
}

# ctest_skipped LOG: the names of the tests ctest reports "(Skipped)", one a line.
ctest_skipped() {
    awk '/^The following tests did not run:/ { on = 1; next }
         on && /^[[:space:]]*$/ { on = 0 }
         on && / \(Skipped\)$/ {
             sub(/^[[:space:]]*[0-9]+ - /, ""); sub(/ \(Skipped\)$/, ""); print
         }' "$1"
}

# pytest_count LINE WORD: the number before WORD (a regex) in pytest's closing line, else 0.
pytest_count() {
    local n
    n=$(echo "$1" | grep -oE "[0-9]+ $2\b" | grep -oE '^[0-9]+' | head -n1 || true)
    echo "${n:-0}"
}

summary() {
    echo "==== summary ===="
    echo "tests: $TOTAL_PASSED passed, $TOTAL_FAILED failed, $TOTAL_SKIPPED skipped"
    # The plain count line earlier readers of the CI log parse (skipped tests are not in it).
    echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
    local line
    for line in "${STAGE_RESULTS[@]}"; do echo "  $line"; done
    if [ "$STAGE_OVER_BUDGET" -ne 0 ]; then
        echo "==== WARNING: $STAGE_OVER_BUDGET stage(s) over budget" \
             "(docs/performance.md, CI time budget) ===="
    fi
    if [ "$STAGE_FAILURES" -ne 0 ]; then
        echo "==== $STAGE_FAILURES stage(s) failed ===="
        return 1
    fi
    echo "==== all stages passed ===="
}

# uring_unavailable: prints why io_uring cannot run here, nothing if it can. It makes the call
# the uring module and its tests make (io_uring_queue_init, probe_ring in
# core/bdev/modules/uring/uring.cpp) from a tiny liburing program built in build/uring-probe.
uring_unavailable() {
    local d="$STRATA_ROOT/build/uring-probe"
    mkdir -p "$d"
    cat >"$d/probe.c" <<'PROBE'
#include <liburing.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    struct io_uring ring;
    int rc = io_uring_queue_init(2, &ring, 0);
    if (rc < 0) {
        printf("io_uring is unavailable: %s\n", strerror(-rc));
        return 1;
    }
    io_uring_queue_exit(&ring);
    return 0;
}
PROBE
    if ! cc -o "$d/probe" "$d/probe.c" -luring >"$d/cc.log" 2>&1; then
        echo "cannot build the io_uring probe (liburing-dev missing? $d/cc.log)"
        return 0
    fi
    local why
    why=$("$d/probe" 2>&1) || {
        local sysctl=/proc/sys/kernel/io_uring_disabled
        [ -r "$sysctl" ] && why="$why (kernel.io_uring_disabled=$(cat "$sysctl"))"
        echo "${why:-io_uring probe failed}"
    }
    return 0
}
