#!/usr/bin/env python3
"""bdevperf through the virtio_blk bdev over virtio-user against QEMU's qemu-storage-daemon
(its vhost-user-blk export of a file): starts the daemon on a temp socket, writes a JSON config
with bdev_virtio_attach_controller, runs bdevperf (verify: writes a pattern, reads it back and
compares), checks the summary (IOPS > 0, no failures, no miscompares), stops the daemon.

usage: virtio_user_qsd.py BDEVPERF WORKLOAD [SECONDS] [QD] [VQ_COUNT CORE_MASK]
Exits 77 (skipped, with the reason) where /usr/bin/qemu-storage-daemon is absent
(ci/install-deps installs it: qemu-system-common), 1 then under STRATA_REQUIRE_QSD=1.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

QSD = os.environ.get("STRATA_QSD", "/usr/bin/qemu-storage-daemon")


def check_bdevperf(p: subprocess.CompletedProcess):
    """Prints bdevperf's output and checks its VirtioBlk0 rows: IOPS > 0, no failed I/O, no
    miscompare. Returns the total IOPS, or None after printing why not."""
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    if p.returncode != 0:
        print(f"FAIL: bdevperf exited {p.returncode}")
        return None
    rows = re.findall(r"^\s*VirtioBlk0\s*:\s*\S+\s+([0-9.]+)\s+\S+\s+([0-9.]+)",
                      p.stdout, re.M)
    if not rows or any(float(iops) <= 0 for iops, _ in rows):
        print(f"FAIL: expected VirtioBlk0 job(s) with IOPS, got {rows}")
        return None
    if any(float(fail) != 0 for _, fail in rows):
        print(f"FAIL: failed I/O: {rows}")
        return None
    if "miscompare" in p.stdout + p.stderr:
        print("FAIL: miscompares")
        return None
    return sum(float(i) for i, _ in rows)


def main() -> int:
    bdevperf, workload = sys.argv[1:3]
    seconds = sys.argv[3] if len(sys.argv) > 3 else "2"
    qd = sys.argv[4] if len(sys.argv) > 4 else "32"
    vq_count = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    mask = sys.argv[6] if len(sys.argv) > 6 else "0x1"
    if not os.access(QSD, os.X_OK):
        if os.environ.get("STRATA_REQUIRE_QSD", "").startswith("1"):
            print(f"FAIL: STRATA_REQUIRE_QSD=1 but {QSD} is missing")
            return 1
        print(f"SKIP: {QSD} is missing (install qemu-system-common; ci/install-deps does)")
        return 77
    with tempfile.TemporaryDirectory(prefix="strata_virtio_qsd_", dir="/tmp") as d:
        img = os.path.join(d, "disk.img")
        with open(img, "wb") as f:
            f.write(bytes(64 << 20))
        sock = os.path.join(d, "vhost.sock")
        qsd = subprocess.Popen(
            [QSD, "--blockdev", f"driver=file,node-name=f,filename={img},cache.direct=off",
             "--export", f"type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path={sock},"
                         f"writable=on,num-queues={vq_count}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            for _ in range(200):
                if os.path.exists(sock) or qsd.poll() is not None:
                    break
                time.sleep(0.05)
            if not os.path.exists(sock):
                out = qsd.communicate(timeout=5)[0] if qsd.poll() is not None else ""
                print(f"FAIL: qemu-storage-daemon did not create {sock}: {out}")
                return 1
            cfg = os.path.join(d, "config.json")
            params = {"name": "VirtioBlk0", "trtype": "user", "traddr": sock, "dev_type": "blk",
                      "vq_count": vq_count, "vq_size": 256}
            with open(cfg, "w") as f:
                json.dump({"subsystems": [{"subsystem": "bdev", "config": [
                    {"method": "bdev_virtio_attach_controller", "params": params}]}]}, f)
            cmd = [bdevperf, "-q", qd, "-o", "4096", "-w", workload, "-t", seconds, "-c", cfg,
                   "-m", mask]
            print("+", " ".join(cmd), flush=True)
            try:
                p = subprocess.run(cmd, capture_output=True, text=True,
                                   timeout=float(seconds) + 40)
            except subprocess.TimeoutExpired as e:
                sys.stdout.write(e.stdout.decode() if isinstance(e.stdout, bytes) else
                                 (e.stdout or ""))
                print(f"FAIL: bdevperf did not finish within {float(seconds) + 40:.0f} s "
                      "(I/O lost by the back end?)")
                return 1
            iops = check_bdevperf(p)
            if iops is None:
                return 1
            print(f"OK: virtio-user {workload} {iops:.0f} IOPS")
        finally:
            qsd.terminate()
            try:
                qsd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                qsd.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
