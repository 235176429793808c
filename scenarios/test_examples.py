"""The examples shipped in bindings/python/examples run and say what they should (ci/demo runs
them too)."""

import os
import subprocess
import sys

_EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "bindings", "python", "examples")


def test_crash_demo(seed):
    out = subprocess.run([sys.executable, os.path.join(_EXAMPLES, "crash_demo.py"),
                          "--seed", str(seed % 2**32)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all 16 flushed writes intact" in out.stdout
    assert "NVMe status sct 0x2 sc 0x81" in out.stdout
