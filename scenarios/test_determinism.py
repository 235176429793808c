"""Same seed, same run: a World's trace hash and results depend only on its seed and workload.

The built-in methods are mostly serial on the app Thread; the ones that visit every Thread
(thread_get_stats, thread_get_pollers, framework_get_reactors) are where reactors interleave,
so the workload leans on them to show that different seeds order the world differently."""

import pytest

import strata


def workload(w):
    results = []
    for i in range(6):
        results.append(w.rpc("thread_get_stats"))
        results.append(w.rpc("thread_get_pollers"))
        results.append(w.rpc("framework_get_reactors"))
        w.advance(250_000 * (i + 1))
        results.append(w.rpc("log_get_level"))
    results.append(w.rpc("save_config"))
    return results, w.trace_hash(), w.now(), w.steps


def run(seed, reactors=4):
    with strata.World(seed=seed, reactors=reactors) as w:
        return workload(w)


def test_same_seed_same_trace_and_results(seed):
    a = run(seed)
    b = run(seed)
    assert a[1] == b[1], "trace hash differs for seed %d" % seed
    assert a[0] == b[0]
    assert a[2:] == b[2:]


def test_different_seeds_differ(seed):
    base = run(seed)[1]
    others = {run(seed + k)[1] for k in range(1, 6)}
    # Five other seeds: at least one interleaves the reactors differently.
    assert others != {base}


def test_world_fixture_seed_replays(world, seed):
    first = workload(world)
    assert first == run(seed, reactors=2)


def test_save_load_round_trip_in_world(seed):
    with strata.World(seed=seed) as w1:
        w1.rpc("log_set_level", level="INFO")
        saved = w1.rpc("save_config")
    try:
        with strata.World(seed=seed, config=saved) as w2:
            assert w2.rpc("save_config") == saved
        with strata.World(seed=seed + 1) as w3:
            w3.rpc("load_config", **saved)
            assert w3.rpc("save_config") == saved
    finally:
        with strata.World(seed=seed) as w:
            w.rpc("log_set_level", level="NOTICE")


def test_bad_config_in_world_raises(seed):
    bad = {"subsystems": [{"subsystem": "log", "config": [{"method": "no_such_method"}]}]}
    with pytest.raises(RuntimeError, match="no_such_method"):
        strata.World(seed=seed, config=bad)
