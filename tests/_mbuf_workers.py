"""Bodies of the processes test_mbuf.py spawns: importable without pytest, so
a ``spawn`` child loads only pktflow and this file, as a separate program would.
"""

from __future__ import annotations

import numpy as np

import pktflow

# The payload of mbuf ``i`` in a burst: known bytes, a different length per mbuf.
FIRST_SEG = 24


def payload(i: int) -> bytes:
    return bytes((i * 7 + k) & 0xFF for k in range(FIRST_SEG + i % 5))


def fill_mbufs(pool_name: str, to_parent: str, to_child: str, count: int, port: int) -> None:
    """Attach by name, build ``count`` two-segment packets, hand their heads over.

    Also frees every handle the parent queued on ``to_child`` (each holds one
    extra reference), so the parent sees refcnts drop from another process.
    """
    pool = pktflow.PktmbufPool.lookup(pool_name)
    as_mempool = pktflow.Mempool.lookup(pool_name)
    tx = pktflow.Ring.lookup(to_parent)
    rx = pktflow.Ring.lookup(to_child)
    try:
        # Both views count the same shared free list.
        assert as_mempool.avail_count() == pool.avail_count()
        heads = np.empty(count, dtype=np.uint32)
        tails = np.empty(count, dtype=np.uint32)
        assert pool.alloc_bulk(heads) == count
        assert pool.alloc_bulk(tails) == count
        for i in range(count):
            head, tail = pool.mbuf(int(heads[i])), pool.mbuf(int(tails[i]))
            data = payload(i)
            head.append(FIRST_SEG)[:] = data[:FIRST_SEG]
            tail.append(len(data) - FIRST_SEG)[:] = data[FIRST_SEG:]
            assert head.chain(tail)
            head.port = port
            head.vlan_tci = i
            head.hash = 0xC0DE0000 + i
        assert tx.enqueue_bulk(heads) == count

        shared = np.empty(rx.count(), dtype=np.uint32)
        got = rx.dequeue_burst(shared)
        pool.free_bulk(shared, got)
        assert as_mempool.avail_count() == pool.avail_count()
    finally:
        rx.close()
        tx.close()
        as_mempool.close()
        pool.close()
