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

# stage NAME CMD...: runs CMD with its output in build/logs/NAME.log and prints one line
# "[stage] NAME: PASS|FAIL (Ns)", the count lines of test runners, and the log tail on failure.
stage() {
    local name="$1"; shift
    local log="$STRATA_LOG_DIR/$name.log"
    local start=$SECONDS rc=0
    echo "[stage] $name: running ($*)"
    "$@" >"$log" 2>&1 || rc=$?
    local secs=$((SECONDS - start)) result=PASS
    [ "$rc" -eq 0 ] || result=FAIL
    echo "[stage] $name: $result (${secs}s)"
    # Counts from the runners CI readers look for.
    grep -E '^[0-9]+% tests passed|tests failed out of|^=+ .*(passed|failed|error).* in [0-9.]+s|^[0-9]+ (passed|failed)|^\[fuzz\]|^\[demo\]|^install-deps:|^hugepages|^vm:' "$log" || true
    if [ "$rc" -ne 0 ]; then
        echo "    --- last 60 lines of $log ---"
        tail -n 60 "$log" | sed 's/^/    /'
        STAGE_FAILURES=$((STAGE_FAILURES + 1))
    fi
    STAGE_RESULTS+=("$(printf '%-14s %-4s %5ss' "$name" "$result" "$secs")")
    return "$rc"
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

# Adds a stage's test counts (ctest and pytest closing lines in its log) to the totals.
TOTAL_PASSED=0
TOTAL_FAILED=0
count_tests() {
    local log="$STRATA_LOG_DIR/$1.log" line p f
    [ -f "$log" ] || return 0
    line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n1 || true)
    if [ -n "$line" ]; then
        f=$(echo "$line" | sed -E 's/.*passed, ([0-9]+) tests? failed out of ([0-9]+).*/\1/')
        p=$(echo "$line" | sed -E 's/.*passed, ([0-9]+) tests? failed out of ([0-9]+).*/\2/')
        TOTAL_PASSED=$((TOTAL_PASSED + p - f))
        TOTAL_FAILED=$((TOTAL_FAILED + f))
    fi
    line=$(grep -E '[0-9]+ passed|[0-9]+ failed' "$log" | grep -E ' in [0-9.]+s' | tail -n1 || true)
    if [ -n "$line" ]; then
        p=$(echo "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
        f=$(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 0)
        TOTAL_PASSED=$((TOTAL_PASSED + ${p:-0}))
        TOTAL_FAILED=$((TOTAL_FAILED + ${f:-0}))
    fi
}

summary() {
    echo "==== summary ===="
    echo "tests: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
    local line
    for line in "${STAGE_RESULTS[@]}"; do echo "  $line"; done
    if [ "$STAGE_FAILURES" -ne 0 ]; then
        echo "==== $STAGE_FAILURES stage(s) failed ===="
        return 1
    fi
    echo "==== all stages passed ===="
}
