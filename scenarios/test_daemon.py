"""strata-tgt as users run it: start with a JSON config (SPDK layout), save_config over the
socket, clean SIGTERM/SIGINT stop, bad configs, socket permissions, save/load round trip."""

import json
import os
import signal
import stat

import pytest

from strata.daemon import Daemon, DaemonError, run_strata_tgt

# Only framework built-ins exist yet; the "log" subsystem's entries are log_set_level calls.
CONFIG = {
    "subsystems": [
        {"subsystem": "log", "config": [
            {"method": "log_set_level", "params": {"level": "NOTICE"}},
        ]},
    ]
}


def find_entry(config, subsystem, method):
    for s in config["subsystems"]:
        if s["subsystem"] == subsystem:
            return [e for e in s["config"] if e["method"] == method]
    return []


def test_start_with_config_save_config_and_sigterm(strata_tgt):
    # A socket outside the Daemon helper's private directory, so its removal is the daemon's.
    d = strata_tgt(config=CONFIG, cpumask="0x1",
                   socket="/tmp/strata-test-%d-%d.sock" % (os.getpid(), id(CONFIG)))
    saved = d.client.call("save_config")
    assert isinstance(saved["subsystems"], list)
    names = [s["subsystem"] for s in saved["subsystems"]]
    assert "log" in names
    assert find_entry(saved, "log", "log_set_level")
    assert d.client.call("log_get_level").upper() == "NOTICE"
    sock = d.socket
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert d.stop(signal.SIGTERM) == 0
    assert not os.path.exists(sock), "the socket must be removed on a clean stop"


def test_sigint_stops_cleanly(strata_tgt):
    d = strata_tgt(socket="/tmp/strata-test-int-%d.sock" % os.getpid(), log_flags=["rpc"])
    assert d.stop(signal.SIGINT) == 0
    assert not os.path.exists(d.socket)


def test_prints_where_it_listens(strata_tgt):
    d = strata_tgt()
    d.stop()
    assert d.socket in d.stdout + d.stderr


def test_save_load_round_trip_through_a_file(strata_tgt, tmp_path):
    d1 = strata_tgt(config=CONFIG)
    d1.client.call("log_set_level", level="INFO")
    saved = d1.client.call("save_config")
    d1.stop()
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(saved, indent=2))
    d2 = strata_tgt(config=str(path))
    assert d2.client.call("save_config") == saved
    assert d2.client.call("log_get_level").upper() == "INFO"
    # load_config over RPC applies a config to a running daemon too.
    d2.client.call("load_config", **CONFIG)
    assert d2.client.call("log_get_level").upper() == "NOTICE"


def test_save_subsystem_config(daemon):
    log = daemon.client.call("save_subsystem_config", name="log")
    assert log["subsystem"] == "log" and isinstance(log["config"], list)


@pytest.mark.parametrize("text,expect", [
    ('{"subsystems": [ {"subsystem": "log", "config": [', "line"),
    ('{"subsystems": [{"subsystem": "log", "config": [{"method": "no_such_method"}]}]}',
     "no_such_method"),
    ('{"subsystems": [{"subsystem": "log", "config": [{"method": "log_set_level", '
     '"params": {"level": 7}}]}]}', "level"),
    ('{"subsystems": [{"subsystem": "no_such_subsystem", "config": []}]}', "no_such_subsystem"),
    ('[1, 2]', "JSON object"),
])
def test_bad_config_exits_non_zero_with_a_clear_message(tmp_path, text, expect):
    path = tmp_path / "bad.json"
    path.write_text(text)
    sock = "/tmp/strata-bad-%d.sock" % os.getpid()
    p = run_strata_tgt(["-r", sock, "--json", str(path)])
    assert p.returncode != 0
    assert expect in p.stderr + p.stdout, p.stderr
    assert not os.path.exists(sock)


def test_missing_config_file(tmp_path):
    p = run_strata_tgt(["-r", str(tmp_path / "s.sock"), "--json", str(tmp_path / "nope.json")])
    assert p.returncode != 0
    assert "nope.json" in p.stderr + p.stdout


def test_bad_command_line():
    p = run_strata_tgt(["--no-such-flag"])
    assert p.returncode != 0
    assert "no-such-flag" in p.stderr + p.stdout
    p = run_strata_tgt(["-m", "zzz"])
    assert p.returncode != 0


def test_daemon_helper_reports_early_exit(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{")
    d = Daemon(config=str(path), start_timeout=10)
    with pytest.raises(DaemonError, match="exited with"):
        d.start()


def test_cpumask_sets_the_reactors(strata_tgt):
    d = strata_tgt(cpumask="0x3")
    r = d.client.call("framework_get_reactors")
    assert [x["lcore"] for x in r["reactors"]] == [0, 1]
    assert r["simulated"] is False


def test_env_dpdk_without_hugepages_or_pci(strata_tgt):
    """--env dpdk brings DPDK's EAL up before anything else (here on anonymous memory and with
    the PCI bus off, which works on any host) and the daemon serves RPC as usual."""
    d = strata_tgt(args=["--env", "dpdk", "--no-huge", "--no-pci"])
    assert d.client.call("strata_get_version")["version"].startswith("Strata")
    assert d.stop(signal.SIGTERM) == 0
    assert "environment dpdk" in d.stderr
    assert "IOVA mode va" in d.stderr


@pytest.mark.parametrize("args, message", [
    (["--env", "vfio"], "unknown environment"),
    (["--env", "dpdk", "--iova-mode", "io"], "expected auto, va or pa"),
    (["--env", "dpdk", "--no-huge", "--no-pci", "--huge-dir", "/nonexistent"], "--env dpdk"),
])
def test_env_errors_are_clear(args, message):
    r = run_strata_tgt(args + ["-r", "/tmp/strata-test-env-%d.sock" % os.getpid()])
    assert r.returncode != 0
    assert message in r.stderr
