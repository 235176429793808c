"""strata-rpc end to end against a real strata-tgt."""

import json
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(REPO, "bindings", "python", "bin", "strata-rpc")


def cli(daemon, *args):
    return subprocess.run([CLI, "-s", daemon.socket, *args], capture_output=True, text=True,
                          timeout=60)


def test_method_call_prints_json(daemon):
    p = cli(daemon, "strata_get_version")
    assert p.returncode == 0, p.stderr
    assert "Strata" in json.loads(p.stdout)["version"]


def test_params_and_raw_call(daemon):
    p = cli(daemon, "log_set_level", "--level", "INFO")
    assert p.returncode == 0, p.stderr
    p = cli(daemon, "call", "log_get_level", "{}")
    assert p.returncode == 0 and json.loads(p.stdout).upper() == "INFO"
    p = cli(daemon, "save_subsystem_config", "--name", "log")
    assert p.returncode == 0 and json.loads(p.stdout)["subsystem"] == "log"


def test_help_lists_daemon_methods(daemon):
    p = cli(daemon, "--help")
    assert p.returncode == 0
    assert "from rpc_get_methods" in p.stdout
    for m in ("save_config", "framework_get_reactors", "thread_get_pollers"):
        assert "  %s\n" % m in p.stdout
    marked = [ln.split()[0] for ln in p.stdout.splitlines() if "not callable" in ln]
    # Startup-only methods (framework_start_init, accel_set_options, ...) are marked now that
    # the daemon is initialized; runtime methods are not.
    assert "framework_start_init" in marked and "accel_set_options" in marked
    assert not {"save_config", "bdev_get_bdevs", "log_set_level"} & set(marked)


def test_help_marks_methods_not_callable_yet(strata_tgt):
    d = strata_tgt(wait_for_rpc=True)
    p = cli(d, "--help")
    assert p.returncode == 0
    line = [ln for ln in p.stdout.splitlines() if ln.strip().startswith("thread_get_stats")][0]
    assert "not callable in the current state" in line


@pytest.mark.parametrize("args,code,text", [
    (["no_such_method"], 4, "error -32601"),
    (["log_get_level", "--foo", "1"], 5, "unknown parameter 'foo'"),
    (["log_set_level", "--level", "7"], 5, "level"),
    (["call", "log_get_level", "[1"], 2, "not valid JSON"),
])
def test_error_exit_codes(daemon, args, code, text):
    p = cli(daemon, *args)
    assert p.returncode == code, (p.stdout, p.stderr)
    assert text in p.stderr
    if code != 2:
        assert p.stderr.startswith("error -32")


def test_invalid_state_exit_code(strata_tgt):
    d = strata_tgt(wait_for_rpc=True)
    p = cli(d, "thread_get_stats")
    assert p.returncode == 1 and "error -1:" in p.stderr
    assert cli(d, "framework_start_init").returncode == 0


def test_method_help(daemon):
    p = cli(daemon, "save_config", "--help")
    assert p.returncode == 0 and "serves save_config (callable now)" in p.stdout
    assert "docs/user/rpc.md" in p.stdout
    p = cli(daemon, "no_such_method", "--help")
    assert p.returncode == 4 and "does not serve no_such_method" in p.stdout
