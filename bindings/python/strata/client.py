"""JSON-RPC 2.0 client for a running strata-tgt, over its Unix socket.

Only the standard library is used, so the `strata-rpc` CLI works on any host with Python 3.

    c = Client("/var/tmp/strata.sock")
    c.call("bdev_malloc_create", num_blocks=256, block_size=512)
    c.call_raw("save_config", {})
    c.batch([("rpc_get_methods", {}), ("strata_get_version", None)])

A Client is a connection: not thread-safe; use one per thread.
"""

import codecs
import json
import socket
import time

from .errors import ProtocolError, RpcConnectionError, RpcError, RpcTimeout

DEFAULT_SOCKET = "/var/tmp/strata.sock"


class Client:
    def __init__(self, socket_path=DEFAULT_SOCKET, timeout=60.0, connect=True):
        """timeout: seconds to wait for a whole response (None waits forever)."""
        self.socket_path = socket_path
        self.timeout = timeout
        self._sock = None
        self._next_id = 1
        self._decoder = json.JSONDecoder()
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._buf = ""
        self._pending = []  # responses read while waiting for another id
        if connect:
            self.connect()

    # -- connection -------------------------------------------------------------------------
    def connect(self):
        if self._sock is not None:
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self.socket_path)
        except FileNotFoundError:
            s.close()
            raise RpcConnectionError(
                "cannot connect to strata-tgt at %s: no such socket (is strata-tgt running? "
                "pick another socket with -s)" % self.socket_path) from None
        except ConnectionRefusedError:
            s.close()
            raise RpcConnectionError(
                "cannot connect to strata-tgt at %s: connection refused (stale socket file? "
                "no daemon listens there)" % self.socket_path) from None
        except socket.timeout:
            s.close()
            raise RpcTimeout("connecting to %s timed out after %ss" %
                             (self.socket_path, self.timeout)) from None
        except OSError as e:
            s.close()
            raise RpcConnectionError("cannot connect to strata-tgt at %s: %s" %
                                     (self.socket_path, e.strerror or e)) from None
        self._sock = s

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._buf = ""
                self._utf8.reset()
                self._pending = []

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    # -- calls ------------------------------------------------------------------------------
    def call(self, method, /, **params):
        """Calls `method` with keyword params; returns the result or raises RpcError."""
        return self.call_raw(method, params if params else None)

    def call_raw(self, method, params=None):
        """Calls `method` with a params dict/list (or None: no "params" member)."""
        req_id = self._take_id()
        self.send_obj(self.request(method, params, req_id))
        resp = self._wait_for_id(req_id)
        return self._result_of(resp, method)

    def notify(self, method, /, **params):
        """Sends a notification (no "id"): the server executes it and sends no response."""
        self.send_obj(self.request(method, params if params else None, None))

    def batch(self, calls, raise_on_error=False):
        """Sends one batch. `calls`: iterable of (method, params) or (method, params, notify).

        Returns a list, one entry per non-notification call in order: the result, or an
        RpcError instance (raised instead when raise_on_error is true).
        """
        reqs, ids, methods = [], [], {}
        for c in calls:
            method, params = c[0], c[1] if len(c) > 1 else None
            is_notify = len(c) > 2 and c[2]
            req_id = None if is_notify else self._take_id()
            reqs.append(self.request(method, params, req_id))
            if req_id is not None:
                ids.append(req_id)
                methods[req_id] = method
        if not reqs:
            raise ValueError("an empty batch is invalid JSON-RPC; send at least one call")
        self.send_obj(reqs)
        if not ids:
            return []
        resp = self.recv_obj()
        if isinstance(resp, dict) and resp.get("id") is None and "error" in resp:
            raise RpcError.from_error_object(resp["error"])  # the whole batch was rejected
        if not isinstance(resp, list):
            raise ProtocolError("expected a batch (array) response, got %r" % (resp,))
        by_id = {}
        for r in resp:
            if isinstance(r, dict) and "id" in r:
                by_id[r["id"]] = r
        out = []
        for i in ids:
            r = by_id.get(i)
            if r is None:
                err = ProtocolError("batch response lacks id %r" % (i,))
                if raise_on_error:
                    raise err
                out.append(err)
                continue
            try:
                out.append(self._result_of(r, methods[i]))
            except RpcError as e:
                if raise_on_error:
                    raise
                out.append(e)
        return out

    # -- low level (tests use these to send malformed input) --------------------------------
    @staticmethod
    def request(method, params=None, req_id=None):
        req = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            req["params"] = params
        if req_id is not None:
            req["id"] = req_id
        return req

    def send_obj(self, obj):
        self.send_bytes(json.dumps(obj).encode("utf-8"))

    def send_bytes(self, data):
        self.connect()
        try:
            self._sock.sendall(data)
        except socket.timeout:
            raise RpcTimeout("sending to %s timed out" % self.socket_path) from None
        except OSError as e:
            self.close()
            raise RpcConnectionError("connection to %s broke while sending: %s" %
                                     (self.socket_path, e.strerror or e)) from None

    def recv_obj(self, timeout=None):
        """Reads exactly one complete JSON value from the stream."""
        if self._pending:
            return self._pending.pop(0)
        self.connect()
        deadline = None
        t = self.timeout if timeout is None else timeout
        if t is not None:
            deadline = time.monotonic() + t
        while True:
            obj = self._try_decode()
            if obj is not _NOTHING:
                return obj
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RpcTimeout("no complete response from %s within %ss" %
                                     (self.socket_path, t))
                self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(1 << 16)
            except socket.timeout:
                raise RpcTimeout("no complete response from %s within %ss" %
                                 (self.socket_path, t)) from None
            except OSError as e:
                self.close()
                raise RpcConnectionError("connection to %s broke: %s" %
                                         (self.socket_path, e.strerror or e)) from None
            if not chunk:
                partial = self._buf.strip()
                self.close()
                raise RpcConnectionError(
                    "strata-tgt closed the connection%s" %
                    (" mid-response" if partial else " without a response"))
            try:
                self._buf += self._utf8.decode(chunk)
            except UnicodeDecodeError as e:
                self.close()
                raise ProtocolError("response is not UTF-8: %s" % e) from None

    # -- internals --------------------------------------------------------------------------
    def _take_id(self):
        i = self._next_id
        self._next_id += 1
        return i

    def _try_decode(self):
        s = self._buf.lstrip()
        if not s:
            self._buf = ""
            return _NOTHING
        # Responses are objects or arrays: until the buffer ends like one, it cannot hold a
        # whole value, so skip the (whole-buffer) decode attempt. Keeps large responses linear.
        if s[0] in "{[" and s.rstrip()[-1:] not in ("}", "]"):
            self._buf = s
            return _NOTHING
        try:
            obj, end = self._decoder.raw_decode(s)
        except json.JSONDecodeError as e:
            # Incomplete value: wait for more bytes. A value that can never complete (garbage)
            # shows as an error before the end of the buffer.
            if e.pos >= len(s) - 1 or _incomplete(s):
                self._buf = s
                return _NOTHING
            self.close()
            raise ProtocolError("malformed JSON from strata-tgt: %s" % e) from None
        self._buf = s[end:]
        return obj

    def _wait_for_id(self, req_id):
        while True:
            for k, r in enumerate(self._pending):
                if isinstance(r, dict) and r.get("id") == req_id:
                    return self._pending.pop(k)
            r = self._read_fresh()
            if isinstance(r, dict) and (r.get("id") == req_id or
                                        (r.get("id") is None and "error" in r)):
                return r
            self._pending.append(r)

    def _read_fresh(self):
        saved, self._pending = self._pending, []
        try:
            return self.recv_obj()
        finally:
            self._pending = saved + self._pending

    @staticmethod
    def _result_of(resp, method):
        if not isinstance(resp, dict):
            raise ProtocolError("expected a response object, got %r" % (resp,))
        if "error" in resp:
            raise RpcError.from_error_object(resp["error"], method)
        if "result" not in resp:
            raise ProtocolError("response has neither result nor error: %r" % (resp,))
        return resp["result"]


class _Nothing:
    pass


_NOTHING = _Nothing()


def _incomplete(s):
    """True when `s` is a prefix of a JSON value (brackets/strings left open)."""
    depth, in_str, esc = 0, False, False
    for ch in s:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
    return in_str or depth > 0
