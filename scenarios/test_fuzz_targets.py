"""The libFuzzer targets from Python (strata.fuzz; docs/user/fuzzing.md): entry points run in
process, crash inputs replay in a child process, structure-aware generators feed the targets
and write seed corpora."""

import os
import random

import pytest

import strata.fuzz as fz

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(REPO, "fuzz", "corpus")


def linked():
    try:
        return fz.targets()
    except RuntimeError as e:  # the tree always links them: a module without them is a bug
        pytest.fail(str(e))


def test_targets_are_linked():
    assert {"canary", "iscsi_pdu", "iscsi_login", "nvmf_tcp_pdu"} <= set(linked())
    with pytest.raises(ValueError, match="unknown fuzz target 'nope'"):
        fz.run("nope", b"")


@pytest.mark.parametrize("target", ["iscsi_pdu", "iscsi_login", "nvmf_tcp_pdu"])
def test_checked_in_corpus_runs_in_process(target):
    linked()
    d = os.path.join(CORPUS, target)
    files = sorted(os.listdir(d))
    assert files, d
    for name in files:
        with open(os.path.join(d, name), "rb") as f:
            assert fz.run(target, f.read()) == 0


def test_canary_crash_replays_and_a_good_input_does_not():
    linked()
    bad = fz.replay("canary", b"CANARY and more")
    assert bad.crashed, bad  # __builtin_trap: SIGILL
    good = fz.replay("canary", b"CANARX")
    assert not good.crashed and good.returncode == 0, good
    assert fz.run("canary", b"CANARX") == 0


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


def test_nvme_model_inputs_replay_through_the_binary(tmp_path):
    exe = os.path.join(fz._build_dir(), "fuzz", "fuzz_nvme_model")
    if not os.path.exists(exe):
        pytest.skip("fuzz_nvme_model is not built (ninja -C build/dev fuzz_nvme_model)")
    for data in fz.nvme_command_inputs(random.Random(1), 4):
        r = fz.replay("nvme_model", data)
        assert not r.crashed and r.returncode == 0, r


def test_write_corpus(tmp_path):
    inputs = fz.iscsi_inputs(random.Random(2), 5)
    paths = fz.write_corpus(str(tmp_path / "iscsi_pdu"), inputs)
    assert len(set(paths)) == 5
    assert sorted(open(p, "rb").read() for p in paths) == sorted(inputs)
