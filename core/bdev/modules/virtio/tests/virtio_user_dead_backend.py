#!/usr/bin/env python3
"""A vhost-user back end killed under I/O: bdevperf (verify, virtio_blk over virtio-user) runs
against strata-tgt's vhost-blk controller, and strata-tgt is killed with SIGKILL two seconds in.
The driver must see the socket close, fail every I/O in flight, remove the bdev, and bdevperf
must end on its own within seconds (exit 1, failed I/O in its summary), never hang. On the real
scheduler (the simulator cannot wait on another process's death in a bounded number of steps).

usage: virtio_user_dead_backend.py BDEVPERF STRATA_TGT
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from virtio_user_vhost import start_vhost_blk_tgt  # noqa: E402


def main() -> int:
    bdevperf, tgt = sys.argv[1:3]
    with tempfile.TemporaryDirectory(prefix="strata_virtio_dead_", dir="/tmp") as d:
        log = open(os.path.join(d, "tgt.log"), "w+")
        t, sock = start_vhost_blk_tgt(tgt, d, log)
        try:
            if sock is None:
                return 1
            cfg = os.path.join(d, "client.json")
            with open(cfg, "w") as f:
                json.dump({"subsystems": [{"subsystem": "bdev", "config": [
                    {"method": "bdev_virtio_attach_controller",
                     "params": {"name": "VirtioBlk0", "trtype": "user", "traddr": sock,
                                "dev_type": "blk", "vq_count": 1, "vq_size": 64}}]}]}, f)
            cmd = [bdevperf, "-q", "16", "-o", "4096", "-w", "verify", "-t", "30", "-c", cfg,
                   "-m", "0x1"]
            print("+", " ".join(cmd), flush=True)
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(2)
            t.send_signal(signal.SIGKILL)
            t.wait()
            killed = time.monotonic()
            try:
                out, _ = p.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
                sys.stdout.write(out)
                print("FAIL: bdevperf still running 20 s after the back end died (hung I/O)")
                return 1
            took = time.monotonic() - killed
            out = out.replace("\r", "\n")
            sys.stdout.write(out[-3000:])
            if p.returncode == 0:
                print("FAIL: bdevperf exited 0 although its back end died under I/O")
                return 1
            if "device gone" not in out:
                print("FAIL: the driver did not report the device gone")
                return 1
            total = re.search(r"^\s*Total\s*:\s*([0-9.]+)\s+\S+\s+([0-9.]+)", out, re.M)
            if not total or float(total.group(1)) <= 0 or float(total.group(2)) <= 0:
                print("FAIL: expected I/O before the kill and failed I/O after it: "
                      f"{total.group(0) if total else 'no Total line'}")
                return 1
            if "miscompare" in out:
                print("FAIL: a miscompare (an I/O completed with wrong data instead of failing)")
                return 1
            print(f"OK: the back end died under I/O; in-flight I/O failed and bdevperf ended "
                  f"{took:.1f} s later")
        finally:
            if t.poll() is None:
                t.kill()
                t.wait()
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
