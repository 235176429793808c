"""A capture of an NVMe/TCP run dissects cleanly with tshark (issue 14): runs ci/nvmf-pcap-check.

test_pcap_check_self_test: a synthetic NVMe/TCP exchange must dissect cleanly, and one malformed
PDU in it must be reported (the check can fail). test_strata_tcp_capture_is_clean: strata-tgt and
Strata's initiator (identify, bdevperf verify with and without digests) on loopback, captured and
dissected; skipped while the binaries have no NVMe/TCP. Both skip without tshark or root.
"""

import os
import subprocess

import pytest

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CHECK = os.path.join(_REPO, "ci", "nvmf-pcap-check")


def _run(*args):
    p = subprocess.run(["/usr/bin/python3", _CHECK, *args], capture_output=True, text=True,
                       timeout=600)
    line = (p.stdout.strip().splitlines() or ["(no output)"])[-1]
    if line.startswith("nvmf-pcap: SKIP"):
        pytest.skip(line)
    assert p.returncode == 0 and line.startswith("nvmf-pcap: PASS"), p.stdout + p.stderr
    return line


def test_pcap_check_self_test():
    line = _run("--self-test")
    assert "malformed PDU reported" in line


def test_strata_tcp_capture_is_clean():
    line = _run()
    assert "none malformed" in line
