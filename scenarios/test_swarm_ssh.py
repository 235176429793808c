"""The two-host swarm recipe of docs/user/swarm.md, on one machine: a private sshd (Debian's
openssh-server) on a loopback port with a throwaway host key and authorized key in a temp dir
stands in for the second host; a seed swarm runs over one popen gateway and one
`ssh=... root@127.0.0.1//python=/usr/bin/python3` gateway, and both must run seeds.

Nothing of the system's ssh set-up is used or changed: the sshd gets its own config (-f), keys,
pid file and port, runs in the foreground as this test's child and is killed at the end; the
client ignores ~/.ssh (-F /dev/null, -o UserKnownHostsFile=/dev/null). The one thing outside the
temp dir is /run/sshd, the empty privilege-separation directory a root sshd insists on (created
if missing, as Debian's ssh.service would)."""

import getpass
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SSHD = "/usr/sbin/sshd"
CANARY = "scenarios/test_swarm_canary.py"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "strata-swarm-test",
                    "-f", path], check=True, timeout=20)


@pytest.fixture
def private_sshd(tmp_path):
    """(port, client key, user, remote env): an sshd on 127.0.0.1:port accepting only the key."""
    if not os.path.exists(SSHD):
        pytest.skip("no %s: install Debian's openssh-server (ci/install-deps does)" % SSHD)
    if not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        pytest.skip("no ssh client (openssh-client)")
    d = tmp_path / "sshd"
    d.mkdir()
    _keygen(str(d / "host_key"))
    _keygen(str(d / "client_key"))
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    user = getpass.getuser()
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # a root sshd requires it
    # The remote host's environment: what ci/env.sh gives the controller (its PYTHONPATH puts
    # bindings/python and build/dev/bindings on the remote Python's path).
    pythonpath = os.environ.get("PYTHONPATH") or os.pathsep.join(
        [os.path.join(REPO, "bindings", "python"), os.path.join(REPO, "build", "dev", "bindings")])
    build_dir = os.environ.get("STRATA_BUILD_DIR") or os.path.join(REPO, "build", "dev")
    port = _free_port()
    (d / "sshd_config").write_text("\n".join([
        "Port %d" % port,
        "ListenAddress 127.0.0.1",
        "HostKey %s" % (d / "host_key"),
        "PidFile %s" % (d / "sshd.pid"),
        "AuthorizedKeysFile %s" % (d / "authorized_keys"),
        "AuthenticationMethods publickey",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        "StrictModes no",
        "SetEnv PYTHONPATH=%s STRATA_BUILD_DIR=%s" % (pythonpath, build_dir),
        ""]))
    log = open(d / "sshd.log", "w")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail("sshd exited (%s): %s" % (proc.returncode,
                                                      (d / "sshd.log").read_text()))
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("sshd did not listen on %d: %s" % (port,
                                                                 (d / "sshd.log").read_text()))
                time.sleep(0.1)
        yield port, str(d / "client_key"), user, d
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()


def test_swarm_over_a_popen_and_an_ssh_gateway(private_sshd, tmp_path):
    port, key, user, d = private_sshd
    remote_dir = tmp_path / "remote"  # the ssh gateway's working dir: xdist rsyncs into it
    ssh_opts = ("-F /dev/null -p %d -i %s -o IdentitiesOnly=yes -o BatchMode=yes "
                "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
                % (port, key))
    ssh_spec = "ssh=%s %s@127.0.0.1//python=/usr/bin/python3//chdir=%s" % (ssh_opts, user,
                                                                           remote_dir)
    # The remote side works over ssh before xdist is involved (a clear failure if it does not).
    probe = subprocess.run(["ssh"] + ssh_opts.split() + ["%s@127.0.0.1" % user,
                           "/usr/bin/python3 -c 'import _strata, strata; print(\"ok\")'"],
                           capture_output=True, text=True, timeout=20)
    assert probe.stdout.strip() == "ok", (probe, (d / "sshd.log").read_text())

    started = time.monotonic()
    r = subprocess.run(
        ["/usr/bin/python3", "-m", "pytest", "-v", "-rN", "-p", "no:cacheprovider",
         os.path.join(REPO, CANARY),  # absolute: xdist maps it to the rsynced copy
         "--canary", "--seeds=1-24", "--dist=load",
         "--tx", "popen//python=/usr/bin/python3", "--tx", ssh_spec,
         "--rsyncdir", os.path.join(REPO, "scenarios")],
        cwd=REPO, capture_output=True, text=True, timeout=50)
    took = time.monotonic() - started
    out = r.stdout + r.stderr
    assert r.returncode in (0, 1), out  # 1: the canary's planted bug found for some seeds
    assert "seeds run: 24 (24 items)" in r.stdout, out
    ran = {gw: len(re.findall(r"^\[%s\] .*(PASSED|FAILED)" % gw, r.stdout, re.M))
           for gw in ("gw0", "gw1")}
    assert ran["gw0"] > 0 and ran["gw1"] > 0 and sum(ran.values()) == 24, (ran, out)
    # gw1 is the ssh gateway: its worker runs in the chdir given to it, as the ssh user.
    assert re.search(r"^\[gw1\] .*cwd: %s" % re.escape(str(remote_dir)), r.stdout, re.M), out
    assert "Accepted publickey for %s" % user in (d / "sshd.log").read_text()
    assert took < 50
