#!/usr/bin/python3
"""Writes fuzz/corpus/scsi_cdb/: seeds for fuzz/scsi_cdb.cpp (run from the repository root;
deterministic, rewrites the directory). Each seed is a list of records (see the target's header):
valid CDBs for the commands core/scsi implements, with their data-out, plus a few invalid ones."""
import os
import struct

OUT = "fuzz/corpus/scsi_cdb"
LENS = {6: 0, 10: 1, 12: 2, 16: 3, 32: 4}


def rec(cdb, xfer=0, out=b"", nexus=0, lun1=False, wait=True, iovs=1):
    flags = nexus & 3
    if lun1:
        flags |= 0x04
    if out:
        flags |= 0x08
    if wait:
        flags |= 0x10
    flags |= ((iovs - 1) & 3) << 6
    cdb = bytes(cdb)
    return bytes([flags, LENS[len(cdb)]]) + cdb + struct.pack(">H", xfer) + out


def tmf(function, nexus=0, lun1=False):
    return bytes([0x20 | (nexus & 3), (function & 3) | (4 if lun1 else 0)])


def rw10(op, lba, n, flags=0):
    return bytes([op, flags]) + struct.pack(">IBH", lba, 0, n) + b"\0"


def rw16(op, lba, n, flags=0):
    return bytes([op, flags]) + struct.pack(">QI", lba, n) + b"\0\0"


TUR = bytes(6)
BLOCK = bytes(range(256)) * 2

seeds = {
    "tur_inquiry": rec(TUR) + rec(TUR) + rec([0x12, 0, 0, 0, 96, 0], 96)
    + b"".join(rec([0x12, 1, p, 0, 255, 0], 255) for p in (0, 0x80, 0x83, 0xB0, 0xB1, 0xB2)),
    "capacity": rec(TUR) + rec(bytes([0x25]) + bytes(9), 8)
    + rec(bytes([0x9E, 0x10]) + bytes(11) + b"\x20\0\0", 32)
    + rec(bytes([0x9E, 0x12]) + bytes(11) + b"\x18\0\0", 24),
    "read_write": rec(TUR) + rec(rw10(0x2A, 0, 1), 512, BLOCK) + rec(rw10(0x28, 0, 1), 512)
    + rec(rw16(0x8A, 8, 2, 0x08), 1024, BLOCK * 2, iovs=3) + rec(rw16(0x88, 8, 2), 1024, iovs=2)
    + rec([0x0A, 0, 0, 4, 1, 0], 512, BLOCK) + rec([0x08, 0, 0, 4, 1, 0], 512)
    + rec(bytes([0xAA, 0]) + struct.pack(">II", 16, 1) + b"\0\0", 512, BLOCK)
    + rec(bytes([0xA8, 0]) + struct.pack(">II", 16, 1) + b"\0\0", 512)
    + rec(rw10(0x28, 255, 2), 1024) + rec(rw10(0x28, 0, 1, 0x20), 512),
    "verify_ws_unmap": rec(TUR) + rec(rw10(0x2F, 0, 1, 0x02), 512, BLOCK)
    + rec(rw16(0x93, 0, 20), 512, BLOCK) + rec(rw10(0x41, 20, 4, 0x08), 512, bytes(512))
    + rec(rw16(0x93, 30, 3, 0x01))
    + rec(bytes([0x42]) + bytes(6) + b"\0\x18\0", 24,
          struct.pack(">HH4xQI4x", 22, 16, 40, 8)),
    "compare_and_write": rec(TUR) + rec(rw10(0x2A, 50, 1), 512, BLOCK)
    + rec(bytes([0x89, 0]) + struct.pack(">Q", 50) + b"\0\0\0\x01\0\0", 1024, BLOCK + bytes(512))
    + rec(bytes([0x89, 0]) + struct.pack(">Q", 50) + b"\0\0\0\x01\0\0", 1024, BLOCK + bytes(512)),
    "mode": rec(TUR) + rec([0x1A, 0, 0x3F, 0, 255, 0], 255) + rec([0x5A, 0x18, 0x48, 0, 0, 0, 0, 0, 255, 0], 255)
    + rec([0x15, 0x10, 0, 0, 16, 0], 16, bytes(4) + bytes([0x0A, 0x0A, 0x04, 0x10, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0]))
    + rec([0xC7, 0, 0, 0, 0, 0]) + rec([0x1A, 0, 0xC8, 0, 255, 0], 255),
    "luns_sense": rec(bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), 256)
    + rec([0x03, 0, 0, 0, 252, 0], 252) + rec([0x03, 1, 0, 0, 252, 0], 252)
    + rec(TUR, lun1=True) + rec([0x12, 0, 0, 0, 36, 0], 36, lun1=True)
    + rec([0x35] + [0] * 9) + rec(rw16(0x91, 0, 0)) + rec([0x1B, 0, 0, 0, 1, 0]),
    "pr": rec(TUR) + rec(TUR, nexus=1)
    + rec([0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0], 24, struct.pack(">QQ8x", 0, 0xA1))
    + rec([0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0], 24, struct.pack(">QQ8x", 0, 0xB2), nexus=1)
    + rec([0x5F, 1, 1, 0, 0, 0, 0, 0, 24, 0], 24, struct.pack(">QQ8x", 0xA1, 0))
    + rec(rw10(0x2A, 0, 1), 512, BLOCK, nexus=1)
    + rec([0x5E, 0, 0, 0, 0, 0, 0, 1, 0, 0], 256) + rec([0x5E, 1, 0, 0, 0, 0, 0, 1, 0, 0], 256)
    + rec([0x5E, 2, 0, 0, 0, 0, 0, 0, 8, 0], 8)
    + rec([0x5F, 4, 3, 0, 0, 0, 0, 0, 24, 0], 24, struct.pack(">QQ8x", 0xB2, 0xA1), nexus=1)
    + rec([0x5F, 3, 0, 0, 0, 0, 0, 0, 24, 0], 24, struct.pack(">QQ8x", 0xB2, 0), nexus=1),
    "rsoc": rec(TUR) + rec([0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], 4096)
    + rec([0xA3, 0x0C, 0x81, 0x28, 0, 0, 0, 0, 1, 0, 0, 0], 256)
    + rec([0xA3, 0x0C, 0x02, 0x9E, 0, 0x10, 0, 0, 1, 0, 0, 0], 256),
    "tmf": rec(TUR) + rec(rw10(0x28, 0, 8), 4096, wait=False) + tmf(0)
    + rec(rw10(0x28, 0, 8), 4096, wait=False) + rec(rw10(0x28, 8, 8), 4096, wait=False) + tmf(1)
    + rec(rw10(0x2A, 0, 8), 4096, BLOCK * 8, wait=False) + tmf(2) + tmf(3, nexus=1) + tmf(2, lun1=True),
}

os.makedirs(OUT, exist_ok=True)
for f in os.listdir(OUT):
    os.remove(os.path.join(OUT, f))
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as fh:
        fh.write(data)
print(f"{len(seeds)} seeds in {OUT}")
