"""The libFuzzer targets from Python (strata.fuzz; docs/user/fuzzing.md): every target runs in
process (its state per Target object), with the verdict its replay binary gives; crash inputs
replay in a child process; structure-aware generators feed the targets and write seed corpora."""

import json
import logging
import os
import random

import pytest

import strata
import strata.fuzz as fz

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(REPO, "fuzz", "corpus")
SOURCES = sorted(n[:-4] for n in os.listdir(os.path.join(REPO, "fuzz"))
                 if n.endswith(".cpp") and n != "replay_main.cpp")


def linked():
    try:
        return fz.targets()
    except RuntimeError as e:  # the tree always links them: a module without them is a bug
        pytest.fail(str(e))


def test_every_target_is_linked():
    assert sorted(linked()) == SOURCES
    with pytest.raises(ValueError, match="unknown fuzz target 'nope'"):
        fz.run("nope", b"")
    with pytest.raises(ValueError, match="unknown fuzz target 'nope'"):
        fz.Target("nope")


@pytest.mark.parametrize("target", [t for t in SOURCES if t != "canary"])
def test_corpus_same_verdict_in_process_and_replay(target):
    """The checked-in corpus passes in process (one Target for the whole corpus, as the replay
    binary keeps one state) and through the replay binary (ctest's fuzz_replay_<target>)."""
    linked()
    d = os.path.join(CORPUS, target)
    assert fz.run_files(target, [d]) == len(fz.corpus_files([d])) > 0  # an abort would kill us
    if not os.path.exists(fz.replay_binary(target)):
        pytest.skip("%s is not built (ninja -C build/dev fuzz_%s)" % (fz.replay_binary(target),
                                                                     target))
    r = fz.replay(target, d, via="binary", timeout=300)
    assert not r.crashed and r.returncode == 0, r


@pytest.mark.parametrize("via", ["python", "binary"])
def test_canary_crash_replays_and_a_good_input_does_not(via):
    linked()
    if via == "binary" and not os.path.exists(fz.replay_binary("canary")):
        pytest.skip("fuzz_canary is not built")
    bad = fz.replay("canary", b"CANARY and more", via=via)
    assert bad.crashed, bad  # __builtin_trap: SIGILL
    good = fz.replay("canary", b"CANARX", via=via)
    assert not good.crashed and good.returncode == 0, good
    assert fz.run("canary", b"CANARX") == 0


def _jsonrpc_input(*requests):
    text = "".join(json.dumps(dict(jsonrpc="2.0", id=i, method=m, params=p))
                   for i, (m, p) in enumerate(requests))
    return bytes([0]) + text.encode()


def test_targets_own_their_state_and_leave_worlds_and_logs_alone(caplog):
    """Each Target's App lives in its own Host: a bdev one creates is neither another's nor a
    World's; a closed Target refuses inputs; a target's log records reach Python (the targets
    silence logging only in a fuzzer process), still after every target's set-up ran."""
    linked()
    strata.logs.capture()
    create = ("bdev_malloc_create", {"name": "Dup", "num_blocks": 64, "block_size": 512})
    with strata.World(seed=3) as w:
        a, b = fz.Target("jsonrpc"), fz.Target("jsonrpc")
        assert a.stateful and not fz.Target("canary").stateful
        assert a.run(_jsonrpc_input(create)) == 0
        assert b.run(_jsonrpc_input(create)) == 0
        assert [x["name"] for x in w.rpc("bdev_get_bdevs")] == []
        w.rpc("bdev_malloc_create", name="Dup", num_blocks=64, block_size=512)  # no clash
        assert [x["name"] for x in w.rpc("bdev_get_bdevs")] == ["Dup"]
        a.close()
        b.close()
        with pytest.raises(RuntimeError, match="closed"):
            a.run(b"")
        assert [x["name"] for x in w.rpc("bdev_get_bdevs")] == ["Dup"]  # the World's, untouched
    def logs_reach_python():
        with caplog.at_level(logging.DEBUG, logger="strata"):
            caplog.clear()
            fz.run_files("nvme_completion", [os.path.join(CORPUS, "nvme_completion")])
            return [r for r in caplog.records if "rejected completion" in r.getMessage()]

    assert logs_reach_python()  # a target's own log records go to Python's logging
    for t in SOURCES:  # every target's state built and destroyed in this process
        if t != "canary":
            fz.run(t, b"")
    assert logs_reach_python(), "a target took the log sink away from Python"


def test_generated_inputs_run(seed):
    linked()
    rng = random.Random(seed)
    for data in fz.iscsi_inputs(rng, 12):
        assert fz.run("iscsi_pdu", data) == 0
    for data in fz.nvmf_tcp_inputs(rng, 12):
        assert fz.run("nvmf_tcp_pdu", data) == 0


def test_nvme_command_generator_shapes():
    rng = random.Random(5)
    s = fz.nvme_rw(fz.NVME_WRITE, 0x1_0000_0002, 8, cid=3)
    assert len(s) == 64 and s[0] == 0x01 and s[2:4] == b"\x03\x00"
    assert s[40:48] == (0x1_0000_0002).to_bytes(8, "little") and s[48] == 7
    field, m = fz.mutate_sqe(s, rng)
    diff = [i for i in range(64) if m[i] != s[i]]
    off, size = fz.SQE_FIELDS[field]
    assert all(off <= i < off + size for i in diff), (field, diff)
    inp = fz.nvme_model_input([s])
    assert inp[0] == 0 and inp[1] == 0x81 and inp[3:] == s


def test_nvme_model_inputs_run_in_process_and_replay(seed):
    linked()
    inputs = fz.nvme_command_inputs(random.Random(seed), 4)
    with fz.Target("nvme_model") as t:
        for data in inputs:
            assert t.run(data) == 0
    if not os.path.exists(fz.replay_binary("nvme_model")):
        pytest.skip("fuzz_nvme_model is not built (ninja -C build/dev fuzz_nvme_model)")
    r = fz.replay("nvme_model", inputs[0], via="binary")
    assert not r.crashed and r.returncode == 0, r


def test_write_corpus(tmp_path):
    inputs = fz.iscsi_inputs(random.Random(2), 5)
    paths = fz.write_corpus(str(tmp_path / "iscsi_pdu"), inputs)
    assert len(set(paths)) == 5
    assert sorted(open(p, "rb").read() for p in paths) == sorted(inputs)
