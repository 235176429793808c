#!/usr/bin/python3
"""ctest fio_engine: Debian's fio runs jobs on Strata bdevs through libstrata_fio.so
(ioengine=external:...), with fio's own verify: verify.fio (randwrite with crc32c verify,
sequential write with md5 verify_backlog) must pass and move the expected bytes; a job on a
missing bdev and a job without the config fail with the engine's message; filename=* runs on
every bdev. Exits 77 (skip) when the engine was not built or fio is missing, with the reason
(1 instead under STRATA_REQUIRE_FIO=1, as ci/test sets).
Usage: fio_engine_test.py <libstrata_fio.so or ""> <tests dir>"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

engine, tests = sys.argv[1], sys.argv[2]


def skip(why):
    # 77: ctest's SKIP_RETURN_CODE; ci/test sets STRATA_REQUIRE_FIO=1, where a skip fails.
    if os.environ.get("STRATA_REQUIRE_FIO", "").startswith("1"):
        print("FAIL: STRATA_REQUIRE_FIO=1 but " + why)
        sys.exit(1)
    print("SKIP: " + why)
    sys.exit(77)


if not engine or not os.path.exists(engine):
    skip("the fio engine was not built: %s" % (os.environ.get("STRATA_FIO_SKIP") or "no library"))
fio = shutil.which("fio")
if not fio:
    skip("fio is not installed (ci/install-deps installs it)")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


conf = os.path.abspath(os.path.join(tests, "bdevs.json"))
env = dict(os.environ, STRATA_FIO_ENGINE=engine, STRATA_FIO_CONF=conf)


work = tempfile.mkdtemp(prefix="strata-fio-")  # fio writes its verify state files to the cwd


def run_fio(args, timeout=90):
    return subprocess.run([fio, "--output-format=json"] + args, capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=work)


def jobs_of(p):
    try:
        return {j["jobname"]: j for j in json.loads(p.stdout[p.stdout.index("{"):])["jobs"]}
    except (ValueError, KeyError):
        return {}


# 1. The job file: fio's verify passes on both bdevs.
p = run_fio([os.path.abspath(os.path.join(tests, "verify.fio"))])
check(p.returncode == 0, "verify.fio exits 0 (%d: %s)" % (p.returncode, p.stderr.strip()[-400:]))
jobs = jobs_of(p)
for name, written in (("randwrite-verify", 8 << 20), ("write-then-verify", 16 << 20)):
    j = jobs.get(name, {})
    check(j.get("error") == 0 and j.get("write", {}).get("io_bytes") == written,
          "%s: no error, wrote %d bytes (%s)" % (name, written, j.get("write", {}).get("io_bytes")))
    # fio's verify reads are counted as reads: every written byte was read back and checked.
    check(j.get("read", {}).get("io_bytes", 0) >= written,
          "%s: verified %s bytes" % (name, j.get("read", {}).get("io_bytes")))

# 2. Several jobs (threads), each with its own Strata instance; read-only random reads.
p = run_fio(["--name=rr", "--ioengine=external:" + engine, "--spdk_json_conf=" + conf, "--thread=1",
             "--filename=Malloc0", "--rw=randread", "--bs=4k", "--iodepth=8", "--size=4m", "--numjobs=2"])
jobs = jobs_of(p)
check(p.returncode == 0 and jobs.get("rr", {}).get("read", {}).get("io_bytes", 0) > 0,
      "numjobs=2 randread runs (%d: %s)" % (p.returncode, p.stderr.strip()[-300:]))

# 3. filename=* : every unclaimed bdev.
p = run_fio(["--name=all", "--ioengine=external:" + engine, "--spdk_json_conf=" + conf, "--thread=1",
             "--filename=*", "--rw=read", "--bs=4k", "--iodepth=4", "--size=1m"])
check(p.returncode == 0, "filename=* runs (%d: %s)" % (p.returncode, p.stderr.strip()[-300:]))

# 4. Errors are clear.
p = run_fio(["--name=bad", "--ioengine=external:" + engine, "--spdk_json_conf=" + conf, "--thread=1",
             "--filename=NoSuchBdev", "--rw=read", "--bs=4k", "--size=1m"])
check(p.returncode != 0 and "no bdev named 'NoSuchBdev'" in p.stdout + p.stderr,
      "missing bdev refused by name (%s)" % p.stderr.strip()[-200:])
p = run_fio(["--name=noconf", "--ioengine=external:" + engine, "--thread=1", "--filename=Malloc0",
             "--rw=read", "--bs=4k", "--size=1m"])
check(p.returncode != 0 and "spdk_json_conf" in p.stdout + p.stderr, "missing spdk_json_conf refused")

shutil.rmtree(work, ignore_errors=True)
if failures:
    print("%d check(s) failed" % len(failures))
    sys.exit(1)
print("all checks passed")
