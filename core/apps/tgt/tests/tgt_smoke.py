#!/usr/bin/python3
"""ctest strata_tgt_smoke: strata-tgt starts with a config, serves RPC on a 0600 socket, stops
on SIGTERM (exit 0, socket removed), and fails clearly on bad configs and options.
Usage: tgt_smoke.py <path to strata-tgt>"""
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

TGT = sys.argv[1]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run_bad(args, expect):
    p = subprocess.run([TGT, "--no-pin"] + args, capture_output=True, text=True, timeout=30)
    check(p.returncode != 0 and expect in p.stderr,
          "%s -> exit %d, stderr %r contains %r" % (args, p.returncode, p.stderr.strip(), expect))


def rpc(path, method, params=None, rid=1):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    req = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params is not None:
        req["params"] = params
    s.sendall(json.dumps(req).encode())
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    return json.loads(buf)


with tempfile.TemporaryDirectory(prefix="strata-tgt-", dir="/tmp") as d:
    sock = os.path.join(d, "rpc.sock")
    good = os.path.join(d, "good.json")
    with open(good, "w") as f:
        json.dump({"subsystems": [{"subsystem": "log", "config": [
            {"method": "log_set_level", "params": {"level": "INFO"}}]}]}, f)
    syntax = os.path.join(d, "syntax.json")
    with open(syntax, "w") as f:
        f.write('{\n  "subsystems": [\n    {"subsystem": "log",, }\n  ]\n}\n')
    badm = os.path.join(d, "badm.json")
    with open(badm, "w") as f:
        json.dump({"subsystems": [{"subsystem": "log", "config": [
            {"method": "log_set_level", "params": {"level": "INFO"}},
            {"method": "log_set_level", "params": {"level": 3}}]}]}, f)

    run_bad(["-r", sock, "--json", os.path.join(d, "missing.json")],
            "cannot read '%s'" % os.path.join(d, "missing.json"))
    run_bad(["-r", sock, "--json", syntax], "JSON syntax error at line 3, column")
    run_bad(["-r", sock, "--json", badm],
            "config: subsystem 'log' entry 1 (log_set_level): Invalid parameters: "
            "'level' must be a string")
    run_bad(["-r", sock, "--env", "vfio"], "unknown environment (expected sim or dpdk)")
    run_bad(["-r", sock, "-m", "0xzz"], "-m '0xzz'")
    run_bad(["-r", sock, "-L", "nosuchcomponent"], "unknown log component")
    check(not os.path.exists(sock), "no socket left behind by failed starts")

    p = subprocess.Popen([TGT, "--no-pin", "-r", sock, "-c", good], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while not os.path.exists(sock) and time.time() < deadline and p.poll() is None:
        time.sleep(0.02)
    check(os.path.exists(sock), "socket created")
    check(stat.S_IMODE(os.lstat(sock).st_mode) == 0o600, "socket mode 0600")
    r = rpc(sock, "framework_wait_init")
    check(r.get("result") is True, "framework_wait_init -> true")
    r = rpc(sock, "log_get_level")
    check(r.get("result") == "INFO", "config applied (log level INFO): %r" % r)
    r = rpc(sock, "spdk_get_version")
    check("version" in r.get("result", {}), "spdk_get_version alias answers")
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    check(p.returncode == 0, "exit 0 after SIGTERM (got %d; stderr %r)" % (p.returncode, err))
    check("listening on " + sock in out, "prints where it listens: %r" % out)
    check(not os.path.exists(sock), "socket removed on exit")

    # --wait-for-rpc: subsystems wait for framework_start_init.
    p = subprocess.Popen([TGT, "--no-pin", "-r", sock, "--wait-for-rpc"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while not os.path.exists(sock) and time.time() < deadline and p.poll() is None:
        time.sleep(0.02)
    r = rpc(sock, "thread_get_stats")
    check(r.get("error", {}).get("code") == -1, "runtime method refused before init: %r" % r)
    check(rpc(sock, "framework_start_init").get("result") is True, "framework_start_init")
    check("result" in rpc(sock, "thread_get_stats"), "runtime method after init")
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=20)
    check(p.returncode == 0, "exit 0 after SIGINT")

if failures:
    print("%d check(s) failed" % len(failures))
    sys.exit(1)
print("all checks passed")
