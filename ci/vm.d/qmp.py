#!/usr/bin/python3
"""Sends one QMP command to a QEMU monitor socket: qmp.py SOCKET COMMAND [JSON-ARGUMENTS]."""
import json
import socket
import sys


def main() -> int:
    path, command = sys.argv[1], sys.argv[2]
    arguments = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        f = s.makefile("rw")
        json.loads(f.readline())  # greeting
        for msg in ({"execute": "qmp_capabilities"}, {"execute": command, "arguments": arguments}):
            f.write(json.dumps(msg) + "\n")
            f.flush()
            while True:
                reply = json.loads(f.readline())
                if "event" not in reply:
                    break
            if "error" in reply:
                print(f"qmp: {msg['execute']}: {reply['error']}", file=sys.stderr)
                return 1
    print(f"qmp: {command} {arguments}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
