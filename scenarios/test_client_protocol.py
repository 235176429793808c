"""strata.Client and strata-rpc against a scripted fake server: stream framing (responses split
at every byte, several in one read, multi-byte UTF-8 split across reads), batches,
notifications, disconnects and timeouts. No daemon needed."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest

from strata import Client, ProtocolError, RpcConnectionError, RpcError, RpcTimeout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(REPO, "bindings", "python", "bin", "strata-rpc")


class FakeServer:
    """Accepts connections; for each complete request calls handler(req) -> bytes to send
    (or None to stay silent, or a callable(conn) for custom behaviour)."""

    def __init__(self, handler):
        self.dir = tempfile.mkdtemp(prefix="strata-fake-", dir="/tmp")
        self.path = os.path.join(self.dir, "s.sock")
        self.handler = handler
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.sock.settimeout(10)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        dec = json.JSONDecoder()
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            buf = ""
            with conn:
                while True:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        break
                    if not data:
                        break
                    buf += data.decode()
                    while buf.strip():
                        try:
                            req, end = dec.raw_decode(buf.lstrip())
                        except ValueError:
                            break
                        buf = buf.lstrip()[end:]
                        self.requests.append(req)
                        out = self.handler(req)
                        if callable(out):
                            out(conn)
                        elif out is not None:
                            conn.sendall(out)

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def fake():
    servers = []

    def make(handler):
        s = FakeServer(handler)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def ok(req, result):
    return json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": result}).encode()


def test_call_returns_result_and_sends_jsonrpc_2(fake):
    srv = fake(lambda r: ok(r, {"echo": r.get("params")}))
    with Client(srv.path, timeout=5) as c:
        assert c.call("m", a=1, b_c="x") == {"echo": {"a": 1, "b_c": "x"}}
        assert c.call("m") == {"echo": None}  # no params member when none given
    assert srv.requests[0]["jsonrpc"] == "2.0" and srv.requests[0]["method"] == "m"
    assert "params" not in srv.requests[1]


def test_response_split_at_every_byte_and_utf8_split(fake):
    def handler(req):
        data = json.dumps({"jsonrpc": "2.0", "id": req["id"],
                           "result": {"name": "Malloc\u00e9\u4e2d", "n": [1, 2, {"x": "}"}]}},
                          ensure_ascii=False).encode()

        def send(conn):
            for i in range(len(data)):
                conn.sendall(data[i:i + 1])
        return send
    srv = fake(handler)
    with Client(srv.path, timeout=5) as c:
        assert c.call("m") == {"name": "Malloc\u00e9\u4e2d", "n": [1, 2, {"x": "}"}]}


def test_error_raises_rpc_error_with_fields(fake):
    srv = fake(lambda r: json.dumps({"jsonrpc": "2.0", "id": r["id"], "error": {
        "code": -32602, "message": "unknown parameter 'foo'", "data": {"field": "foo"}}}).encode())
    with Client(srv.path, timeout=5) as c:
        with pytest.raises(RpcError) as ei:
            c.call("bdev_get_bdevs", foo=1)
    e = ei.value
    assert (e.code, e.message, e.data, e.method) == (
        -32602, "unknown parameter 'foo'", {"field": "foo"}, "bdev_get_bdevs")
    assert "error -32602: unknown parameter 'foo'" in str(e)


def test_batch_matches_ids_out_of_order(fake):
    def handler(req):
        assert isinstance(req, list)
        out = []
        for r in reversed(req):
            if "id" not in r:
                continue
            if r["method"] == "bad":
                out.append({"jsonrpc": "2.0", "id": r["id"],
                            "error": {"code": -32601, "message": "Method not found"}})
            else:
                out.append({"jsonrpc": "2.0", "id": r["id"], "result": r["method"]})
        return json.dumps(out).encode()
    srv = fake(handler)
    with Client(srv.path, timeout=5) as c:
        res = c.batch([("a", {}), ("bad", None), ("note", None, True), ("c", [1])])
    assert res[0] == "a" and res[2] == "c"
    assert isinstance(res[1], RpcError) and res[1].code == -32601 and res[1].method == "bad"
    assert len(srv.requests[0]) == 4 and "id" not in srv.requests[0][2]


def test_two_responses_in_one_read(fake):
    def handler(req):
        if req["method"] == "first":
            return None  # answer both when the second arrives, in one write
        return ok({"id": req["id"] - 1}, 1) + b"\n" + ok(req, 2)
    srv = fake(handler)
    with Client(srv.path, timeout=5) as c:
        c.send_obj(Client.request("first", None, 100))
        c.send_obj(Client.request("second", None, 101))
        assert c.recv_obj()["result"] == 1
        assert c.recv_obj()["result"] == 2


def test_disconnect_mid_response_and_timeout(fake):
    srv = fake(lambda r: (lambda conn: (conn.sendall(b'{"jsonrpc":"2.0","id":1,"res'),
                                        conn.shutdown(socket.SHUT_RDWR))))
    with Client(srv.path, timeout=5) as c:
        with pytest.raises(RpcConnectionError, match="mid-response"):
            c.call("m")
    silent = fake(lambda r: None)
    with Client(silent.path, timeout=0.3) as c:
        with pytest.raises(RpcTimeout):
            c.call("m")


def test_garbage_response_is_protocol_error(fake):
    srv = fake(lambda r: b"}garbage{")
    with Client(srv.path, timeout=5) as c:
        with pytest.raises(ProtocolError):
            c.call("m")


def test_no_daemon_is_a_clear_connection_error():
    with pytest.raises(RpcConnectionError, match="no such socket"):
        Client("/tmp/strata-definitely-missing.sock")


def run_cli(*args):
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=30)


def test_cli_params_types_and_dashes(fake):
    srv = fake(lambda r: ok(r, r.get("params")))
    p = run_cli("-s", srv.path, "m", "--num-blocks", "8", "--name", "Malloc0", "--flag",
                "--neg", "-1", "--names", '["a","b"]', "--quoted", '"123"', "--eq=2.5")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"num_blocks": 8, "name": "Malloc0", "flag": True,
                                    "neg": -1, "names": ["a", "b"], "quoted": "123", "eq": 2.5}


def test_cli_raw_call_and_usage_errors(fake):
    srv = fake(lambda r: ok(r, r.get("params")))
    p = run_cli("-s", srv.path, "call", "m", '{"a": {"b": [1]}}')
    assert p.returncode == 0 and json.loads(p.stdout) == {"a": {"b": [1]}}
    p = run_cli("-s", srv.path, "call", "m", "{not json")
    assert p.returncode == 2 and "not valid JSON" in p.stderr
    p = run_cli("-s", srv.path, "m", "positional")
    assert p.returncode == 2 and "--name value" in p.stderr
    p = run_cli("-s", srv.path)
    assert p.returncode == 2 and "METHOD is required" in p.stderr


@pytest.mark.parametrize("code,exit_code", [(-32601, 4), (-32602, 5), (-32700, 6), (-32600, 6),
                                            (-32603, 7), (-1, 1), (-22, 1), (-32000, 1)])
def test_cli_exit_code_follows_error(fake, code, exit_code):
    srv = fake(lambda r: json.dumps({"jsonrpc": "2.0", "id": r["id"], "error": {
        "code": code, "message": "unknown parameter 'foo'"}}).encode())
    p = run_cli("-s", srv.path, "m", "--foo", "1")
    assert p.returncode == exit_code
    assert "error %d: unknown parameter 'foo'" % code in p.stderr


def test_cli_no_daemon(tmp_path):
    p = run_cli("-s", str(tmp_path / "none.sock"), "rpc_get_methods")
    assert p.returncode == 3 and "cannot connect" in p.stderr
    p = run_cli("-s", str(tmp_path / "none.sock"), "--help")
    assert p.returncode == 0 and "no strata-tgt answers" in p.stdout


def test_cli_help_lists_methods(fake):
    def handler(r):
        if r.get("params", {}).get("current"):
            return ok(r, ["rpc_get_methods", "bdev_x"])
        return ok(r, ["save_config", "rpc_get_methods", "bdev_x"])
    srv = fake(handler)
    p = run_cli("-s", srv.path, "--help")
    assert p.returncode == 0
    assert "(3, from rpc_get_methods)" in p.stdout
    assert "  bdev_x\n  rpc_get_methods\n  save_config      (not callable in the current state)" \
        in p.stdout
