#!/usr/bin/env python3
"""Regenerates rpc_py_v24.09.json: the exact requests SPDK's scripts/rpc.py (v24.09) sends.

Not run by CI (it needs SPDK's python tree). Usage, from a checkout of SPDK's sources:

    git -C <spdk gitdir> archive v24.09 python scripts | tar -x -C /tmp/spdkpy
    /usr/bin/python3 scenarios/data/spdk/capture_rpc_py.py /tmp/spdkpy \
        scenarios/data/spdk/rpc_py_v24.09.cmds > scenarios/data/spdk/rpc_py_v24.09.json

Each line of the .cmds file is an rpc.py command line (SPDK's documented syntax); this script
runs rpc.py against a Unix socket that records the request and answers `true` (rpc.py only
prints results), and writes [{"cli": line, "method": ..., "params": ...}, ...] in file order.
"""
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading


def serve(path, captured, stop):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    srv.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        with conn:
            buf = b""
            dec = json.JSONDecoder()
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                buf += chunk
                try:
                    req, _ = dec.raw_decode(buf.decode())
                except ValueError:
                    continue
                captured.append(req)
                reply = {"jsonrpc": "2.0", "id": req.get("id"), "result": True}
                conn.sendall(json.dumps(reply).encode())
                buf = b""
    srv.close()


def main():
    tree, cmds = sys.argv[1], sys.argv[2]
    out = []
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "rpc.sock")
        captured, stop = [], threading.Event()
        t = threading.Thread(target=serve, args=(path, captured, stop), daemon=True)
        t.start()
        while not os.path.exists(path):
            pass
        env = dict(os.environ, PYTHONPATH=os.path.join(tree, "python"))
        for line in open(cmds):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            before = len(captured)
            r = subprocess.run([sys.executable, os.path.join(tree, "scripts", "rpc.py"), "-s",
                                path, "-t", "5"] + shlex.split(line), env=env,
                               capture_output=True, text=True)
            if len(captured) == before:
                sys.exit("no request captured for: %s\n%s" % (line, r.stderr))
            for req in captured[before:]:
                out.append({"cli": line, "method": req["method"],
                            "params": req.get("params")})
        stop.set()
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
