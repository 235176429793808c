"""The seed-swarm harness itself (scenarios/conftest.py, strata.swarm; docs/user/swarm.md):
seed lists, fault plans, and whole pytest runs over the canary (in a child pytest) that must
report the failing seed, its replay command and the seed summary, with and without xdist."""

import os
import re
import subprocess

import pytest

from strata.swarm import FaultPlan, parse_seeds, swarm_seed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CANARY = "scenarios/test_swarm_canary.py"
FAILING_SEED = 217  # the canary's planted bug fires for this seed (deterministic simulator)


def test_parse_seeds():
    assert parse_seeds("17") == [17]
    assert parse_seeds("1-5") == [1, 2, 3, 4, 5]
    assert parse_seeds("3, 9-11,3") == [3, 9, 10, 11]
    assert parse_seeds("0x10") == [16]
    for bad in ["", "x", "5-1", "1-", "-3", "1-2-3"]:
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_swarm_seeds_and_fault_plans_are_functions_of_their_inputs():
    assert swarm_seed(7, 3) == swarm_seed(7, 3)
    assert len({swarm_seed(7, k) for k in range(1000)}) == 1000
    assert swarm_seed(7, 0) != swarm_seed(8, 0)
    a, b = FaultPlan(42), FaultPlan(42)
    assert a.enabled == b.enabled and a.choice("x", range(100)) == b.choice("x", range(100))
    plans = [FaultPlan(s) for s in range(200)]
    assert len({tuple(sorted(p.enabled.items())) for p in plans}) > 50  # plans vary
    assert any(not p.enabled for p in plans) and any(len(p.enabled) == 4 for p in plans)
    assert all(p.rate(f) in FaultPlan.RATES for p in plans for f in p.enabled)


def pytest_run(*args):
    env = dict(os.environ)
    return subprocess.run(["/usr/bin/python3", "-m", "pytest", "-q", "-rN", "-p",
                           "no:cacheprovider"] + list(args),
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def test_failing_seed_prints_replay_and_summary():
    r = pytest_run(CANARY, "--canary", "--seeds", "%d,1" % FAILING_SEED)
    assert r.returncode == 1, r.stdout + r.stderr
    cmd = ("/usr/bin/python3 -m pytest "
           "'scenarios/test_swarm_canary.py::test_canary_retry_always_succeeds[%d]' "
           "--seeds %d --canary" % (FAILING_SEED, FAILING_SEED))
    assert cmd in r.stdout, r.stdout
    assert "seeds run: 2 (2 items), failed: 1 (%d)" % FAILING_SEED in r.stdout, r.stdout
    assert re.search(r"time per seed: mean [0-9.]+ s", r.stdout), r.stdout


def test_canary_is_deselected_without_the_flag():
    r = pytest_run(CANARY, "--seeds", str(FAILING_SEED))
    assert r.returncode == 5 and "1 deselected" in r.stdout, r.stdout  # 5: no tests ran


def test_xdist_workers_report_to_the_controller():
    r = pytest_run(CANARY, "--canary", "--seeds", "1-40", "--tx", "2*popen//python=/usr/bin/python3",
                   "--dist", "load")
    assert "seeds run: 40 (40 items)" in r.stdout, r.stdout + r.stderr
    assert r.returncode in (0, 1), r.stdout + r.stderr


def test_swarm_stops_at_its_deadline_and_names_its_base():
    r = pytest_run(CANARY, "--canary", "-n", "2", "--swarm-minutes=0.05", "--swarm-base=5",
                   "--swarm-slots=20000")
    assert "strata swarm: base seed 5" in r.stdout and "swarm base seed: 5" in r.stdout, r.stdout
    m = re.search(r"seeds run: (\d+)", r.stdout)
    assert m and 10 < int(m.group(1)) < 20000, r.stdout  # ran some, stopped before the slots ran out
    assert re.search(r"in (\d+\.\d+)s", r.stdout.splitlines()[-1])
    assert float(re.search(r"in (\d+\.\d+)s", r.stdout.splitlines()[-1]).group(1)) < 30
