"""Start and stop a strata-tgt process for tests and scripts.

    with Daemon(config={"subsystems": [...]}) as d:
        d.client.call("save_config")
    # leaving the block sends SIGTERM, waits, and checks the exit code (0 unless told otherwise)

The binary is found, in order: the `binary` argument, $STRATA_TGT, $STRATA_BUILD_DIR/core/apps/
strata-tgt, `strata-tgt` on $PATH.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from .client import Client
from .errors import RpcConnectionError, RpcTimeout


class DaemonError(RuntimeError):
    """strata-tgt did not start, did not stop, or exited with an unexpected code."""


def find_strata_tgt(binary=None):
    cands = []
    if binary:
        cands.append(binary)
    if os.environ.get("STRATA_TGT"):
        cands.append(os.environ["STRATA_TGT"])
    if os.environ.get("STRATA_BUILD_DIR"):
        cands.append(os.path.join(os.environ["STRATA_BUILD_DIR"], "core", "apps", "strata-tgt"))
    w = shutil.which("strata-tgt")
    if w:
        cands.append(w)
    for c in cands:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise DaemonError(
        "strata-tgt not found (looked at %s); build it (ninja -C build/<preset> strata-tgt) and "
        "`source ci/env.sh`, or set STRATA_TGT / STRATA_BUILD_DIR" %
        (", ".join(cands) if cands else "$STRATA_TGT, $STRATA_BUILD_DIR, $PATH"))


class Daemon:
    """One strata-tgt process.

    config: a path to a JSON config, or a dict/list that is written to a temporary file.
    socket: RPC socket path (default: a fresh path under /tmp; Unix socket paths are limited
            to 107 bytes, so avoid deep temporary directories).
    cpumask: core mask string such as "0x1" (passed as -m).
    wait_for_rpc: start with --wait-for-rpc (subsystems wait for framework_start_init).
    log_flags: components whose debug logs to enable (each passed as -L NAME).
    args: extra command-line arguments.
    expect_exit: exit code expected after SIGTERM (None: do not check).
    """

    def __init__(self, config=None, socket=None, cpumask=None, wait_for_rpc=False, args=(),
                 binary=None, start_timeout=20.0, stop_timeout=20.0, expect_exit=0,
                 rpc_timeout=30.0, env=None, log_flags=()):
        self.binary = find_strata_tgt(binary)
        self._tmpdir = tempfile.mkdtemp(prefix="strata-", dir="/tmp")
        self.socket = socket or os.path.join(self._tmpdir, "rpc.sock")
        self.config_path = None
        if isinstance(config, (dict, list)):
            self.config_path = os.path.join(self._tmpdir, "config.json")
            with open(self.config_path, "w") as f:
                json.dump(config, f, indent=2)
        elif config is not None:
            self.config_path = os.fspath(config)
        self.cpumask = cpumask
        self.wait_for_rpc = wait_for_rpc
        self.extra_args = list(args)
        self.log_flags = list(log_flags)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.expect_exit = expect_exit
        self.rpc_timeout = rpc_timeout
        self.env = env
        self.proc = None
        self.returncode = None
        self.stdout = ""
        self.stderr = ""
        self._out_path = os.path.join(self._tmpdir, "stdout.log")
        self._err_path = os.path.join(self._tmpdir, "stderr.log")
        self._client = None

    @property
    def argv(self):
        a = [self.binary, "-r", self.socket]
        if self.cpumask is not None:
            a += ["-m", str(self.cpumask)]
        if self.config_path is not None:
            a += ["--json", self.config_path]
        if self.wait_for_rpc:
            a.append("--wait-for-rpc")
        for f in self.log_flags:
            a += ["-L", f]
        return a + self.extra_args

    def start(self, wait=True):
        if self.proc is not None:
            raise DaemonError("already started")
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self._out = open(self._out_path, "w+")
        self._err = open(self._err_path, "w+")
        self.proc = subprocess.Popen(self.argv, stdout=self._out, stderr=self._err, env=env,
                                     stdin=subprocess.DEVNULL)
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self):
        """Waits until the RPC socket accepts connections; raises DaemonError on early exit."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self._collect(rc)
                raise DaemonError("strata-tgt exited with %d before listening on %s\n%s" %
                                  (rc, self.socket, self.output()))
            if os.path.exists(self.socket):
                try:
                    c = Client(self.socket, timeout=self.rpc_timeout)
                    self._client = c
                    return
                except (RpcConnectionError, RpcTimeout):
                    pass
            if time.monotonic() > deadline:
                self.kill()
                raise DaemonError("strata-tgt did not listen on %s within %ss\n%s" %
                                  (self.socket, self.start_timeout, self.output()))
            time.sleep(0.02)

    @property
    def client(self):
        """A connected Client (one per Daemon; create more with new_client())."""
        if self._client is None:
            self._client = Client(self.socket, timeout=self.rpc_timeout)
        return self._client

    def new_client(self, **kw):
        kw.setdefault("timeout", self.rpc_timeout)
        return Client(self.socket, **kw)

    def rpc(self, method, /, **params):
        return self.client.call(method, **params)

    def wait(self, timeout=None):
        """Waits for the process to exit on its own; returns the exit code."""
        try:
            rc = self.proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise DaemonError("strata-tgt did not exit within %ss\n%s" %
                              (timeout or self.stop_timeout, self.output()))
        self._collect(rc)
        return rc

    def stop(self, sig=signal.SIGTERM, check=True):
        """Sends `sig`, waits for exit, collects output; checks expect_exit when `check`."""
        if self.proc is None:
            return self.returncode
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.wait()
        if check and self.expect_exit is not None and rc != self.expect_exit:
            raise DaemonError("strata-tgt exited with %d (expected %d)\n%s" %
                              (rc, self.expect_exit, self.output()))
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self._collect(self.proc.returncode)

    def _collect(self, rc):
        first = self.returncode is None
        self.returncode = rc
        for name in ("_out", "_err"):
            f = getattr(self, name, None)
            if f is not None and not f.closed:
                f.flush()
                f.seek(0)
                setattr(self, "stdout" if name == "_out" else "stderr", f.read())
                f.close()
        if first:
            # Output is in memory now; the private directory (socket, logs, written config)
            # goes. A socket path given by the caller lives elsewhere and is left alone.
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def output(self):
        return "--- strata-tgt stdout ---\n%s--- strata-tgt stderr ---\n%s" % (
            self.stdout, self.stderr)

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            # Do not mask the test's own exception; still stop the process.
            try:
                self.stop(check=False)
            except DaemonError:
                self.kill()
            return False
        self.stop()
        return False

    def __del__(self):
        try:
            self.kill()
        except Exception:
            pass


def run_strata_tgt(args, timeout=20.0, binary=None):
    """Runs strata-tgt to completion (e.g. a bad config); returns CompletedProcess."""
    return subprocess.run([find_strata_tgt(binary)] + list(args), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
