#!/usr/bin/python3
"""Writes the seed corpora of the NVMe-oF/TCP fuzz targets: nvmf_tcp_pdu, nvmf_tcp_conn,
nvmf_admin and nvme_tcp_pdu (fuzz/<name>.cpp documents each input format).

Every seed is hand-encoded here, PDU by PDU, from the NVMe/TCP transport specification's
layouts (the same structs as core/nvme/spec/include/strata/nvme/spec/tcp.h), with real
CRC-32C digests where digests are negotiated. Run from the repository root:
    /usr/bin/python3 fuzz/corpus/gen_nvmf_tcp.py
It rewrites fuzz/corpus/{nvmf_tcp_pdu,nvmf_tcp_conn,nvmf_admin,nvme_tcp_pdu}/ (deterministic).
"""
import os
import struct
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))

# ---- CRC-32C (Castagnoli), reflected, as base/crc.h crc32c(0, ...) ----
_T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _T.append(c)


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = _T[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283

NQN = b"nqn.2016-06.io.strata:fuzz"
HOSTNQN = b"nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"

# PDU types
IC_REQ, IC_RESP, H2C_TERM, C2H_TERM, CAPSULE_CMD, CAPSULE_RESP, H2C_DATA, C2H_DATA, R2T = (
    0, 1, 2, 3, 4, 5, 6, 7, 9)
HDGSTF, DDGSTF, LAST_PDU, SUCCESS = 0x01, 0x02, 0x04, 0x08


def ch(t, flags, hlen, pdo, plen):
    return struct.pack("<BBBBI", t, flags, hlen, pdo, plen)


def pdu(t, psh, data=b"", hd=False, dd=False, flags=0, pdo=None, hlen=None):
    """A PDU: CH + PSH (+ header digest) (+ padding to pdo) (+ data) (+ data digest)."""
    hlen = 8 + len(psh) if hlen is None else hlen
    hd_len = 4 if hd else 0
    dd = dd and len(data) > 0
    if data:
        pdo = hlen + hd_len if pdo is None else pdo
    else:
        pdo = 0
    pad = (pdo - hlen - hd_len) if data else 0
    plen = hlen + hd_len + pad + len(data) + (4 if dd else 0)
    f = flags | (HDGSTF if hd else 0) | (DDGSTF if dd else 0)
    hdr = ch(t, f, hlen, pdo, plen) + psh
    out = hdr
    if hd:
        out += struct.pack("<I", crc32c(hdr))
    out += b"\0" * pad + data
    if dd:
        out += struct.pack("<I", crc32c(data))
    return out


def icreq(hd=False, dd=False, pfv=0, hpda=0, maxr2t=0):
    dgst = (1 if hd else 0) | (2 if dd else 0)
    return ch(IC_REQ, 0, 128, 0, 128) + struct.pack("<HBBI", pfv, hpda, dgst, maxr2t) + b"\0" * 112


def icresp(hd=False, dd=False, cpda=0, maxh2cdata=8192):
    dgst = (1 if hd else 0) | (2 if dd else 0)
    return ch(IC_RESP, 0, 128, 0, 128) + struct.pack("<HBBI", 0, cpda, dgst, maxh2cdata) + b"\0" * 112


def sqe(opc, cid=0, nsid=0, flags=0, cdw10=0, cdw11=0, cdw12=0, cdw13=0, cdw14=0, cdw15=0,
        sgl=None):
    """A 64-byte SQE; sgl = (address, length, sgl_id) for DPTR (PSDT set to SGL)."""
    if sgl is not None:
        flags |= 0x40
        addr, length, sid = sgl
        dptr = struct.pack("<QI3xB", addr, length, sid)
    else:
        dptr = b"\0" * 16
    return (struct.pack("<BBHIIIQ", opc, flags, cid, nsid, 0, 0, 0) + dptr +
            struct.pack("<IIIIII", cdw10, cdw11, cdw12, cdw13, cdw14, cdw15))


SGL_IN_CAPSULE = 0x01   # data block, offset: in-capsule (sgl_id 01h)
SGL_TRANSPORT = 0x5A    # transport data block (type 5, subtype Ah)


def capsule(s, data=b"", hd=False, dd=False, pdo=None):
    return pdu(CAPSULE_CMD, s, data, hd, dd, pdo=pdo)


def fabrics(fctype, cid, rest40):
    """A Fabrics command: opcode 7Fh, FCTYPE at byte 4, bytes 40.. type specific."""
    b = struct.pack("<BBHB", 0x7F, 0, cid, fctype) + b"\0" * 35 + rest40
    assert len(b) == 64
    return b


def with_sgl(s, addr, length, sid):
    b = bytearray(s)
    b[1] |= 0x40
    b[24:40] = struct.pack("<QI3xB", addr, length, sid)
    return bytes(b)


def connect_cmd(cid=1, qid=0, sqsize=31, kato=0, cattr=0):
    s = fabrics(0x01, cid, struct.pack("<HHHBBI", 0, qid, sqsize, cattr, 0, kato) + b"\0" * 12)
    return with_sgl(s, 0, 1024, SGL_IN_CAPSULE)


def connect_data(cntlid=0xFFFF, subnqn=NQN, hostnqn=HOSTNQN):
    hostid = bytes([0x11]) + b"\0" * 15
    return (hostid + struct.pack("<H", cntlid) + b"\0" * 238 + subnqn.ljust(256, b"\0")[:256] +
            hostnqn.ljust(256, b"\0")[:256] + b"\0" * 256)


def prop_set(cid, ofst, value, size8=False):
    return fabrics(0x00, cid, struct.pack("<B3xIQ", 1 if size8 else 0, ofst, value) + b"\0" * 8)


def prop_get(cid, ofst, size8=False):
    return fabrics(0x04, cid, struct.pack("<B3xI", 1 if size8 else 0, ofst) + b"\0" * 16)


def disconnect(cid):
    return fabrics(0x08, cid, b"\0" * 24)


def h2cdata(cccid, ttag, datao, data, last=True, hd=False, dd=False):
    psh = struct.pack("<HHII4x", cccid, ttag, datao, len(data))
    return pdu(H2C_DATA, psh, data, hd, dd, flags=LAST_PDU if last else 0)


def c2hdata(cccid, datao, data, last=True, success=False, hd=False, dd=False, pdo=None):
    psh = struct.pack("<HHII4x", cccid, 0, datao, len(data))
    f = (LAST_PDU if last else 0) | (SUCCESS if success else 0)
    return pdu(C2H_DATA, psh, data, hd, dd, flags=f, pdo=pdo)


def capsule_resp(cid, status=0, dw0=0, hd=False, sqhd=0):
    cqe = struct.pack("<IIHHHH", dw0, 0, sqhd, 0, cid, status << 1)
    return pdu(CAPSULE_RESP, cqe, hd=hd)


def r2t(cccid, ttag, r2to, r2tl, hd=False):
    return pdu(R2T, struct.pack("<HHII4x", cccid, ttag, r2to, r2tl), hd=hd)


def term_req(t, fes, fei, data=b""):
    psh = struct.pack("<HI10x", fes, fei)
    return pdu(t, psh, data) if data else ch(t, 0, 24, 0, 24) + psh


def write_corpus(name, seeds):
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    for seed_name, data in seeds.items():
        with open(os.path.join(d, seed_name), "wb") as fh:
            fh.write(data)


def pattern(n, seed=1):
    return bytes((seed * 31 + i * 7) & 0xFF for i in range(n))


# ---- nvmf_tcp_pdu: byte 0 config, byte 1 limits|split, byte 2 split seed, byte 3 placement ----
def tcp_pdu_hdr(hd=False, dd=False, negotiate=False, cpda=0, icd=1, h2c=1, split=0, sseed=0,
                pseed=1):
    return bytes([(1 if hd else 0) | (2 if dd else 0) | (4 if negotiate else 0) | (cpda << 3),
                  icd | (h2c << 2) | (split << 4), sseed, pseed])


def identify_sqe(cid, cns, nsid=0, length=4096):
    return sqe(0x06, cid, nsid, cdw10=cns, sgl=(0, length, SGL_TRANSPORT))


nvmf_tcp_pdu = {
    "icreq": tcp_pdu_hdr() + icreq(),
    "icreq_capsule": tcp_pdu_hdr() + icreq() + capsule(sqe(0x18, 1)),
    "in_capsule_512": tcp_pdu_hdr(split=3, sseed=5) + icreq() +
        capsule(sqe(0x01, 2, 1, sgl=(0, 512, SGL_IN_CAPSULE)), pattern(512)),
    "connect": tcp_pdu_hdr(split=6, sseed=9, pseed=2) + icreq() +
        capsule(connect_cmd(), connect_data()),
    "digests_negotiated": tcp_pdu_hdr(negotiate=True, split=2, sseed=3, pseed=3) +
        icreq(True, True) + capsule(connect_cmd(), connect_data(), hd=True, dd=True) +
        capsule(sqe(0x18, 3), hd=True) + h2cdata(3, 0, 0, pattern(4096, 2), hd=True, dd=True),
    "digests_bad_ddgst": tcp_pdu_hdr(negotiate=True, pseed=5) + icreq(True, True) +
        capsule(sqe(0x01, 4, 1, sgl=(0, 64, SGL_IN_CAPSULE)), pattern(64), hd=True, dd=True)[:-1] +
        b"\xff",
    "cpda3_padding": tcp_pdu_hdr(cpda=3, split=4, sseed=7, pseed=1) + icreq() +
        capsule(sqe(0x01, 5, 1, sgl=(0, 256, SGL_IN_CAPSULE)), pattern(256), pdo=80),
    "h2cdata_chunks": tcp_pdu_hdr(split=1, sseed=1, pseed=6) + icreq() +
        h2cdata(7, 0, 0, pattern(1000), last=False) + h2cdata(7, 0, 1000, pattern(3096, 3)),
    "h2c_term_req": tcp_pdu_hdr() + icreq() + term_req(H2C_TERM, 1, 0, b"\x04\x00\x48\x00" + b"\0" * 4),
    "byte_at_a_time": tcp_pdu_hdr(split=1, sseed=0, pseed=7) + icreq() +
        capsule(sqe(0x02, 6, 1, sgl=(0, 4096, SGL_TRANSPORT))) + capsule(sqe(0x00, 7)),
    "err_before_icreq": tcp_pdu_hdr() + capsule(sqe(0x18, 1)),
    "err_second_icreq": tcp_pdu_hdr() + icreq() + icreq(),
    "err_bad_hlen": tcp_pdu_hdr() + icreq() + ch(CAPSULE_CMD, 0, 70, 0, 70) + b"\0" * 62,
    "err_hdgst": tcp_pdu_hdr(hd=True) + icreq() + capsule(sqe(0x18, 1), hd=True)[:-4] + b"\0\0\0\0",
    "err_too_big_icd": tcp_pdu_hdr(icd=0) + icreq() +
        capsule(sqe(0x01, 2, 1, sgl=(0, 512, SGL_IN_CAPSULE)), pattern(512)),
    "err_c2h_type": tcp_pdu_hdr() + icreq() + capsule_resp(1),
    "err_pfv": tcp_pdu_hdr() + icreq(pfv=1),
}

# ---- nvmf_tcp_conn: byte 0 flags, byte 1 write chunk size (0: one write); stream ----
F_IC, F_HD, F_DD, F_CONNECT, F_ENABLE, F_IOQ, F_RESET, F_GOOD = 1, 2, 4, 8, 16, 32, 64, 128
ADMIN_PREFIX = F_IC | F_CONNECT | F_ENABLE


def conn(flags, chunk, stream):
    return bytes([flags, chunk]) + stream


nvmf_tcp_conn = {
    "raw_handshake": conn(F_GOOD, 0, icreq() + capsule(connect_cmd(), connect_data()) +
                          capsule(prop_set(2, 0x14, 0x00460001)) + capsule(prop_get(3, 0x1C))),
    "identify": conn(ADMIN_PREFIX | F_GOOD, 0,
                     capsule(identify_sqe(10, 1)) + capsule(identify_sqe(11, 0, 1)) +
                     capsule(identify_sqe(12, 2)) + capsule(identify_sqe(13, 3, 1))),
    "log_pages": conn(ADMIN_PREFIX, 16,
                      capsule(sqe(0x02, 20, 0xFFFFFFFF, cdw10=1 | (15 << 16), sgl=(0, 64, SGL_TRANSPORT))) +
                      capsule(sqe(0x02, 21, 0xFFFFFFFF, cdw10=2 | (127 << 16), sgl=(0, 512, SGL_TRANSPORT))) +
                      capsule(sqe(0x02, 22, 0, cdw10=4 | (1023 << 16), sgl=(0, 4096, SGL_TRANSPORT)))),
    "features_keepalive": conn(ADMIN_PREFIX, 0,
                               capsule(sqe(0x0A, 30, cdw10=0x07)) + capsule(sqe(0x09, 31, cdw10=0x07, cdw11=0x00030003)) +
                               capsule(sqe(0x0A, 32, cdw10=0x0F)) + capsule(sqe(0x18, 33)) +
                               capsule(sqe(0x0C, 34)) + capsule(sqe(0x08, 35, cdw10=34))),
    "r2t_h2cdata": conn(ADMIN_PREFIX, 0,
                        capsule(sqe(0x09, 40, cdw10=0x0B, sgl=(0, 4096, SGL_TRANSPORT))) +
                        h2cdata(40, 0, 0, pattern(4096))),
    "in_capsule_data": conn(ADMIN_PREFIX, 7,
                            capsule(sqe(0x09, 41, cdw10=0x0B, sgl=(0, 512, SGL_IN_CAPSULE)), pattern(512))),
    "digests": conn(ADMIN_PREFIX | F_HD | F_DD | F_GOOD, 0,
                    capsule(identify_sqe(50, 1), hd=True) +
                    capsule(sqe(0x09, 51, cdw10=0x0B, sgl=(0, 256, SGL_IN_CAPSULE)), pattern(256), hd=True, dd=True) +
                    capsule(sqe(0x09, 52, cdw10=0x0B, sgl=(0, 2048, SGL_TRANSPORT)), hd=True) +
                    h2cdata(52, 1, 0, pattern(2048), hd=True, dd=True)),
    "bad_data_digest": conn(ADMIN_PREFIX | F_DD, 0,
                            capsule(sqe(0x09, 53, cdw10=0x0B, sgl=(0, 64, SGL_IN_CAPSULE)), pattern(64), dd=True)[:-4] +
                            b"\0\0\0\0" + capsule(sqe(0x18, 54))),
    "ioq_connect_rejected": conn(F_IC | F_CONNECT | F_IOQ, 0, capsule(sqe(0x02, 60, 1, sgl=(0, 512, SGL_TRANSPORT)))),
    "disconnect": conn(ADMIN_PREFIX, 0, capsule(disconnect(70)) + capsule(sqe(0x18, 71))),
    "h2c_term_req": conn(F_IC | F_CONNECT, 0, term_req(H2C_TERM, 1, 0, b"\x04\x00\x48\x00" + b"\0" * 4)),
    "garbage_after_connect": conn(F_IC | F_CONNECT | F_RESET, 3, pattern(300, 9)),
    "garbage": conn(0, 0, pattern(200, 4)),
    "stops_mid_pdu": conn(ADMIN_PREFIX, 0, capsule(identify_sqe(80, 1))[:40]),
    "h2c_wrong_ttag": conn(ADMIN_PREFIX | F_GOOD, 0,
                           capsule(sqe(0x09, 90, cdw10=0x0B, sgl=(0, 4096, SGL_TRANSPORT))) +
                           h2cdata(90, 77, 0, pattern(4096))),
}

# ---- nvmf_admin: byte 0 flags; records (ctl, SQE, data) ----
A_CONNECT, A_ENABLE, A_IOQ, A_KATO, A_CLOSE = 1, 2, 4, 8, 16
LEN = {0: 0, 8: 1, 64: 2, 512: 3, 1024: 4, 4096: 5, 8192: 6}


def rec(s, length=0, niov=1, io=False, data=None, wait=True):
    ctl = LEN[length] | ((niov - 1) << 3) | (0x20 if io else 0) | (0x40 if data is not None else 0) | (
        0x80 if wait else 0)
    out = bytes([ctl]) + s
    if data is not None:
        out += data.ljust(length, b"\0")[:length]
    return out


def admin_seed(flags, *records):
    return bytes([flags]) + b"".join(records)


nvmf_admin = {
    "raw_connect": admin_seed(0, rec(connect_cmd(), 1024, data=connect_data()),
                              rec(prop_get(2, 0x00, True)), rec(prop_set(3, 0x14, 0x00460001)),
                              rec(prop_get(4, 0x1C)), rec(identify_sqe(5, 1), 4096, 2)),
    "connect_bad_subnqn": admin_seed(0, rec(connect_cmd(), 1024, data=connect_data(subnqn=b"nqn.bad..nqn")),
                                     rec(identify_sqe(5, 1), 4096)),
    "connect_bad_host": admin_seed(0, rec(connect_cmd(), 1024, 3, data=connect_data(hostnqn=b"not-an-nqn"))),
    "connect_static_cntlid": admin_seed(0, rec(connect_cmd(sqsize=0), 1024, data=connect_data(cntlid=5))),
    "identify_all": admin_seed(A_CONNECT | A_ENABLE,
                               rec(identify_sqe(10, 1), 4096, 4), rec(identify_sqe(11, 0, 1), 4096),
                               rec(identify_sqe(12, 2), 4096), rec(identify_sqe(13, 3, 1), 4096, 2),
                               rec(identify_sqe(14, 0, 7), 4096), rec(identify_sqe(15, 0x10), 4096)),
    "log_pages": admin_seed(A_CONNECT | A_ENABLE,
                            rec(sqe(0x02, 20, 0xFFFFFFFF, cdw10=1 | (15 << 16)), 64),
                            rec(sqe(0x02, 21, 0xFFFFFFFF, cdw10=2 | (127 << 16)), 512),
                            rec(sqe(0x02, 22, 0, cdw10=4 | (1023 << 16)), 4096),
                            rec(sqe(0x02, 23, 0, cdw10=0x70 | (255 << 16), cdw12=8), 1024, 3)),
    "features": admin_seed(A_CONNECT | A_ENABLE | A_KATO,
                           rec(sqe(0x0A, 30, cdw10=0x07)), rec(sqe(0x09, 31, cdw10=0x07, cdw11=0x00030003)),
                           rec(sqe(0x0A, 32, cdw10=0x0F)), rec(sqe(0x09, 33, cdw10=0x0F, cdw11=20000)),
                           rec(sqe(0x09, 34, cdw10=0x0B, cdw11=0x100)), rec(sqe(0x0A, 35, cdw10=0x0B)),
                           rec(sqe(0x18, 36))),
    "aer_abort": admin_seed(A_CONNECT | A_ENABLE,
                            rec(sqe(0x0C, 40), wait=False), rec(sqe(0x0C, 41), wait=False),
                            rec(sqe(0x08, 42, cdw10=40)), rec(sqe(0x08, 43, cdw10=(1 << 16) | 99))),
    "properties": admin_seed(A_CONNECT,
                             rec(prop_get(50, 0x00, True)), rec(prop_get(51, 0x08)), rec(prop_get(52, 0x14)),
                             rec(prop_get(53, 0x1C)), rec(prop_set(54, 0x14, 0x00460001)),
                             rec(prop_get(55, 0x1C)), rec(prop_set(56, 0x14, 0x00464001)),
                             rec(prop_get(57, 0x1C)), rec(prop_set(58, 0x30, 1)), rec(prop_get(59, 0x44, True))),
    "disconnect": admin_seed(A_CONNECT | A_ENABLE, rec(disconnect(60)), rec(sqe(0x18, 61))),
    "io_commands": admin_seed(A_CONNECT | A_ENABLE | A_IOQ,
                              rec(sqe(0x01, 70, 1, cdw12=0), 512, 2, io=True, data=pattern(512)),
                              rec(sqe(0x02, 71, 1, cdw12=0), 512, 3, io=True),
                              rec(sqe(0x00, 72, 1), io=True),
                              rec(sqe(0x08, 73, 1, cdw10=8, cdw12=7), io=True),
                              rec(sqe(0x09, 74, 1, cdw10=0, cdw11=4), 64, io=True,
                                  data=struct.pack("<IIQ", 0, 8, 16) * 4),
                              rec(sqe(0x05, 75, 1, cdw12=0), 512, io=True, data=pattern(512)),
                              rec(sqe(0x05, 76, 1, flags=1, cdw12=0), 512, io=True, data=pattern(512), wait=False),
                              rec(sqe(0x01, 77, 1, flags=2, cdw12=0), 512, io=True, data=pattern(512))),
    "io_out_of_range": admin_seed(A_CONNECT | A_ENABLE | A_IOQ,
                                  rec(sqe(0x02, 80, 1, cdw10=0xFFFFFFF0, cdw11=0, cdw12=0xFFFF), 512, io=True),
                                  rec(sqe(0x02, 81, 9, cdw12=0), 512, io=True),
                                  rec(sqe(0x01, 82, 1, cdw12=3), 512, io=True, data=pattern(512))),
    "admin_before_enable": admin_seed(A_CONNECT, rec(identify_sqe(90, 1), 4096), rec(sqe(0x7E, 91))),
    "connect_then_close": admin_seed(A_CONNECT | A_CLOSE, rec(identify_sqe(1, 1), 4096)),
    "not_connected": admin_seed(0, rec(identify_sqe(1, 1), 4096), rec(prop_get(2, 0))),
}

# ---- nvme_tcp_pdu: byte 0 flags, byte 1 chunk size (0: all at once); stream (target -> host).
# The initiator rejects a response to a command it has not finished sending, and a second R2T
# before the first one's data went out (MAXR2T 1): those seeds use chunks that end where a
# real target would wait for the host. ----
N_PREFIX, N_HD, N_DD, N_NO_ICD, N_EOF, N_SMALLWIN = 1, 2, 4, 8, 64, 128


def init(flags, chunk, stream):
    return bytes([flags, chunk]) + stream


def cpda_bits(i):
    return i << 4  # index into (0, 1, 4, 31)


nvme_tcp_pdu = {
    "read_success": init(N_PREFIX, 0, c2hdata(0, 0, pattern(8192), success=True) +
                         capsule_resp(1, 0) + capsule_resp(2) + capsule_resp(3)),
    "read_then_resp": init(N_PREFIX, 100, c2hdata(0, 0, pattern(3000), last=False) +
                           c2hdata(0, 3000, pattern(5192, 2)) + capsule_resp(0)),
    "r2t_write": init(N_PREFIX, 24, r2t(1, 5, 0, 8192) + r2t(1, 6, 8192, 8192) + capsule_resp(1) +
                      capsule_resp(2) + capsule_resp(3) + capsule_resp(0, status=0x02)),
    "r2t_small_window": init(N_PREFIX | N_SMALLWIN, 7, r2t(1, 1, 0, 16384)),
    "no_in_capsule": init(N_PREFIX | N_NO_ICD, 24, r2t(2, 3, 0, 512) + capsule_resp(2) + capsule_resp(1)),
    "digests": init(N_PREFIX | N_HD | N_DD, 0,
                    c2hdata(0, 0, pattern(8192), success=True, hd=True, dd=True) +
                    r2t(1, 2, 0, 8192, hd=True) + capsule_resp(3, hd=True)),
    "digest_bad": init(N_PREFIX | N_HD | N_DD, 0,
                       c2hdata(0, 0, pattern(4096), last=False, hd=True, dd=True)[:-4] + b"\1\2\3\4"),
    "cpda_padding": init(N_PREFIX | cpda_bits(2), 5, c2hdata(0, 0, pattern(8192), success=True, pdo=32)),
    "term_req": init(N_PREFIX, 0, capsule_resp(3) + term_req(C2H_TERM, 1, 0, b"\x04\x00\x48\x00" + b"\0" * 4)),
    "eof_mid_pdu": init(N_PREFIX | N_EOF, 0, c2hdata(0, 0, pattern(8192), success=True)[:100]),
    "handshake_in_stream": init(0, 128, icresp() + capsule_resp(4, dw0=1) +
                                c2hdata(0, 0, pattern(8192), success=True) + capsule_resp(1)),
    "handshake_digests": init(N_HD, 3, icresp(hd=True) + capsule_resp(4, dw0=1, hd=True) + capsule_resp(3, hd=True)),
    "err_unknown_cid": init(N_PREFIX, 0, capsule_resp(9)),
    "err_c2h_for_write": init(N_PREFIX, 0, c2hdata(1, 0, pattern(512))),
    "err_r2t_range": init(N_PREFIX, 0, r2t(1, 1, 100, 16384)),
    "err_second_icresp": init(N_PREFIX, 0, icresp()),
    "err_host_type": init(N_PREFIX, 0, capsule(sqe(0x18, 1))),
}


def main():
    write_corpus("nvmf_tcp_pdu", nvmf_tcp_pdu)
    write_corpus("nvmf_tcp_conn", nvmf_tcp_conn)
    write_corpus("nvmf_admin", nvmf_admin)
    write_corpus("nvme_tcp_pdu", nvme_tcp_pdu)
    print("wrote", sum(map(len, (nvmf_tcp_pdu, nvmf_tcp_conn, nvmf_admin, nvme_tcp_pdu))), "seeds")


if __name__ == "__main__":
    sys.exit(main())
