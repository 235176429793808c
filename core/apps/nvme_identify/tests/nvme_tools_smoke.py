#!/usr/bin/env python3
"""Smoke test of strata-nvme-identify and strata-nvme-perf against emulated controllers
(--env sim): the output carries the nvme-cli / SPDK perf fields, JSON parses, bad input gets a
clear error and a non-zero exit. Usage: nvme_tools_smoke.py IDENTIFY PERF"""
import json
import subprocess
import sys

IDENTIFY, PERF = sys.argv[1], sys.argv[2]
failures = []


def run(args, timeout=120):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def check(cond, what, out=""):
    if not cond:
        failures.append(what)
        print("FAIL: %s\n%s" % (what, out[-3000:]))
    else:
        print("ok: %s" % what)


# identify, text: nvme-cli field names, two namespaces with their formats in use.
rc, out, err = run([IDENTIFY, "--emulate", "ns=1:size=1G:bs=512,ns=2:size=256M:bs=4096"])
check(rc == 0, "identify exits 0", out + err)
for field in ["vid", "ssvid", "sn", "mn", "fr", "rab", "ieee", "cmic", "mdts", "cntlid", "ver",
              "oacs", "nn", "oncs", "vwc", "sgls", "subnqn"]:
    check(any(line.split(":")[0].strip() == field for line in out.splitlines()),
          "id-ctrl field %s" % field, out)
check("NVME Identify Controller:" in out, "id-ctrl header", out)
check("NVME Identify Namespace 1:" in out and "NVME Identify Namespace 2:" in out,
      "both namespaces", out)
check("nsze    : 0x200000" in out, "ns 1 nsze (1 GiB / 512)", out)
check("nsze    : 0x10000" in out, "ns 2 nsze (256 MiB / 4096)", out)
check(any(l.startswith("lbaf") and "lbads:9" in l and "(in use)" in l for l in out.splitlines()),
      "512-byte format in use", out)
check(any(l.startswith("lbaf") and "lbads:12" in l and "(in use)" in l for l in out.splitlines()),
      "4096-byte format in use", out)
check("vid       : 0x1b36" in out, "vid of the model", out)

# identify, JSON.
rc, out, err = run([IDENTIFY, "-o", "json", "--emulate", "ns=1:size=64M:bs=4096", "-r",
                    "trtype:PCIe traddr:0000:01:00.0"])
check(rc == 0, "identify json exits 0", out + err)
try:
    doc = json.loads(out)
    c = doc["controllers"][0]
    check(c["address"] == "0000:01:00.0", "json address", out)
    check(c["controller"]["vid"] == 0x1b36 and "sgls" in c["controller"], "json id-ctrl", out)
    ns = c["namespaces"][0]
    check(ns["nsid"] == 1 and ns["nsze"] == 64 * 1024 * 1024 // 4096, "json id-ns nsze", out)
    check(ns["lbafs"][ns["flbas"] & 0xF]["ds"] == 12, "json lbaf in use", out)
except (ValueError, KeyError, IndexError) as e:
    check(False, "json parses: %s" % e, out)

# identify: two controllers, and errors.
rc, out, err = run([IDENTIFY, "--emulate", "ns=1:size=1M;ns=1:size=2M", "--controller-only"])
check(rc == 0 and "=== 0000:01:00.0 ===" in out and "=== 0000:01:01.0 ===" in out,
      "two emulated controllers", out + err)
rc, out, err = run([IDENTIFY, "-r", "0000:07:00.0"])
check(rc != 0 and "no NVMe controller at 0000:07:00.0" in err, "missing controller error", err)
rc, out, err = run([IDENTIFY, "--emulate", "ns=1:size=1000:bs=512"])
check(rc != 0 and "multiple of the block size" in err, "bad --emulate error", err)
rc, out, err = run([IDENTIFY, "-r", "trtype:RDMA traddr:1.2.3.4"])
check(rc != 0 and "not supported" in err, "unsupported transport error", err)
# NVMe/TCP: the transport id is checked, and a refused connection is reported.
rc, out, err = run([IDENTIFY, "-r", "trtype:TCP traddr:1.2.3.4"])
check(rc != 0 and "subnqn is required" in err, "TCP without subnqn error", err)
rc, out, err = run([IDENTIFY, "-r", "trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:1 subnqn:nqn.2016-06.io.spdk:cnode1"])
check(rc != 0 and "connect failed" in err, "TCP connection refused error", err)

# perf: every pattern briefly, figures present, no errors.
for pattern in ["randread", "randwrite", "read", "write", "rw", "randrw"]:
    rc, out, err = run([PERF, "-q", "16", "-o", "4096", "-w", pattern, "-t", "1", "--no-pin"])
    check(rc == 0, "perf %s exits 0" % pattern, out + err)
    check("[  1s]" in out and "IOPS" in out, "perf %s progress line" % pattern, out)
    check(any(l.startswith("Total") for l in out.splitlines()), "perf %s total" % pattern, out)
    check("p99.99" in out, "perf %s percentiles" % pattern, out)
    total = [l for l in out.splitlines() if l.startswith("Total")]
    if total:
        iops = float(total[0].split(":")[1].split()[0])
        check(iops > 0, "perf %s IOPS > 0" % pattern, out)

# perf with latency and a 4 KiB-block namespace, and bad input.
rc, out, err = run([PERF, "-q", "4", "-o", "8192", "-w", "randrw", "-M", "70", "-t", "1",
                    "--no-pin", "--emulate", "ns=1:size=16M:bs=4096", "--latency", "fixed:50us"])
check(rc == 0 and "Total" in out, "perf with latency", out + err)
rc, out, err = run([PERF, "-q", "4", "-o", "1000", "-w", "read", "-t", "1", "--no-pin"])
check(rc != 0 and "multiple of the block size" in err, "perf bad -o error", err)
rc, out, err = run([PERF, "-q", "4", "-o", "4096", "-w", "sideways", "-t", "1"])
check(rc != 0 and "unknown pattern" in err, "perf bad -w error", err)

if failures:
    print("%d check(s) failed: %s" % (len(failures), ", ".join(failures)))
    sys.exit(1)
print("all checks passed")
