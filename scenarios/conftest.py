"""Scenario harness: seeded `world` fixture, `daemon` fixtures, seed swarms, replay on failure.

Every test that uses `seed` (directly or through `world`, `cluster`, `fault_plan`) runs with:
- no option: a fresh random seed per test;
- --seed N: seed N (not part of the test id);
- --seeds SPEC ('17', '1-5000', '3,9-11'): each seed its own test item, id ending in the seed;
- --swarm-minutes M: fresh seeds (a new swarm base each run, --swarm-base to repeat one) until M
  minutes are up, interleaved over every seed-taking test and spread over xdist workers.
A failing test's report gets a "strata seed" section with the one-line replay command, e.g.

    /usr/bin/python3 -m pytest 'scenarios/test_x.py::test_y[8-17]' --seeds 17

and the terminal summary lists seeds run, failed, time per seed (docs/user/swarm.md). Tests
marked `canary` (a planted bug the swarm must find) run only with --canary.
"""

import os
import random
import shlex
import sys
import time

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
    g.addoption("--seeds", default=None, metavar="SPEC",
                help="run every seed-taking test once per seed, each seed one item: "
                     "'17', '1-5000' (a count N is 1-N), '3,9-11'")
    g.addoption("--swarm-minutes", type=float, default=None, metavar="M",
                help="swarm: keep running seed-taking tests with fresh seeds (and fault plans) "
                     "until M minutes have passed, across xdist workers")
    g.addoption("--swarm-base", type=lambda s: int(s, 0), default=None, metavar="B",
                help="swarm: base seed that decides the swarm's seeds (default: fresh, printed)")
    g.addoption("--swarm-slots", type=int, default=None, metavar="K",
                help="swarm: seeds per test to collect (default: about 20000 items in all)")
    g.addoption("--canary", action="store_true", default=False,
                help="also run tests marked canary (planted bugs the swarm must find)")


def _swarm_setup(config):
    """On the controller (or a plain run): fix the swarm's base seed and deadline. An xdist
    worker takes both from the controller (pytest_configure_node), so all of them agree."""
    if config.getoption("swarm_minutes") is None:
        return
    if hasattr(config, "workerinput"):
        config.option.swarm_base, config.option.strata_swarm_deadline = \
            config.workerinput["strata_swarm"]
        return
    if config.getoption("seeds") is not None:
        raise pytest.UsageError("--seeds and --swarm-minutes exclude each other")
    if config.option.swarm_base is None:
        config.option.swarm_base = random.SystemRandom().randrange(1, 2**63)
    config.option.strata_swarm_deadline = time.time() + 60.0 * config.option.swarm_minutes


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist (controller): hand the swarm's base seed and deadline to each worker."""
    cfg = node.config
    if cfg.getoption("swarm_minutes") is not None:
        node.workerinput["strata_swarm"] = (cfg.option.swarm_base,
                                            cfg.option.strata_swarm_deadline)


def pytest_configure(config):
    config.addinivalue_line("markers", "canary: planted bug the seed swarm must find "
                                       "(runs only with --canary)")
    _swarm_setup(config)
    config.pluginmanager.register(_SeedTally(config), "strata-seed-tally")
    if config.getoption("seeds") is not None:
        from strata.swarm import parse_seeds
        try:
            config._strata_seed_list = parse_seeds(config.getoption("seeds"))
        except ValueError as e:
            raise pytest.UsageError("--seeds: %s" % e)
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
    canary = " --canary" if item.get_closest_marker("canary") else ""
    if getattr(item, "callspec", None) is not None and "seed" in item.callspec.params:
        # The seed is part of the id; --seeds N generates that very id again.
        return "/usr/bin/python3 -m pytest %s --seeds %d%s" % (
            shlex.quote(path + "::" + sel), seed, canary)
    return "/usr/bin/python3 -m pytest %s --seed %d%s" % (shlex.quote(path + "::" + sel), seed,
                                                            canary)


def _swarm_seeds(metafunc):
    """The swarm's seeds for one test function: --swarm-slots, or enough items to fill the
    time at a few ms each (at most 20000 per function with its other parameters, which keeps
    collection around a second)."""
    from strata.swarm import swarm_seed
    config = metafunc.config
    slots = config.getoption("swarm_slots")
    if not slots:
        combos = 1
        for m in metafunc.definition.iter_markers("parametrize"):
            combos *= max(1, len(m.args[1]) if len(m.args) > 1 else 1)
        budget = min(20000, max(200, int(config.option.swarm_minutes * 60 * 150)))
        slots = max(10, budget // combos)
    return [swarm_seed(config.option.swarm_base, k) for k in range(slots)]


def pytest_generate_tests(metafunc):
    if "seed" not in metafunc.fixturenames:
        return
    cfg = metafunc.config
    if cfg.getoption("swarm_minutes") is not None:
        seeds = _swarm_seeds(metafunc)
    else:
        seeds = getattr(cfg, "_strata_seed_list", None)
    if seeds is not None:
        metafunc.parametrize("seed", seeds, indirect=True, ids=[str(s) for s in seeds])


def pytest_collection_modifyitems(session, config, items):
    if not config.getoption("canary"):
        kept = [i for i in items if not i.get_closest_marker("canary")]
        if len(kept) != len(items):
            config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("canary")])
            items[:] = kept
    if config.getoption("swarm_minutes") is not None:
        # Slot-major order: every seed-taking test gets its first seeds before anyone's later
        # ones, so a short swarm still covers every scenario (xdist hands out items in order).
        def slot(item):
            cs = getattr(item, "callspec", None)
            if cs is None or "seed" not in cs.params:
                return -1
            return cs.indices.get("seed", 0)
        items.sort(key=slot)  # stable: file order within a slot


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    deadline = getattr(item.config.option, "strata_swarm_deadline", None)
    if deadline is not None and time.time() >= deadline:
        return True  # swarm time is up: the remaining items are not run (and not reported)
    return None


@pytest.fixture
def seed(request):
    """The test's seed (--seeds/swarm parameter, --seed, or random), recorded for replay."""
    s = getattr(request, "param", None)
    if s is None:
        s = request.config.getoption("seed")
    if s is None:
        s = random.SystemRandom().randrange(1, 2**63)
    request.node.strata_seed = s
    return s


@pytest.fixture
def fault_plan(seed):
    """strata.swarm.FaultPlan(seed): which faults this run enables and their rates."""
    from strata.swarm import FaultPlan
    return FaultPlan(seed)


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
    if s is None:
        return
    # user_properties travel with the report from an xdist worker to the controller.
    rep.user_properties.append(("strata_seed", s))
    if rep.failed:
        cmd = _replay_command(item, s)
        rep.sections.append(("strata seed", "seed %d\nreplay: %s" % (s, cmd)))
        rep.user_properties.append(("strata_replay", cmd))


class _SeedTally:
    """Plugin (one per session, registered in pytest_configure) that tallies seeded reports on
    the controller: seeds run, failed, time per seed. Works the same with and without xdist,
    whose workers' reports come to the controller's pytest_runtest_logreport."""

    def __init__(self, config):
        self.config = config
        self.time = {}       # seed -> seconds over its items' phases
        self.items = set()   # nodeids of seeded items that ran
        self.failed = {}     # replay command -> seed, in order of failure

    def pytest_runtest_logreport(self, report):
        props = dict(report.user_properties)
        s = props.get("strata_seed")
        if s is None:
            return
        self.time[s] = self.time.get(s, 0.0) + report.duration
        self.items.add(report.nodeid)
        cmd = props.get("strata_replay")
        if cmd is not None and cmd not in self.failed:
            self.failed[cmd] = s

    def pytest_sessionstart(self, session):
        cfg = self.config
        if cfg.getoption("swarm_minutes") is not None and not hasattr(cfg, "workerinput"):
            tr = cfg.pluginmanager.get_plugin("terminalreporter")
            if tr is not None:
                tr.write_line("strata swarm: base seed %d, %.2f minutes" % (
                    cfg.option.swarm_base, cfg.option.swarm_minutes))

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config):
        if not self.time:
            return
        tr = terminalreporter
        if self.failed:
            tr.section("strata: replay failing seeds")
            for c in self.failed:
                tr.write_line(c)
        times = sorted(self.time.values())
        slow = max(self.time, key=self.time.get)
        failed = sorted(set(self.failed.values()))
        shown = ", ".join(str(s) for s in failed[:20]) + (", ..." if len(failed) > 20 else "")
        tr.section("strata seeds")
        tr.write_line("seeds run: %d (%d items), failed: %d%s" % (
            len(self.time), len(self.items), len(failed), " (%s)" % shown if failed else ""))
        tr.write_line("time per seed: mean %.3f s, median %.3f s, max %.3f s (seed %d)" % (
            sum(times) / len(times), times[len(times) // 2], self.time[slow], slow))
        if config.getoption("swarm_minutes") is not None:
            tr.write_line("swarm base seed: %d (repeat with --swarm-base %d and the same options)"
                          % (config.option.swarm_base, config.option.swarm_base))


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
