"""The hardware-access layer from Python: an emulated PCI device (the CopyEngine test model)
claimed through env, DMA through the IOVA map, and DMA faults counted where tests can see them."""

import pytest

ADDR = "0000:00:04.0"


@pytest.fixture
def engine(world):
    world.add_copy_engine(ADDR)
    yield world
    world.close()


def test_device_is_enumerated_and_claimed(engine):
    (fn,) = engine.pci_functions()
    assert fn["address"] == ADDR
    assert (fn["vendor_id"], fn["device_id"]) == (0x1AF4, 0x10F0)
    assert fn["dma_faults"] == 0


def test_copy_through_dma(engine):
    src, dst = engine.dma_alloc(8192), engine.dma_alloc(8192)
    payload = bytes(range(256)) * 16
    engine.dma_write(src, payload)
    assert engine.copy_engine_run(ADDR, src, dst, len(payload)) == "done"
    assert engine.dma_read(dst, len(payload)) == payload
    assert engine.dma_fault_count() == 0


def test_unmapped_and_past_the_end_iovas_are_counted_faults(engine):
    src, dst = engine.dma_alloc(4096), engine.dma_alloc(4096)
    assert engine.copy_engine_run(ADDR, 0xDEAD0000, dst, 64) == "dma_error"
    assert engine.dma_fault_count(ADDR) == 1
    # 16 bytes inside the buffer, 48 past its end: refused whole, nothing written.
    engine.dma_write(src, b"x" * 64)
    assert engine.copy_engine_run(ADDR, src, dst + 4096 - 16, 64) == "dma_error"
    assert engine.dma_fault_count() == 2
    assert engine.dma_read(dst + 4096 - 16, 16) == b"\0" * 16
    # The device keeps working after faults.
    assert engine.copy_engine_run(ADDR, src, dst, 64) == "done"
    assert engine.dma_fault_count() == 2


def test_surprise_removal(engine):
    src, dst = engine.dma_alloc(4096), engine.dma_alloc(4096)
    engine.surprise_remove(ADDR)
    assert engine.copy_engine_run(ADDR, src, dst, 64) == "removed"  # BAR reads all-ones
    assert engine.pci_functions() == []


def test_iova_is_not_a_host_address(engine):
    iova = engine.dma_alloc(4096)
    assert iova >= 0x10_0000_0000  # the sim backend's own IOVA space
    with pytest.raises(ValueError):
        engine.dma_read(iova + 4096, 1)


def test_two_worlds_have_their_own_bus(engine):
    # Each World is its own machine: its own emulated bus (a function at the same address as the
    # other World's, claimed independently), its own DMA memory and IOVA map.
    import strata
    other = strata.World(seed=engine.seed + 1)
    try:
        other.add_copy_engine(ADDR)
        assert [f["address"] for f in other.pci_functions()] == [ADDR]
        src, dst = engine.dma_alloc(4096), engine.dma_alloc(4096)
        engine.dma_write(src, b"mine")
        o_src, o_dst = other.dma_alloc(4096), other.dma_alloc(4096)
        other.dma_write(o_src, b"theirs")
        assert other.copy_engine_run(ADDR, o_src, o_dst, 6) == "done"
        assert other.dma_read(o_dst, 6) == b"theirs"
        assert engine.copy_engine_run(ADDR, src, dst, 4) == "done"
        assert engine.dma_read(dst, 4) == b"mine"
        # An IOVA only the first World mapped faults on the other World's device.
        far = engine.dma_alloc(1 << 20)
        assert other.copy_engine_run(ADDR, far + (1 << 19), o_dst, 8) == "dma_error"
        assert other.dma_fault_count(ADDR) == 1
        assert engine.dma_fault_count(ADDR) == 0
    finally:
        other.close()
