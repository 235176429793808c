#!/usr/bin/env bash
# gtest_whole.sh EXE [ARGS...]: runs a GoogleTest executable registered as one ctest
# (strata_gtest_whole_test in StrataHelpers.cmake) with its output as is, and exits 77, the
# test's SKIP_RETURN_CODE, when it passed with at least one skipped test (gtest exits 0 then, and
# ctest would count the skip as a pass). Any other exit status is the executable's.
set -uo pipefail
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
"$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 0 ] && grep -qE '^\[  SKIPPED \] [0-9]+ tests?, listed below' "$out"; then
    echo "gtest_whole.sh: passed with skipped tests: reported to ctest as skipped (exit 77)"
    exit 77
fi
exit "$rc"
