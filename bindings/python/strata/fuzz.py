"""The libFuzzer targets from Python (docs/user/fuzzing.md): run, replay, structure-aware inputs.

    import strata.fuzz as fz
    fz.targets()                          # every fuzz/<name>.cpp, linked into _strata
    fz.run("iscsi_pdu", data)             # one input, in process, with a fresh target state
    with fz.Target("bdev_rpc") as t:      # one state (App, simulator) for many inputs
        for data in inputs: t.run(data)
    fz.run_files("nvme_model", ["fuzz/corpus/nvme_model"])   # a corpus, as the replay binary does
    r = fz.replay("canary", b"CANARY")    # in a child process: a crash cannot take Python down
    r.crashed, r.signal, r.stderr
    fz.write_corpus(dir, inputs)          # seed corpus files named by content hash

Every target is linked into the module (fuzz/CMakeLists.txt). A target whose inputs share
set-up (fuzz/fuzz_target.h) gets it per Target object, built in that object's own Host and
destroyed by close(), so Targets and Worlds in one process never see each other. A target's
CHECK() aborts the process, as under libFuzzer, so run() is for inputs expected to pass and
replay() for crash inputs: it runs the input in a child /usr/bin/python3 (via="python") or through
the dev build's replay binary build/<preset>/fuzz/fuzz_<name> (via="binary").

Generators (deterministic given a random.Random):
    nvme_sqe(...), mutate_sqe(sqe, rng)     a valid NVMe command, then one field changed
    nvme_model_input(sqes)                  input of fuzz/nvme_model.cpp (I/O SQE records)
    iscsi_scsi_cmd(...), iscsi_pdu_input()  iSCSI PDUs from RFC 7143's layout (fuzz/iscsi_pdu)
    nvmf_icreq(), nvmf_capsule(), nvmf_tcp_pdu_input()   NVMe/TCP PDUs (fuzz/nvmf_tcp_pdu)
"""

import collections
import hashlib
import os
import struct
import subprocess
import sys
import tempfile

try:
    import _strata
except ImportError:  # run()/targets() say so; the generators need no native code
    _strata = None


def _native():
    if _strata is None or not hasattr(_strata, "FuzzTarget"):
        raise RuntimeError("_strata has no fuzz entry points (build _strata from a tree with "
                           "fuzz/CMakeLists.txt's FUZZ_PY_TARGETS; source ci/env.sh)")
    return _strata


def targets():
    """Names of the fuzz targets callable in process (every fuzz/<name>.cpp)."""
    return list(_native().fuzz_targets())


class Target:
    """One fuzz target in this process with its own state: what the target sets up once for
    many inputs (an App with every module, a simulator, a blobstore image) is built on the first
    run() inside this object's own Host and destroyed by close() (or at the end of a with
    block), as a fuzzer process would keep it for its whole run."""

    def __init__(self, name):
        self._t = _native().FuzzTarget(name)

    name = property(lambda self: self._t.name)
    stateful = property(lambda self: self._t.stateful)

    def run(self, data):
        """One input through the entry point; returns its result (0). A CHECK() failure aborts
        the process (use replay() for inputs that may crash)."""
        return self._t.run(bytes(data))

    def close(self):
        self._t.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run(target, data):
    """Runs one input through the target's entry point in this process with a fresh state (built
    and destroyed for this input); returns its result. An input that breaks an invariant aborts
    the process (use replay() for those)."""
    return _native().fuzz_run(target, bytes(data))


def corpus_files(paths):
    """The files of paths (directories walked), sorted by path as fuzz/replay_main.cpp does."""
    out = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                out.extend(os.path.join(root, n) for n in names)
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise FileNotFoundError("%s is neither a file nor a directory" % p)
    return sorted(out, key=os.fsencode)


def run_files(target, paths):
    """Runs every file of paths (directories walked, sorted) through one Target in this process,
    in the order the replay binary uses; returns how many ran."""
    files = corpus_files(paths)
    with Target(target) as t:
        for f in files:
            with open(f, "rb") as fh:
                t.run(fh.read())
    return len(files)


ReplayResult = collections.namedtuple("ReplayResult", "returncode signal crashed stderr command")


def _build_dir():
    d = os.environ.get("STRATA_BUILD_DIR")
    if d:
        return d
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    return os.path.join(root, "build", "dev")


def replay_binary(target):
    """The dev build's replay binary of target (build/<preset>/fuzz/fuzz_<target>)."""
    return os.path.join(_build_dir(), "fuzz", "fuzz_" + target)


def replay(target, data, timeout=120, via="python"):
    """Runs one input (bytes, or a path to a file or a corpus directory) through the target in a
    child process and reports how it ended: crashed (killed by a signal, e.g. abort() or a trap)
    with its stderr. via="python": a child /usr/bin/python3 runs it with strata.fuzz.run_files
    (the stack's logs go to its stderr); via="binary": build/<preset>/fuzz/fuzz_<target>. Both
    run the files of a directory through one target state, in the same order."""
    if via not in ("python", "binary"):
        raise ValueError("via is 'python' or 'binary', not %r" % (via,))
    if isinstance(data, (str, os.PathLike)):
        path, tmp = os.fspath(data), None
    else:
        fd, path = tempfile.mkstemp(prefix="strata-fuzz-%s-" % target)
        with os.fdopen(fd, "wb") as f:
            f.write(bytes(data))
        tmp = path
    try:
        if via == "python":
            if target not in targets():
                raise ValueError("unknown fuzz target %r (linked: %s)" % (target, targets()))
            cmd = ["/usr/bin/python3", "-c",
                   "import sys, strata.fuzz as f; f.run_files(sys.argv[1], sys.argv[2:])",
                   target, path]
        else:
            exe = replay_binary(target)
            if not os.path.exists(exe):
                raise FileNotFoundError("no replay binary %s (ninja -C build/dev fuzz_%s)"
                                        % (exe, target))
            cmd = [exe, path]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        p = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env)
        sig = -p.returncode if p.returncode < 0 else None
        return ReplayResult(p.returncode, sig, sig is not None,
                            p.stderr.decode(errors="replace"), cmd)
    finally:
        if tmp is not None:
            os.unlink(tmp)


def write_corpus(directory, inputs):
    """Writes each input as a file named by its SHA-1 (libFuzzer's naming); returns the paths."""
    os.makedirs(directory, exist_ok=True)
    out = []
    for data in inputs:
        data = bytes(data)
        p = os.path.join(directory, hashlib.sha1(data).hexdigest())
        with open(p, "wb") as f:
            f.write(data)
        out.append(p)
    return out


# -- NVMe commands -------------------------------------------------------------------------------
# Submission queue entry (NVMe base spec, Figure "Common Command Format"): field -> (offset, size)
SQE_FIELDS = {
    "opc": (0, 1), "flags": (1, 1), "cid": (2, 2), "nsid": (4, 4), "cdw2": (8, 4),
    "cdw3": (12, 4), "mptr": (16, 8), "prp1": (24, 8), "prp2": (32, 8), "cdw10": (40, 4),
    "cdw11": (44, 4), "cdw12": (48, 4), "cdw13": (52, 4), "cdw14": (56, 4), "cdw15": (60, 4),
}
NVME_READ, NVME_WRITE, NVME_FLUSH = 0x02, 0x01, 0x00


def nvme_sqe(opc, cid=0, nsid=1, flags=0, prp1=0, prp2=0, **cdw):
    """A 64-byte SQE; cdw10..cdw15 by keyword."""
    b = bytearray(64)
    for name, value in dict(opc=opc, flags=flags, cid=cid, nsid=nsid, prp1=prp1, prp2=prp2,
                            **cdw).items():
        off, size = SQE_FIELDS[name]
        b[off:off + size] = int(value).to_bytes(size, "little")
    return bytes(b)


def nvme_rw(opc, slba, nlb, cid=0, nsid=1):
    """A valid Read/Write: SLBA in CDW10-11, 0-based NLB in CDW12 (nlb >= 1 blocks)."""
    return nvme_sqe(opc, cid=cid, nsid=nsid, cdw10=slba & 0xFFFFFFFF, cdw11=slba >> 32,
                    cdw12=nlb - 1)


def mutate_sqe(sqe, rng):
    """The SQE with one field set to a boundary or random value; returns (field, new SQE)."""
    name = rng.choice(sorted(SQE_FIELDS))
    off, size = SQE_FIELDS[name]
    top = (1 << (8 * size)) - 1
    value = rng.choice([0, 1, top, top >> 1, top - 1, rng.randrange(top + 1)])
    b = bytearray(sqe)
    b[off:off + size] = value.to_bytes(size, "little")
    return name, bytes(b)


def nvme_model_input(io_sqes, sgl=False, fix_pointers=True):
    """Input of fuzz/nvme_model.cpp: config byte, then one I/O-SQE record per command (op 1,
    with bit 7 set: PRPs pointed into the target's data buffer), queue 1."""
    out = bytearray([1 if sgl else 0])
    for s in io_sqes:
        out += bytes([0x81 if fix_pointers else 0x01, 0]) + s
    return bytes(out)


def nvme_command_inputs(rng, count=16, blocks=512):
    """count fuzz/nvme_model inputs: a few valid reads and writes, the last with one field
    mutated (the structure-aware seed the byte-level fuzzer then varies)."""
    out = []
    for i in range(count):
        cmds = []
        for c in range(rng.randint(1, 4)):
            nlb = rng.randint(1, 8)
            cmds.append(nvme_rw(rng.choice([NVME_READ, NVME_WRITE]),
                                rng.randrange(blocks - nlb), nlb, cid=c))
        _, cmds[-1] = mutate_sqe(cmds[-1], rng)
        out.append(nvme_model_input(cmds))
    return out


# -- iSCSI PDUs (RFC 7143: 48-byte BHS, big-endian, data padded to 4 bytes) -------------------------
def iscsi_pdu(op, flags, specific=b"", data=b"", lun=0, itt=1, b2=b"\0\0"):
    """One PDU: BHS (opcode, flags, bytes 2-3, AHS length 0, DataSegmentLength, LUN, ITT,
    bytes 20-47 from `specific`) + data padded to 4 bytes."""
    if len(specific) > 28:
        raise ValueError("the BHS has 28 opcode-specific bytes, got %d" % len(specific))
    bhs = bytes([op, flags]) + b2 + b"\0" + len(data).to_bytes(3, "big")
    bhs += lun.to_bytes(8, "big") + itt.to_bytes(4, "big") + specific.ljust(28, b"\0")
    return bhs + data + b"\0" * (-len(data) % 4)


def iscsi_scsi_cmd(cdb, data=b"", itt=1, cmdsn=1, write=None):
    """SCSI Command PDU (opcode 0x01, F bit, W if data) with a CDB of up to 16 bytes."""
    write = bool(data) if write is None else write
    flags = 0x80 | (0x20 if write else 0)
    specific = len(data).to_bytes(4, "big") + cmdsn.to_bytes(4, "big") + b"\0" * 4 + \
        bytes(cdb).ljust(16, b"\0")
    return iscsi_pdu(0x01, flags, specific, data, itt=itt)


def iscsi_nop_out(itt=1, cmdsn=1, data=b""):
    return iscsi_pdu(0x00 | 0x40, 0x80, (0xFFFFFFFF).to_bytes(4, "big") +
                     cmdsn.to_bytes(4, "big"), data, itt=itt)


def iscsi_pdu_input(pdus, config=0, split_seed=0, placement_seed=0):
    """Input of fuzz/iscsi_pdu.cpp: config byte (digests, MaxRecvDataSegmentLength, split mode),
    split seed, placement seed, then the stream."""
    return bytes([config & 0xFF, split_seed & 0xFF, placement_seed & 0xFF]) + b"".join(pdus)


def iscsi_inputs(rng, count=16):
    """count fuzz/iscsi_pdu inputs: NOP-Outs and SCSI commands (READ(10), WRITE(10) with data)
    from the grammar, one field of one PDU then mutated."""
    out = []
    for _ in range(count):
        pdus = []
        for i in range(rng.randint(1, 4)):
            kind = rng.choice(["nop", "read", "write"])
            if kind == "nop":
                pdus.append(iscsi_nop_out(itt=i + 1, cmdsn=i + 1))
            else:
                lba, n = rng.randrange(1000), rng.randint(1, 4)
                cdb = bytes([0x28 if kind == "read" else 0x2A, 0]) + lba.to_bytes(4, "big") + \
                    b"\0" + n.to_bytes(2, "big") + b"\0"
                data = bytes(rng.randrange(256) for _ in range(512 * n)) if kind == "write" else b""
                pdus.append(iscsi_scsi_cmd(cdb, data, itt=i + 1, cmdsn=i + 1))
        k = rng.randrange(len(pdus))
        b = bytearray(pdus[k])
        b[rng.randrange(48)] = rng.randrange(256)  # one BHS byte
        pdus[k] = bytes(b)
        out.append(iscsi_pdu_input(pdus, config=rng.randrange(256), split_seed=rng.randrange(256),
                                   placement_seed=rng.randrange(256)))
    return out


# -- NVMe/TCP PDUs (NVMe/TCP transport spec: 8-byte common header, little-endian) -------------------
NVMF_IC_REQ, NVMF_CAPSULE_CMD = 0x00, 0x04


def _ch(t, flags, hlen, pdo, plen):
    return struct.pack("<BBBBI", t, flags, hlen, pdo, plen)


def nvmf_icreq(pfv=0, hpda=0, dgst=0, maxr2t=0):
    return _ch(NVMF_IC_REQ, 0, 128, 0, 128) + struct.pack("<HBBI", pfv, hpda, dgst, maxr2t) + \
        b"\0" * 112


def nvmf_capsule(sqe, data=b""):
    """Command capsule PDU: CH + 64-byte SQE (hlen 72) + in-capsule data at PDO 72."""
    pdo = 72 if data else 0
    return _ch(NVMF_CAPSULE_CMD, 0, 72, pdo, 72 + len(data)) + bytes(sqe) + data


def nvmf_tcp_pdu_input(pdus, config=0, limits=0, split_seed=0, placement_seed=0):
    """Input of fuzz/nvmf_tcp_pdu.cpp: config, limits, split seed, placement seed, stream."""
    return bytes([config & 0xFF, limits & 0xFF, split_seed & 0xFF, placement_seed & 0xFF]) + \
        b"".join(pdus)


def nvmf_tcp_inputs(rng, count=16):
    """count fuzz/nvmf_tcp_pdu inputs: an ICReq then command capsules (reads, writes with
    in-capsule data), one SQE field mutated."""
    out = []
    for _ in range(count):
        pdus = [nvmf_icreq()]
        for c in range(rng.randint(1, 3)):
            nlb = rng.randint(1, 4)
            write = rng.random() < 0.5
            s = nvme_rw(NVME_WRITE if write else NVME_READ, rng.randrange(1000), nlb, cid=c)
            if c == 0:
                _, s = mutate_sqe(s, rng)
            pdus.append(nvmf_capsule(s, bytes(512 * nlb) if write else b""))
        out.append(nvmf_tcp_pdu_input(pdus, split_seed=rng.randrange(256),
                                      placement_seed=rng.randrange(256)))
    return out
