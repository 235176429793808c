#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/iscsi_pdu.cpp and fuzz/iscsi_login.cpp (deterministic).

Run from the repository root: /usr/bin/python3 fuzz/corpus/gen_iscsi.py
Every PDU is encoded here from RFC 7143's layouts (48-byte BHS, big-endian fields, data padded
to 4 bytes, CRC32C digests sent least-significant byte first).
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)))


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def pdu(op, flags, specific=b"", data=b"", ahs=b"", lun=0, itt=1, b2=b"\0\0", hd=False, dd=False):
    """op byte, flags byte, bytes 2-3, then bytes 8..47 from lun/itt/specific (28 bytes)."""
    bhs = bytes([op, flags]) + b2 + bytes([len(ahs) // 4]) + len(data).to_bytes(3, "big")
    bhs += lun.to_bytes(8, "big") + itt.to_bytes(4, "big")
    bhs += specific.ljust(28, b"\0")
    assert len(bhs) == 48
    out = bhs + ahs
    if hd:
        out += struct.pack("<I", crc32c(out))
    if data:
        padded = data + b"\0" * (-len(data) % 4)
        out += padded
        if dd:
            out += struct.pack("<I", crc32c(padded))
    return out


def login(flags, text, isid=b"\x80\x00\x00\x01\x02\x03", tsih=0, cmdsn=1, expstatsn=0, vmin=0):
    bhs = bytes([0x43, flags, 0, vmin, 0]) + len(text).to_bytes(3, "big") + isid
    bhs += tsih.to_bytes(2, "big") + (0x10).to_bytes(4, "big") + b"\0\0\0\0"
    bhs += cmdsn.to_bytes(4, "big") + expstatsn.to_bytes(4, "big") + b"\0" * 16
    return bhs + text + b"\0" * (-len(text) % 4)


def text_req(text, ttt=0xFFFFFFFF, flags=0x80, itt=0x20):
    bhs = bytes([0x44, flags, 0, 0, 0]) + len(text).to_bytes(3, "big") + b"\0" * 8
    bhs += itt.to_bytes(4, "big") + ttt.to_bytes(4, "big") + (1).to_bytes(4, "big")
    bhs += b"\0" * 20
    return bhs + text + b"\0" * (-len(text) % 4)


def kv(*pairs):
    return b"".join(k.encode() + b"=" + v.encode() + b"\0" for k, v in pairs)


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def scsi_write(n, hd=False, dd=False, ahs=b""):
    spec = n.to_bytes(4, "big") + (5).to_bytes(4, "big") + (0).to_bytes(4, "big") + b"\x2a"
    return pdu(0x01, 0xA0, spec, bytes(range(n % 256)) * (n // 256) + bytes(range(n % 256)),
               ahs=ahs, lun=1 << 48, hd=hd, dd=dd)


def pdu_seeds():
    # config byte: bit0 hd, bit1 dd, bits2-3 mrdsl (8192 = 1), bits4-7 split mode
    cfg = lambda hd, dd, mrdsl=1, mode=0: bytes([hd | dd << 1 | mrdsl << 2 | mode << 4, 7, 3])
    nop = pdu(0x40, 0x80, (0xFFFFFFFF).to_bytes(4, "big") + (1).to_bytes(4, "big"), itt=9)
    write("iscsi_pdu", "nop_scsi_write", cfg(0, 0) + nop + scsi_write(13))
    write("iscsi_pdu", "digests", cfg(1, 1, 1, 3) + scsi_write(100, True, True) + nop[:0] +
          pdu(0x05, 0x80, b"\0" * 4 + (0x1234).to_bytes(4, "big"), data=b"x" * 7, hd=True, dd=True))
    bad = bytearray(scsi_write(20, True, True))
    bad[60] ^= 1
    write("iscsi_pdu", "bad_data_digest", cfg(1, 1, 1, 2) + bytes(bad))
    bad = bytearray(scsi_write(4, True, False))
    bad[10] ^= 1
    write("iscsi_pdu", "bad_header_digest", cfg(1, 0) + bytes(bad))
    ext_cdb = (17).to_bytes(2, "big") + b"\x01\x00" + bytes(16)
    bidi = (5).to_bytes(2, "big") + b"\x02\x00" + (4096).to_bytes(4, "big")
    write("iscsi_pdu", "ahs", cfg(0, 0, 1, 1) + scsi_write(8, ahs=ext_cdb + bidi))
    write("iscsi_pdu", "bad_ahs", cfg(0, 0) + scsi_write(0, ahs=b"\x00\x00\x01\x00"))
    write("iscsi_pdu", "target_opcode", cfg(0, 0) + pdu(0x21, 0x80))
    write("iscsi_pdu", "too_long", cfg(0, 0, 0) + scsi_write(600))
    write("iscsi_pdu", "login_text", cfg(0, 0, 1, 4) +
          login(0x81, kv(("InitiatorName", "iqn.a:b"), ("AuthMethod", "None"))) +
          text_req(kv(("SendTargets", "All"))) +
          pdu(0x46, 0x80, b"\0" * 4 + (2).to_bytes(4, "big")))
    write("iscsi_pdu", "tmf_snack", cfg(0, 0) + pdu(0x02, 0x81, lun=1 << 48) + pdu(0x10, 0x80))
    # Split seed 0: data_digest_defer_min 1, every data digest deferred (the accel path); a
    # Data-Out whose padding was corrupted (the digest covers it).
    dout = pdu(0x05, 0x80, b"\0" * 4 + (0x1234).to_bytes(4, "big"), data=b"x" * 7, dd=True)
    badpad = bytearray(dout)
    badpad[48 + 7] ^= 1
    write("iscsi_pdu", "deferred_digests", bytes([2 | 1 << 2 | 2 << 4, 0, 3]) +
          scsi_write(13, dd=True) + dout + bytes(badpad))


IQN_I = "iqn.2026-12.io.strata:fuzz"
IQN_T = "iqn.2016-06.io.spdk:disk1"
OPS = kv(("HeaderDigest", "CRC32C,None"), ("DataDigest", "None"), ("MaxConnections", "1"),
         ("InitialR2T", "No"), ("ImmediateData", "Yes"), ("MaxRecvDataSegmentLength", "262144"),
         ("MaxBurstLength", "16776192"), ("FirstBurstLength", "262144"),
         ("DefaultTime2Wait", "0"), ("DefaultTime2Retain", "0"), ("MaxOutstandingR2T", "1"),
         ("DataPDUInOrder", "Yes"), ("DataSequenceInOrder", "Yes"), ("ErrorRecoveryLevel", "0"),
         ("IFMarker", "No"), ("OFMarker", "No"))


def login_seeds():
    ident = kv(("InitiatorName", IQN_I), ("SessionType", "Normal"), ("TargetName", IQN_T))
    write("iscsi_login", "normal_noauth", b"\x00\x01" + login(0x81, ident + kv(("AuthMethod", "None")))
          + login(0x87, OPS))
    write("iscsi_login", "operational_only_offer", b"\x00\x02" + login(0x87, ident) +
          login(0x87, kv(("FirstBurstLength", "8192"))))
    write("iscsi_login", "chap_start", b"\x02\x03" + login(0x81, ident + kv(("AuthMethod", "CHAP,None")))
          + login(0x00, kv(("CHAP_A", "5"))) +
          login(0x81, kv(("CHAP_N", "user"), ("CHAP_R", "0x" + "00" * 16))))
    write("iscsi_login", "chap_mutual_start", b"\x13\x04" + login(0x81, ident + kv(("AuthMethod", "CHAP")))
          + login(0x00, kv(("CHAP_A", "7,5"))) +
          login(0x81, kv(("CHAP_N", "user"), ("CHAP_R", "0b" + "A" * 24), ("CHAP_I", "3"),
                         ("CHAP_C", "0x0102030405060708090a0b0c0d0e0f10"))))
    disc = kv(("InitiatorName", IQN_I), ("SessionType", "Discovery"))
    write("iscsi_login", "discovery_sendtargets", b"\x00\x05" + login(0x81, disc + kv(("AuthMethod", "None")))
          + login(0x87, kv(("MaxRecvDataSegmentLength", "512"), ("HeaderDigest", "None")))
          + text_req(kv(("SendTargets", "All"))) + text_req(b"", ttt=1)
          + text_req(kv(("SendTargets", IQN_T), ("Foo", "bar"))))
    write("iscsi_login", "unknown_target", b"\x00\x06" +
          login(0x81, kv(("InitiatorName", IQN_I), ("TargetName", "iqn.x:nope"))))
    write("iscsi_login", "missing_initiator", b"\x00\x07" + login(0x81, kv(("TargetName", IQN_T))))
    whole = ident + kv(("AuthMethod", "None"))
    write("iscsi_login", "continued_text", b"\x00\x08" + login(0x40, whole[:17]) + login(0x81, whole[17:]))
    many = ident + b"".join(kv(("X-k%04d" % i, "v")) for i in range(400))
    write("iscsi_login", "long_response", b"\x00\x09" + login(0x81, many) + login(0x81, b""))
    write("iscsi_login", "bad_version", b"\x00\x0a" + login(0x81, ident, vmin=2))
    write("iscsi_login", "join_session", b"\x00\x0b" + login(0x87, ident, tsih=1) +
          login(0x87, ident, tsih=2))
    write("iscsi_login", "nop_first", b"\x00\x0c" + pdu(0x40, 0x80))
    write("iscsi_login", "out_of_range", b"\x00\x0d" + login(0x87, ident + kv(
        ("MaxBurstLength", "1"), ("MaxRecvDataSegmentLength", "99999999"), ("InitialR2T", "x"),
        ("DefaultTime2Wait", "0x10"), ("SendTargets", "All"))))


if __name__ == "__main__":
    pdu_seeds()
    login_seeds()
