#!/usr/bin/python3
"""ctest bdevperf_spdk_cli: bdevperf driven with SPDK bdevperf command lines.
- SPDK-style options (-q -o 4k -w -t -M -C -S -P -ll -f) under the simulator; --json-output
  parsed as SPDK's perform_tests result shape; the -ll histogram lines add up to the I/O count.
- -z: bdevperf waits for perform_tests on -r <socket>; the requests are the exact JSON SPDK's
  examples/bdev/bdevperf/bdevperf.py sends (io_size as a string, only the given params); a
  second run overrides the first run's parameters; a bad workload gets SPDK's error.
- scripts/plot-latency.py reads both the JSON and the -ll text (PNG only when matplotlib is
  installed).
Usage: bdevperf_spdk_cli.py <bdevperf> <config.json> <plot-latency.py>"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

BDEVPERF, CONFIG, PLOT = sys.argv[1:4]
failures = []
RESULT_KEYS = ["job", "core_mask", "workload", "status", "queue_depth", "io_size", "runtime", "iops",
               "mibps", "io_failed", "io_timeout", "avg_latency_us", "min_latency_us", "max_latency_us"]


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(args, timeout=60):
    return subprocess.run([BDEVPERF] + args, capture_output=True, text=True, timeout=timeout)


def check_shape(res, what, workload, njobs):
    check(isinstance(res.get("results"), list) and len(res["results"]) == njobs,
          "%s: %d results (%s)" % (what, njobs, len(res.get("results", []))))
    check(isinstance(res.get("core_count"), int) and res["core_count"] >= 1, what + ": core_count")
    for r in res.get("results", []):
        missing = [k for k in RESULT_KEYS if k not in r]
        check(not missing, "%s: job %s has SPDK's keys (missing %s)" % (what, r.get("job"), missing))
        check(r.get("workload") == workload and r.get("status") == "finished" and r.get("iops", 0) > 0,
              "%s: %s %s %s iops %s" % (what, r.get("job"), r.get("workload"), r.get("status"), r.get("iops")))


tmp = tempfile.mkdtemp(prefix="bdevperf-spdk-")
out_json = os.path.join(tmp, "out.json")

# 1. SPDK command line, randrw with -M, -C over two cores, -S/-P progress, -ll histogram.
p = run(["--sim", "--sim-step-ns", "2000", "-c", CONFIG, "-m", "0x3", "-C", "-q", "4", "-o", "4k", "-w", "randrw", "-M", "70",
         "-t", "1", "-S", "1", "-P", "2", "-ll", "--json-output", out_json])
check(p.returncode == 0, "randrw -C run exits 0 (%d: %s)" % (p.returncode, p.stderr.strip()[-300:]))
res = json.load(open(out_json)) if os.path.exists(out_json) else {}
check_shape(res, "randrw -C", "randrw", 4)  # 2 cores x 2 bdevs
check(all(r.get("percentage") == 70 for r in res.get("results", [])), "randrw: percentage 70 in every job")
check(res.get("core_count") == 2, "randrw -C: core_count 2")
check(sorted(r["core_mask"] for r in res.get("results", [])) == ["0x1", "0x1", "0x2", "0x2"],
      "randrw -C: each bdev on both cores")
check("EMA IOPS" in p.stdout, "-S -P prints the moving average")
check("Latency summary" in p.stdout and re.search(r"99\.00000% :\s+[\d.]+us", p.stdout) is not None,
      "-l summary has SPDK's percentile lines")
# The histogram buckets of each job add up to its I/O count (failed ones count too: none here).
for r in res.get("results", []):
    total = sum(b[2] for b in r["latency_histogram"]["buckets"])
    ios = round(r["iops"] * r["runtime"])
    check(abs(total - ios) <= 4 * 2, "job %s: histogram holds %d I/Os, ran %d" % (r["job"], total, ios))
bucket_lines = re.findall(r"^\s*([\d.]+) -\s+([\d.]+):\s+([\d.]+)%\s+\(\s*(\d+)\)$", p.stdout, re.M)
check(len(bucket_lines) > 0 and abs(float(bucket_lines[-1][2]) - 100.0) < 1e-3,
      "-ll prints SPDK's bucket lines ending at 100%% (%d lines)" % len(bucket_lines))

# 2. Without -C: one job per bdev, spread over the cores.
p = run(["--sim", "--sim-step-ns", "2000", "-c", CONFIG, "-m", "0x3", "-q", "4", "-o", "4096", "-w", "write", "-t", "1",
         "--json-output", "-"])
check(p.returncode == 0, "write run exits 0")
m = re.search(r"^\{.*^\}", p.stdout, re.M | re.S)
res = json.loads(m.group(0)) if m else {}
check_shape(res, "write", "write", 2)
check(sorted(r["core_mask"] for r in res.get("results", [])) == ["0x1", "0x2"], "write: one job per bdev, spread")
# verify: Malloc0 reads back what was written; Null0 returns zeros, so its job fails (SPDK:
# status "failed", exit code non-zero) while Malloc0's finishes.
p = run(["--sim", "--sim-step-ns", "2000", "-c", CONFIG, "-q", "4", "-o", "4096", "-w", "verify", "-t", "1", "--json-output", "-"])
m = re.search(r"^\{.*^\}", p.stdout, re.M | re.S)
res = json.loads(m.group(0)) if m else {}
status = {r["job"]: r["status"] for r in res.get("results", [])}
check(p.returncode != 0 and status == {"Malloc0": "finished", "Null0": "failed"},
      "verify: Malloc0 finished, Null0 (reads zeros) failed, exit non-zero (%s, %s)" % (p.returncode, status))
check(all("verify_range" in r for r in res.get("results", [])), "verify: verify_range present")

# 3. Bad command lines fail clearly.
p = run(["--sim", "--sim-step-ns", "2000", "-c", CONFIG, "-q", "8", "-o", "4k", "-w", "bogus", "-t", "1"])
check(p.returncode != 0 and "unknown workload" in p.stderr, "bad -w refused")
p = run(["--sim", "--sim-step-ns", "2000", "-c", CONFIG, "-q", "8", "-o", "4x", "-w", "read", "-t", "1"])
check(p.returncode != 0 and "Invalid IO size" in p.stderr, "bad -o refused")
p = run(["--sim", "--sim-step-ns", "2000", "-c", CONFIG, "-q", "8", "-o", "4k", "-w", "read", "-t", "1", "-P", "3"])
check(p.returncode != 0 and "-S" in p.stderr, "-P without -S refused")
p = run(["--sim", "-c", CONFIG, "-j", "bdevperf.conf"])
check(p.returncode != 0 and "job config files are not supported yet" in p.stderr, "-j refused with a message")

# 4. -z: wait for perform_tests, as SPDK's bdevperf.py sends it.
sock = os.path.join(tmp, "bdevperf.sock")


def rpc(method, params=None, rid=1, timeout=30):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(sock)
    req = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params:
        req["params"] = params
    s.sendall(json.dumps(req).encode())
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        try:
            reply = json.loads(buf)
            break
        except ValueError:
            continue
    s.close()
    return reply


proc = subprocess.Popen([BDEVPERF, "-z", "-r", sock, "-c", CONFIG, "-T", "Malloc0", "-q", "4", "-o", "4096",
                         "-w", "randread", "-t", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
try:
    for _ in range(500):
        if os.path.exists(sock):
            break
        time.sleep(0.02)
    check(os.path.exists(sock), "-z: RPC socket appears")
    # bdevperf.py perform_tests with no arguments: the command line's parameters.
    r = rpc("perform_tests")
    check_shape(r.get("result", {}), "-z perform_tests (command line params)", "randread", 1)
    # bdevperf.py perform_tests -q 8 -o 8192 -t 1 -w randrw -M 30
    r = rpc("perform_tests", {"queue_depth": 8, "time_in_sec": 1, "workload_type": "randrw", "io_size": "8192",
                              "rw_percentage": 30}, rid=2)
    res = r.get("result", {})
    check_shape(res, "-z perform_tests -w randrw", "randrw", 1)
    jr = (res.get("results") or [{}])[0]
    check(jr.get("queue_depth") == 8 and jr.get("io_size") == 8192 and jr.get("percentage") == 30,
          "-z: parameters applied (%s)" % {k: jr.get(k) for k in ("queue_depth", "io_size", "percentage")})
    r = rpc("perform_tests", {"workload_type": "bogus"}, rid=3)
    check(r.get("error", {}).get("code") == -32700 and "Invalid parameters" in r["error"].get("message", ""),
          "-z: bad workload -> SPDK's -32700 Invalid parameters (%s)" % r.get("error"))
    # Parameters persist: the next bare run is randrw at depth 8 again.
    r = rpc("perform_tests", rid=4)
    jr = (r.get("result", {}).get("results") or [{}])[0]
    check(jr.get("workload") == "randrw" and jr.get("queue_depth") == 8, "-z: parameters persist across runs")
finally:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
check(proc.returncode == 0, "-z: SIGINT stops bdevperf with exit 0 (%s)" % proc.returncode)

# 5. The plot script reads the JSON and SPDK's -ll text.
p = subprocess.run(["/usr/bin/python3", PLOT, "--summary", out_json], capture_output=True, text=True, timeout=60)
check(p.returncode == 0 and p.stdout.count("job ") == 4, "plot-latency.py reads --json-output (%s)" % p.stderr[-200:])
txt = os.path.join(tmp, "out.txt")
p = run(["--sim", "--sim-step-ns", "2000", "-c", CONFIG, "-T", "Malloc0", "-q", "4", "-o", "4k", "-w", "randread", "-t", "1", "-ll"])
open(txt, "w").write(p.stdout)
p = subprocess.run(["/usr/bin/python3", PLOT, "--summary", txt], capture_output=True, text=True, timeout=60)
check(p.returncode == 0 and p.stdout.count("job ") == 1, "plot-latency.py reads -ll text")
try:
    import matplotlib  # noqa: F401
    png = os.path.join(tmp, "lat.png")
    p = subprocess.run(["/usr/bin/python3", PLOT, out_json, "-o", png], capture_output=True, text=True, timeout=120)
    check(p.returncode == 0 and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n", "plot-latency.py writes a PNG")
except ImportError:
    print("skip PNG check: python3-matplotlib is not installed")

if failures:
    print("%d check(s) failed" % len(failures))
    sys.exit(1)
print("all checks passed")
