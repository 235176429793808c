#!/usr/bin/env bash
# ctest iscsi_test_cu_parse: run_iscsi_test_cu.sh reads iscsi-test-cu's verbose CUnit output
# right (testdata/cu_output.txt, cut from real runs against tgtd: a verdict followed by a
# teardown message on the same line, a "[FAILED]" message in a test that passed, a skip, a
# failure with several assertion lines, the run ending inside a test).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if diff -u "$here/testdata/cu_output.expected" \
    <(bash "$here/run_iscsi_test_cu.sh" --parse "$here/testdata/cu_output.txt"); then
    echo "iscsi-test-cu output parse: PASS"
else
    echo "iscsi-test-cu output parse: FAIL (expected - got +)"
    exit 1
fi
