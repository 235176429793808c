#!/usr/bin/env python3
"""Strata's virtio-user client (bdevperf, virtio_blk bdev, trtype user) against two vhost-user-blk
back ends on one host: Strata's own vhost-blk target (strata-tgt) and QEMU's qemu-storage-daemon.
Both serve the same file in /dev/shm; the client runs on CPU 0, the back end on CPU 1 (taskset).
4 KiB random read, queue depth 128, one virtqueue of 256 entries, alternating back ends.

Prints per run: IOPS, and the CPU each side spent per I/O (user + system time from /proc over the
timed run, times the CPU clock from /proc/cpuinfo: "cycles" per I/O without hardware counters,
which this VM lacks). A polling side (bdevperf's reactor, strata-tgt's) spends its whole core
whatever the load, so its figure is its core's cycles divided by the I/O it served.

usage: virtio_user_perf.py BUILD_DIR [SECONDS] [RUNS]
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_hz():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) * 1e6
    return 0.0


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def wait_socket(path, proc, what):
    for _ in range(400):
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit("%s did not create %s" % (what, path))


def start_strata(tgt, d, image, sock):
    cfg = os.path.join(d, "tgt.json")
    with open(cfg, "w") as f:
        json.dump({"subsystems": [
            {"subsystem": "bdev", "config": [
                {"method": "bdev_aio_create",
                 "params": {"name": "Disk0", "filename": image, "block_size": 512}}]},
            {"subsystem": "vhost_blk", "config": [
                {"method": "vhost_create_blk_controller",
                 "params": {"ctrlr": os.path.basename(sock), "dev_name": "Disk0"}}]}]}, f)
    p = subprocess.Popen(["taskset", "-c", "1", tgt, "-c", cfg, "-r", os.path.join(d, "rpc.sock"),
                          "-S", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_socket(sock, p, "strata-tgt")
    return p


def start_qsd(d, image, sock):
    qsd = shutil.which("qemu-storage-daemon")
    if qsd is None:
        return None
    p = subprocess.Popen(["taskset", "-c", "1", qsd, "--blockdev",
                          "driver=file,node-name=f,filename=%s,cache.direct=off" % image,
                          "--export", "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,"
                          "addr.path=%s,writable=on,num-queues=1" % sock],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_socket(sock, p, "qemu-storage-daemon")
    return p


def run_client(bdevperf, d, sock, seconds, server):
    cfg = os.path.join(d, "client.json")
    with open(cfg, "w") as f:
        json.dump({"subsystems": [{"subsystem": "bdev", "config": [
            {"method": "bdev_virtio_attach_controller",
             "params": {"name": "VirtioBlk0", "trtype": "user", "traddr": sock,
                        "dev_type": "blk", "vq_count": 1, "vq_size": 256}}]}]}, f)
    cmd = ["taskset", "-c", "0", bdevperf, "-q", "128", "-o", "4096", "-w", "randread", "-t",
           str(seconds), "-c", cfg, "-m", "0x1"]
    s0 = cpu_seconds(server.pid)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # The client's own CPU over its life (start-up included: a few ms against the run).
    _, status, usage = os.wait4(p.pid, 0)
    out = p.stdout.read()
    s1 = cpu_seconds(server.pid)
    total = [l for l in out.replace("\r", "\n").splitlines() if l.strip().startswith("Total")]
    if os.waitstatus_to_exitcode(status) != 0 or not total:
        raise SystemExit("bdevperf failed:\n" + out[-2000:])
    iops = float(total[-1].split()[2])
    return iops, usage.ru_utime + usage.ru_stime, s1 - s0, " ".join(cmd)


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build/dev"
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    bdevperf = os.path.join(build, "core/apps/bdevperf")
    tgt = os.path.join(build, "core/apps/strata-tgt")
    hz = cpu_hz()
    print("virtio_user_perf: %s, %d s runs, 4 KiB randread QD 128, client CPU 0, back end CPU 1,"
          " %.0f MHz, load average %.1f" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                          seconds, hz / 1e6, os.getloadavg()[0]))
    print("%-22s %10s %16s %16s" % ("back end", "IOPS", "client cyc/IO", "back end cyc/IO"))
    with tempfile.TemporaryDirectory(prefix="strata_vuperf_", dir="/tmp") as d:
        image = os.path.join("/dev/shm", "strata_vuperf_%d.img" % os.getpid())
        with open(image, "wb") as f:
            f.write(os.urandom(1 << 20) * 64)  # 64 MiB, in the page cache (tmpfs)
        try:
            for run in range(runs):
                for name, start in (("strata-tgt vhost-blk", lambda s: start_strata(tgt, d, image, s)),
                                    ("qemu-storage-daemon", lambda s: start_qsd(d, image, s))):
                    sock = os.path.join(d, "vhost.%d" % run)
                    if os.path.exists(sock):
                        os.unlink(sock)
                    server = start(sock)
                    if server is None:
                        print("%-22s %10s" % (name, "skipped (not installed)"))
                        continue
                    try:
                        iops, ccpu, scpu, cmd = run_client(bdevperf, d, sock, seconds, server)
                    finally:
                        server.terminate()
                        server.wait(timeout=20)
                    n = iops * seconds
                    print("%-22s %10.0f %16.0f %16.0f" % (name, iops, ccpu * hz / n, scpu * hz / n))
            print("client: " + re.sub(r"/tmp/strata_vuperf_\w+", "DIR", cmd))
        finally:
            os.unlink(image)


if __name__ == "__main__":
    main()
