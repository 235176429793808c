"""Scenario harness: seeded `world` fixture, `daemon` fixtures, replay instructions on failure.

Every test that uses `world` (or `seed`) runs with the seed given by --seed, or a fresh random
one; when it fails, its report gets a "strata seed" section with the command that replays it:

    /usr/bin/python3 -m pytest scenarios/test_x.py::test_y --seed 1234
"""

import os
import random
import shlex
import sys

import pytest

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PKG = os.path.join(_REPO, "bindings", "python")
if _PKG not in sys.path:
    sys.path.insert(0, _PKG)  # the pure-Python package, even without ci/env.sh

_HELP = ("The Strata Python module is not importable (%s).\n"
         "Build it and set up the environment from the repo root:\n"
         "    cmake --preset dev && ninja -C build/dev strata_python\n"
         "    source ci/env.sh      # sets PYTHONPATH to bindings/python and build/<preset>/bindings\n"
         "then run: /usr/bin/python3 -m pytest scenarios")


def pytest_addoption(parser):
    g = parser.getgroup("strata")
    g.addoption("--seed", type=lambda s: int(s, 0), default=None,
                help="simulation seed for the world/seed fixtures (default: a fresh random one)")


def pytest_configure(config):
    try:
        import _strata  # noqa: F401
        import strata  # noqa: F401
    except ImportError as e:
        if os.environ.get("STRATA_SCENARIOS_NO_NATIVE") == "1":
            return  # pure-Python tests only (client, CLI); World tests then fail clearly
        raise pytest.UsageError(_HELP % e)
    import strata.logs
    strata.logs.capture(True)  # C++ log records -> logging: shown in failing tests' reports


def _replay_command(item, seed):
    try:
        path = os.path.relpath(str(item.path), str(item.config.invocation_params.dir))
    except ValueError:
        path = str(item.path)
    sel = item.nodeid.split("::", 1)[1] if "::" in item.nodeid else item.name
    return "/usr/bin/python3 -m pytest %s --seed %d" % (shlex.quote(path + "::" + sel), seed)


@pytest.fixture
def seed(request):
    """The test's seed (--seed or random), recorded for the replay hint."""
    s = request.config.getoption("seed")
    if s is None:
        s = random.SystemRandom().randrange(1, 2**63)
    request.node.strata_seed = s
    return s


@pytest.fixture
def world(request, seed):
    """A strata.World on the seeded simulator (reactors from @pytest.mark.world, default 2)."""
    import strata
    m = request.node.get_closest_marker("world")
    reactors = m.kwargs.get("reactors", 2) if m else 2
    w = strata.World(seed=seed, reactors=reactors)
    # Log levels are process-wide: give them back as found so tests stay independent.
    levels = (w.rpc("log_get_level"), w.rpc("log_get_print_level"))
    yield w
    if not w.closed:
        w.rpc("log_set_level", level=levels[0])
        w.rpc("log_set_print_level", level=levels[1])
        w.close()
    else:
        import _strata
        _strata.log_set_level(levels[0])


@pytest.fixture
def cluster(request, seed):
    """A strata.Cluster on the seeded simulator (reactors from @pytest.mark.world, default 2),
    with no hosts yet: add them with cluster.host(name). Every host is closed after the test."""
    import strata
    m = request.node.get_closest_marker("world")
    reactors = m.kwargs.get("reactors", 2) if m else 2
    c = strata.Cluster(seed=seed, reactors=reactors)
    yield c
    c.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    s = getattr(item, "strata_seed", None)
    if s is not None and rep.failed:
        cmd = _replay_command(item, s)
        rep.sections.append(("strata seed", "seed %d\nreplay: %s" % (s, cmd)))
        item.config._strata_failed_seeds = getattr(item.config, "_strata_failed_seeds", [])
        if cmd not in item.config._strata_failed_seeds:
            item.config._strata_failed_seeds.append(cmd)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    cmds = getattr(config, "_strata_failed_seeds", [])
    if cmds:
        terminalreporter.section("strata: replay failing seeds")
        for c in cmds:
            terminalreporter.write_line(c)


@pytest.fixture
def strata_tgt():
    """Factory: strata_tgt(config=..., wait_for_rpc=..., ...) starts a strata-tgt (see
    strata.daemon.Daemon); every daemon still running at teardown is stopped and must exit 0."""
    from strata.daemon import Daemon
    started = []

    def start(**kw):
        d = Daemon(**kw)
        started.append(d)
        d.start()
        return d

    yield start
    errors = []
    for d in started:
        if d.proc is not None and d.returncode is None:
            try:
                d.stop()
            except Exception as e:  # report every daemon, not just the first
                errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


@pytest.fixture
def daemon(strata_tgt):
    """A running strata-tgt with no config on a private socket (exit 0 checked at teardown)."""
    return strata_tgt()
