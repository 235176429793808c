"""Asynchronous bdev I/O from Python (strata.bdev.Io, Queue, wait): submissions are posted to a
Thread of the World and completed there by the simulator; the harness only steps and reads."""

import pytest

import strata
import strata.bdev as sbdev

S = 1_000_000_000


@pytest.fixture
def malloc(world):
    world.rpc("bdev_malloc_create", name="M0", num_blocks=1024, block_size=512)
    return world.bdev("M0")


def test_submit_is_posted_and_completed_by_the_simulator(world, malloc):
    ios = [malloc.submit_write(i * 8, bytes([i + 1]) * 4096) for i in range(16)]
    assert not any(io.started or io.done for io in ios)  # nothing ran yet
    assert [io.status for io in ios] == ["pending"] * 16
    assert sbdev.wait(world, ios, timeout_ns=S)
    assert [(io.status, io.completions, io.num_blocks) for io in ios] == [("success", 1, 8)] * 16
    r = malloc.submit_read(8, 8)
    with pytest.raises(RuntimeError, match="pending"):
        r.result()
    assert sbdev.wait(world, [r])
    assert r.result() == b"\x02" * 4096 == r.data
    assert r.latency_ns is not None and r.thread == "app_thread"
    assert malloc.read(8, 1) == b"\x02" * 512  # the synchronous form sees the same


def test_refusals_and_errors_are_reported_not_raised(world, malloc):
    bad_len = malloc.submit_write(0, b"x" * 100)
    beyond = malloc.submit_read(1020, 8)
    missing = world.bdev("nope").submit_read(0, 1)
    assert sbdev.wait(world, [bad_len, beyond, missing])
    assert [io.status for io in (bad_len, beyond, missing)] == ["refused"] * 3
    assert "not_found" in missing.refusal
    with pytest.raises(sbdev.BdevIoRefused, match="invalid_argument"):
        bad_len.result()
    with pytest.raises(ValueError, match="unknown bdev operation"):
        malloc.submit("explode")
    with pytest.raises(ValueError, match="no Thread named"):
        malloc.submit_read(0, 1, thread="nope")


def test_error_completion_raises_bdev_io_error(world, malloc):
    world.rpc("bdev_error_create", base_name="M0")
    world.rpc("bdev_error_inject_error", name="EE_M0", io_type="read", error_type="failure",
              num=1)
    io = world.bdev("EE_M0").submit_read(0, 1)
    assert sbdev.wait(world, [io])
    assert io.status == "io_error" and io.completions == 1
    with pytest.raises(sbdev.BdevIoError):
        io.result()


def test_a_queue_keeps_one_channel_and_closes_when_its_bdev_goes(world, malloc):
    q = malloc.queue()
    assert q.state == "opening"
    ios = [q.submit_write(i * 8, bytes([i]) * 4096) for i in range(8)]
    assert sbdev.wait(world, ios) and q.state == "open"
    assert (q.submitted, q.completed, q.outstanding) == (8, 8, 0)
    # Deleting the bdev: the queue gets Event::remove, closes, and the delete finishes.
    world.rpc("bdev_malloc_delete", name="M0")
    assert q.closed and q.removed
    late = q.submit_read(0, 1)
    assert sbdev.wait(world, [late]) and late.status == "refused"
    assert "being removed" in late.refusal


def test_queue_close_and_read_only_queue(world, malloc):
    ro = malloc.queue(write=False)
    w = ro.submit_write(0, bytes(512))
    r = ro.submit_read(0, 1)
    assert sbdev.wait(world, [w, r])
    assert w.status == "refused" and "read-only" in w.refusal and r.status == "success"
    ro.close()
    assert world.run_until(lambda: ro.closed, timeout_ns=S)
    with malloc.queue(thread=world.threads()[-1]["name"]) as q:
        io = q.submit_read(0, 1)
        assert sbdev.wait(world, [io]) and io.thread == q.thread
    assert world.run_until(lambda: q.closed, timeout_ns=S)


def test_a_queue_belongs_to_its_world(world, malloc, seed):
    q = malloc.queue()
    with strata.World(seed=seed) as other:
        with pytest.raises(ValueError, match="another host"):
            other.bdev_submit("M0", "read", 0, 1, None, None, None, q._n)
        with pytest.raises(ValueError, match="another host"):
            other.bdev_queue_close(q._n)
    io = q.submit_read(0, 1)
    assert sbdev.wait(world, [io]) and io.ok


def test_world_close_with_io_and_queues_outstanding(seed):
    w = strata.World(seed=seed)
    w.rpc("bdev_malloc_create", name="M0", num_blocks=64, block_size=512)
    w.rpc("bdev_delay_create", base_bdev_name="M0", name="D0", avg_read_latency=10**6,
          p99_read_latency=10**6, avg_write_latency=10**6, p99_write_latency=10**6)
    q = w.bdev("D0").queue()
    slow = [q.submit_read(i, 1) for i in range(4)]
    w.advance(1000)
    assert not any(io.done for io in slow)
    w.close()  # the queue closes with the App; its I/O completed or was abandoned, nothing hangs
    assert q.closed
    assert all(io.status in ("success", "aborted", "abandoned") for io in slow), slow


def test_same_seed_same_trace_with_async_io(seed):
    def run():
        with strata.World(seed=seed, reactors=2) as w:
            w.rpc("bdev_malloc_create", name="M0", num_blocks=256, block_size=512)
            w.create_thread("worker")
            d = w.bdev("M0")
            ios = [d.submit_write(i, bytes([i]) * 512, thread="worker" if i % 2 else None)
                   for i in range(32)]
            assert sbdev.wait(w, ios)
            return w.trace_hash(), [io.latency_ns for io in ios]
    assert run() == run()
