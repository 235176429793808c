"""JSON-RPC error cases, run both in-process (World) and over the socket (strata-tgt + Client):
the two must behave the same because they share one registry and one request handler."""

import json
import socket as pysocket

import pytest

import strata
from strata import RpcError, RpcTimeout


class WorldEndpoint:
    def __init__(self, world):
        self.world = world

    def call(self, method, /, **params):
        return self.world.rpc(method, **params)

    def call_raw(self, method, params):
        return self.world.rpc_raw(method, params)

    def raw(self, text, n=1):
        return self.world.request_all(text)


class DaemonEndpoint:
    def __init__(self, daemon):
        self.daemon = daemon

    def call(self, method, /, **params):
        return self.daemon.client.call(method, **params)

    def call_raw(self, method, params):
        return self.daemon.client.call_raw(method, params)

    def raw(self, text, n=1):
        """Sends raw bytes on a fresh connection and reads n responses; with n=0, checks that
        none arrives within half a second (notifications)."""
        c = self.daemon.new_client(timeout=10)
        try:
            c.send_bytes(text if isinstance(text, bytes) else text.encode())
            if n == 0:
                try:
                    return [c.recv_obj(timeout=0.5)]
                except RpcTimeout:
                    return []
            return [c.recv_obj() for _ in range(n)]
        finally:
            c.close()


@pytest.fixture(params=["world", "daemon"])
def ep(request):
    if request.param == "world":
        return WorldEndpoint(request.getfixturevalue("world"))
    return DaemonEndpoint(request.getfixturevalue("daemon"))


def test_unknown_method(ep):
    with pytest.raises(RpcError) as ei:
        ep.call("no_such_method")
    assert ei.value.code == strata.METHOD_NOT_FOUND
    assert ei.value.method == "no_such_method"
    assert "no_such_method" in ei.value.message


def test_unknown_param_names_the_field(ep):
    with pytest.raises(RpcError) as ei:
        ep.call("log_get_level", foo=1)
    assert ei.value.code == strata.INVALID_PARAMS
    assert "'foo'" in ei.value.message


def test_wrong_type_names_the_field(ep):
    with pytest.raises(RpcError) as ei:
        ep.call("log_set_level", level=5)
    assert ei.value.code == strata.INVALID_PARAMS
    assert "level" in ei.value.message


def test_missing_required_param(ep):
    with pytest.raises(RpcError) as ei:
        ep.call("log_set_level")
    assert ei.value.code == strata.INVALID_PARAMS
    assert "level" in ei.value.message


def test_params_must_be_object(ep):
    with pytest.raises(RpcError) as ei:
        ep.call_raw("log_get_level", [1, 2])
    assert ei.value.code in (strata.INVALID_PARAMS, strata.INVALID_REQUEST)


def test_parse_error(ep):
    # (An incomplete value on a socket just waits for more bytes, so send a broken one.)
    for text in (b'{"jsonrpc":"2.0","method":]', b'\xff\xfe{', b'nul'):
        out = ep.raw(text)
        assert len(out) == 1
        assert out[0]["error"]["code"] == strata.PARSE_ERROR
        assert out[0]["id"] is None


def test_truncated_request_in_world(world):
    (resp,) = world.request_all('{"jsonrpc":"2.0","method":')
    assert resp["error"]["code"] == strata.PARSE_ERROR


def test_invalid_request(ep):
    (resp,) = ep.raw('{"jsonrpc":"2.0","id":7}')
    assert resp["error"]["code"] == strata.INVALID_REQUEST and resp["id"] == 7
    (resp,) = ep.raw('{"jsonrpc":"1.0","method":"rpc_get_methods","id":8}')
    assert resp["error"]["code"] == strata.INVALID_REQUEST
    (resp,) = ep.raw('[]')
    assert resp["error"]["code"] == strata.INVALID_REQUEST


def test_batch(ep):
    reqs = [
        {"jsonrpc": "2.0", "method": "strata_get_version", "id": 1},
        {"jsonrpc": "2.0", "method": "no_such_method", "id": 2},
        {"jsonrpc": "2.0", "method": "log_get_level"},  # notification: no entry
        {"jsonrpc": "2.0", "method": "log_get_level", "params": {"bad": 1}, "id": 3},
        17,  # invalid request inside a batch
    ]
    (resp,) = ep.raw(json.dumps(reqs))
    assert isinstance(resp, list)
    by_id = {r["id"]: r for r in resp if r.get("id") is not None}
    assert "Strata" in by_id[1]["result"]["version"]
    assert by_id[2]["error"]["code"] == strata.METHOD_NOT_FOUND
    assert by_id[3]["error"]["code"] == strata.INVALID_PARAMS
    assert [r["error"]["code"] for r in resp if r.get("id") is None] == [strata.INVALID_REQUEST]
    assert len(resp) == 4


def test_notification_gets_no_response(ep):
    assert ep.raw('{"jsonrpc":"2.0","method":"log_get_level"}', n=0) == []
    # A batch of notifications gets none either, nor does a failing notification.
    assert ep.raw('[{"jsonrpc":"2.0","method":"log_get_level"}]', n=0) == []
    assert ep.raw('{"jsonrpc":"2.0","method":"no_such_method"}', n=0) == []


def test_several_requests_in_one_write(ep):
    text = ('{"jsonrpc":"2.0","method":"log_get_level","id":1}\n'
            '{"jsonrpc":"2.0","method":"log_get_level"}'
            '{"jsonrpc":"2.0","method":"no_such_method","id":2}')
    out = ep.raw(text, n=2)
    assert [r["id"] for r in out] == [1, 2]
    assert isinstance(out[0]["result"], str)
    assert out[1]["error"]["code"] == strata.METHOD_NOT_FOUND


def test_client_batch_and_notify(daemon):
    c = daemon.client
    res = c.batch([("strata_get_version", None), ("no_such_method", {}),
                   ("log_get_level", None, True)])
    assert "Strata" in res[0]["version"]
    assert isinstance(res[1], RpcError) and res[1].code == strata.METHOD_NOT_FOUND
    c.notify("log_get_level")
    # The next call's response is the next value on the stream: the notification sent none.
    assert "Strata" in c.call("strata_get_version")["version"]


def test_state_gating_with_wait_for_rpc(strata_tgt):
    d = strata_tgt(wait_for_rpc=True)
    c = d.client
    # Startup methods work, runtime-only ones are refused with SPDK's invalid-state error.
    assert "rpc_get_methods" in c.call("rpc_get_methods")
    with pytest.raises(RpcError) as ei:
        c.call("thread_get_stats")
    assert ei.value.code == -1
    assert c.call("framework_start_init") is True
    c.call("framework_wait_init")
    assert "threads" in c.call("thread_get_stats")
    with pytest.raises(RpcError) as ei:
        c.call("framework_start_init")  # startup-only
    assert ei.value.code == -1


def test_state_gating_in_world(seed):
    with strata.World(seed=seed, wait_for_rpc=True) as w:
        with pytest.raises(RpcError) as ei:
            w.rpc("thread_get_stats")
        assert ei.value.code == -1
        assert w.rpc("framework_start_init") is True
        w.rpc("framework_wait_init")
        assert "threads" in w.rpc("thread_get_stats")


def test_large_request_and_response(ep):
    # A 1 MiB method name: the request is large and so is the error that quotes it.
    name = "m" * (1 << 20)
    with pytest.raises(RpcError) as ei:
        ep.call(name)
    assert ei.value.code == strata.METHOD_NOT_FOUND
    assert len(ei.value.message) >= 1 << 20
    # A large params object is rejected naming its one unknown member.
    with pytest.raises(RpcError) as ei:
        ep.call_raw("log_get_level", {"blob": "x" * (1 << 20)})
    assert ei.value.code == strata.INVALID_PARAMS and "'blob'" in ei.value.message


def test_client_disconnect_mid_request_and_many_clients(daemon):
    # Half a request, then hang up: the daemon must carry on serving others.
    s = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
    s.connect(daemon.socket)
    s.sendall(b'{"jsonrpc":"2.0","method":"rpc_get_meth')
    s.close()
    # A whole request, then hang up before the response is read.
    s = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
    s.connect(daemon.socket)
    s.sendall(b'{"jsonrpc":"2.0","method":"thread_get_stats","id":1}' * 50)
    s.close()
    clients = [daemon.new_client() for _ in range(16)]
    try:
        for i, c in enumerate(clients):
            c.send_obj(strata.Client.request("strata_get_version", None, i + 1))
        for i, c in enumerate(clients):
            r = c.recv_obj()
            assert r["id"] == i + 1 and "Strata" in r["result"]["version"]
    finally:
        for c in clients:
            c.close()


def test_pipelined_requests(daemon):
    # Many pipelined requests on one connection: responses arrive complete and in order.
    c = daemon.client
    n = 200
    payload = "".join(json.dumps(strata.Client.request("rpc_get_methods", None, i + 1))
                      for i in range(n))
    c.send_bytes(payload.encode())
    for i in range(n):
        r = c.recv_obj()
        assert r["id"] == i + 1 and "save_config" in r["result"]
