#!/usr/bin/env python3
"""bdevperf through the virtio_blk bdev over virtio-user against Strata's own vhost-blk target
(strata-tgt), both ends on packed virtqueues: strata-tgt serves a malloc bdev from a vhost-blk
controller created with packed_ring, bdevperf attaches with packed_ring and a 16-entry queue
(so the run wraps the ring thousands of times) and runs WORKLOAD (verify: writes a pattern,
reads it back and compares). Checks the summary (IOPS > 0, no failures, no miscompares) and
that the target started its queue as a packed ring (its log).

usage: virtio_user_vhost.py BDEVPERF STRATA_TGT WORKLOAD [SECONDS] [QD] [VQ_SIZE]
"""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from virtio_user_qsd import check_bdevperf  # noqa: E402


def start_vhost_blk_tgt(tgt, d, log, packed_ring=False):
    """Starts strata-tgt in directory d serving a 8 MiB malloc bdev from vhost-blk controller
    vhost.0 (packed_ring as given), its output in log. Returns (process, socket path), the path
    None (after printing why) when the socket did not appear."""
    sock = os.path.join(d, "vhost.0")
    tcfg = os.path.join(d, "tgt.json")
    params = {"ctrlr": "vhost.0", "dev_name": "Malloc0"}
    if packed_ring:
        params["packed_ring"] = True
    with open(tcfg, "w") as f:
        json.dump({"subsystems": [
            {"subsystem": "bdev", "config": [
                {"method": "bdev_malloc_create",
                 "params": {"name": "Malloc0", "num_blocks": 16384, "block_size": 512}}]},
            {"subsystem": "vhost_blk", "config": [
                {"method": "vhost_create_blk_controller", "params": params}]}]}, f)
    t = subprocess.Popen([tgt, "-c", tcfg, "-r", os.path.join(d, "rpc.sock"), "-S", d,
                          "--log-level", "INFO"], stdout=log, stderr=subprocess.STDOUT)
    for _ in range(200):
        if os.path.exists(sock) or t.poll() is not None:
            break
        time.sleep(0.05)
    if not os.path.exists(sock):
        log.seek(0)
        print(f"FAIL: strata-tgt did not create {sock}: {log.read()[-2000:]}")
        return t, None
    return t, sock


def main() -> int:
    bdevperf, tgt, workload = sys.argv[1:4]
    seconds = sys.argv[4] if len(sys.argv) > 4 else "2"
    qd = sys.argv[5] if len(sys.argv) > 5 else "8"
    vq_size = int(sys.argv[6]) if len(sys.argv) > 6 else 16
    with tempfile.TemporaryDirectory(prefix="strata_virtio_vhost_", dir="/tmp") as d:
        log = open(os.path.join(d, "tgt.log"), "w+")
        t, sock = start_vhost_blk_tgt(tgt, d, log, packed_ring=True)
        try:
            if sock is None:
                return 1
            cfg = os.path.join(d, "config.json")
            params = {"name": "VirtioBlk0", "trtype": "user", "traddr": sock, "dev_type": "blk",
                      "vq_count": 1, "vq_size": vq_size, "packed_ring": True}
            with open(cfg, "w") as f:
                json.dump({"subsystems": [{"subsystem": "bdev", "config": [
                    {"method": "bdev_virtio_attach_controller", "params": params}]}]}, f)
            cmd = [bdevperf, "-q", qd, "-o", "4096", "-w", workload, "-t", seconds, "-c", cfg,
                   "-m", "0x1"]
            print("+", " ".join(cmd), flush=True)
            try:
                p = subprocess.run(cmd, capture_output=True, text=True,
                                   timeout=float(seconds) + 40)
            except subprocess.TimeoutExpired as e:
                sys.stdout.write(e.stdout.decode() if isinstance(e.stdout, bytes) else
                                 (e.stdout or ""))
                print(f"FAIL: bdevperf did not finish within {float(seconds) + 40:.0f} s")
                return 1
            iops = check_bdevperf(p)
            log.seek(0)
            tlog = log.read()
            if iops is None:
                print(f"strata-tgt log tail:\n{tlog[-2000:]}")
                return 1
            if "packed ring" not in tlog:
                print(f"FAIL: strata-tgt did not start a packed queue:\n{tlog[-2000:]}")
                return 1
            if "broken" in tlog:
                print(f"FAIL: strata-tgt broke a queue:\n{tlog[-2000:]}")
                return 1
            print(f"OK: virtio-user {workload} on packed rings of {vq_size}: {iops:.0f} IOPS")
        finally:
            t.terminate()
            try:
                t.wait(timeout=10)
            except subprocess.TimeoutExpired:
                t.kill()
                t.wait()
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
