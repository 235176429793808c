"""strata.World: in-process RPC through the daemon's registry, virtual time, run_until, the
single-thread guard, and the JSON <-> Python converter."""

import threading

import pytest

import strata
from strata import RpcError


def test_rpc_returns_python_objects(world):
    v = world.rpc("strata_get_version")
    assert isinstance(v, dict) and "Strata" in v["version"]
    methods = world.rpc("rpc_get_methods")
    for m in ("rpc_get_methods", "strata_get_version", "framework_start_init",
              "framework_wait_init", "save_config", "save_subsystem_config", "load_config",
              "log_set_level", "log_get_level", "thread_get_stats", "thread_get_pollers",
              "framework_get_reactors"):
        assert m in methods


def test_seed_and_reactors_are_reported(world, seed):
    assert world.seed == seed
    assert world.reactors == 2
    assert repr(world).startswith("World(seed=%d, reactors=2" % seed)
    r = world.rpc("framework_get_reactors")
    assert isinstance(r, dict) and len(r["reactors"]) == 2


def test_now_advances_with_advance(world):
    t0 = world.now()
    world.advance(1_000_000)
    assert world.now() == t0 + 1_000_000
    world.advance(0)
    assert world.now() == t0 + 1_000_000
    world.advance(2_500_000_000)
    assert world.now() == t0 + 2_501_000_000
    s0 = world.steps
    world.rpc("thread_get_stats")
    assert world.steps > s0


def test_run_until_predicate_timeout_and_errors(world):
    calls = []

    def pred():
        calls.append(world.now())
        return len(calls) >= 3

    assert world.run_until(pred) is True
    assert len(calls) == 3
    # A predicate that never holds stops at the virtual-time budget (or when idle).
    t0 = world.now()
    assert world.run_until(lambda: False, timeout_ns=5_000_000) is False
    assert world.now() <= t0 + 5_000_000
    assert world.run_until(lambda: False, max_steps=10) is False
    with pytest.raises(ZeroDivisionError):
        world.run_until(lambda: 1 / 0)
    with pytest.raises(TypeError):
        world.run_until(42)


def test_world_is_single_threaded(world):
    # Re-entering the World from a predicate is refused with a clear error...
    with pytest.raises(RuntimeError, match="single-threaded"):
        world.run_until(lambda: world.rpc("strata_get_version") is None)
    # ...and so is driving it from a second Python thread while the first is inside it.
    errors, started, release = [], threading.Event(), threading.Event()

    def hold():
        started.set()
        release.wait(10)
        return True

    t = threading.Thread(target=lambda: world.run_until(hold))
    t.start()
    assert started.wait(10)
    try:
        world.advance(1)
    except RuntimeError as e:
        errors.append(str(e))
    release.set()
    t.join(10)
    assert errors and "single-threaded" in errors[0]
    # Once free, the World works again.
    assert world.rpc("strata_get_version")


def test_close_is_idempotent_and_final(seed):
    w = strata.World(seed=seed)
    w.rpc("strata_get_version")
    w.close()
    w.close()
    assert w.closed
    with pytest.raises(RuntimeError, match="closed"):
        w.rpc("strata_get_version")
    with strata.World(seed=seed) as w2:
        assert w2.rpc("strata_get_version")
    assert w2.closed


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="seed"):
        strata.World(seed=-1)
    with pytest.raises(ValueError, match="reactors"):
        strata.World(seed=1, reactors=0)
    with pytest.raises(ValueError, match="seed"):
        strata.World(seed="1")


def test_json_converter_round_trips():
    import _strata
    v = {"none": None, "t": True, "f": False, "i": -5, "big": 2**64 - 1, "min": -2**63,
         "x": 1.5, "s": "caf\u00e9", "l": [1, [2, {"a": []}]], "d": {}, "tuple": (1, 2)}
    out = _strata.to_json_roundtrip(v)
    assert out == dict(v, tuple=[1, 2])
    assert type(out["t"]) is bool and type(out["i"]) is int and type(out["x"]) is float
    # Numbers are typed as the JSON parser types request text (what the socket server gives a
    # method): non-negative integers unsigned, negative ones signed. A method that takes only an
    # unsigned number (is_number_unsigned) must accept world.rpc(..., nsid=1).
    assert _strata._json_kinds([0, 1, 2**63, 2**64 - 1, -1, -2**63, 1.5]) == [
        "unsigned", "unsigned", "unsigned", "unsigned", "integer", "integer", "float"]
    with pytest.raises(ValueError, match="does not fit"):
        _strata.to_json_roundtrip(2**64)
    with pytest.raises(ValueError, match="float"):
        _strata.to_json_roundtrip(float("nan"))
    with pytest.raises(TypeError, match="keys must be str"):
        _strata.to_json_roundtrip({1: 2})
    with pytest.raises(TypeError, match="cannot convert set"):
        _strata.to_json_roundtrip({1, 2})
    cyc = []
    cyc.append(cyc)
    with pytest.raises(ValueError, match="nested"):
        _strata.to_json_roundtrip(cyc)


def test_rpc_params_that_are_not_json_raise_type_error(world):
    with pytest.raises(TypeError):
        world.rpc("log_set_level", level=object())


def test_logs_reach_python_logging(seed, caplog):
    import logging

    import _strata
    w = strata.World(seed=seed)
    before = w.rpc("log_get_level")
    try:
        with caplog.at_level(logging.DEBUG, logger="strata"):
            w.rpc("log_set_level", level="INFO")
            w.close()  # the framework logs its stop at INFO
    finally:
        _strata.log_set_level(before)
    recs = [r for r in caplog.records if r.name == "strata.app"]
    assert any("stopped" in r.getMessage() for r in recs), caplog.text
    r = recs[-1]
    assert r.levelno == logging.INFO and r.strata_thread == "app_thread"
    assert isinstance(r.strata_time_ns, int)


def test_two_worlds_in_two_threads_with_logging(seed, caplog):
    # Separate Worlds may run in separate Python threads at once, logging into Python's
    # logging (the log sink takes the GIL while the logger's lock is held: no deadlock).
    import logging

    import _strata
    results, errors = {}, []

    def drive(k):
        try:
            for i in range(5):
                with strata.World(seed=seed + k, reactors=2) as w:
                    w.create_thread("t")
                    w.post_marks(["t"], 10)
                    w.run_until_idle()
                    results.setdefault(k, []).append((w.rpc("thread_get_stats"),
                                                      len(w.take_marks()), w.trace_hash()))
        except Exception as e:  # reported below
            errors.append(repr(e))

    with strata.World(seed=seed) as w0:
        before = w0.rpc("log_get_level")
    try:
        with caplog.at_level(logging.DEBUG, logger="strata"):
            _strata.log_set_level("DEBUG")
            ts = [threading.Thread(target=drive, args=(k,)) for k in range(2)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(120)
            assert not any(t.is_alive() for t in ts), "a World thread hung"
    finally:
        _strata.log_set_level(before)
    assert not errors, errors
    for k in range(2):
        assert len(results[k]) == 5 and len(set(map(repr, results[k]))) == 1
    assert any(r.name == "strata.app" for r in caplog.records)
