"""pktflow: DPDK's memory model for Python.

Huge-page memory zones, lock-free rings of 32-bit handles, mempools with
per-lcore caches and packet buffers (mbufs) that move between pipeline
stages as handles, never as copied bytes.

Usage::

    import numpy as np, pktflow
    with pktflow.Ring("rx0", 1024) as ring:
        ring.enqueue_burst(np.arange(32, dtype=np.uint32))
"""

from __future__ import annotations

from ._cache import MempoolCache
from ._errors import (
    BackendError,
    ClosedError,
    ConfigError,
    ExistsError,
    MbufError,
    MempoolError,
    NotFoundError,
    PipelineError,
    PktflowError,
    PktflowTypeError,
    PktflowValueError,
    RingError,
    RingStalledError,
)
from ._lcore import LCORE_ID_ANY, MAX_LCORE, lcore_id, register_lcore, unregister_lcore
from ._mbuf import (
    MBUF_DEFAULT_BUF_SIZE,
    MBUF_DEFAULT_DATAROOM,
    MBUF_F_INDIRECT,
    MBUF_HEADER_DTYPE,
    MBUF_MAX_NB_SEGS,
    MBUF_PORT_INVALID,
    PKTMBUF_HEADROOM,
    SOCKET_ID_ANY,
    BoundMbufPool,
    Mbuf,
    PktmbufPool,
    pktmbuf_pool_create,
    socket_id,
)
from ._memory import Zone, ZoneInfo, ZoneSpaceError, cleanup_zones, hugepage_info, list_zones
from ._mempool import MEMPOOL_F_NO_CACHE_ALIGN, BoundMempool, Mempool
from ._pipeline import Pipeline, Stats
from ._registry import (
    available_backends,
    backend_names,
    default_backend_name,
    get_backend,
    register_backend,
)
from ._registry import unavailable_reason as backend_unavailable_reason
from ._ring import BoundRing, Ring
from ._stage import Burst, Source, Stage, StageContext, StageStats
from ._stage_types import register_stage, stage_type, stage_type_names
from ._wakeup import Waker
from .abc import RING_F_EXACT_SZ, RING_F_SC_DEQ, RING_F_SP_ENQ, WAIT_DATA, WAIT_ROOM

__version__ = "0.1.0"

__all__ = [
    "MBUF_DEFAULT_BUF_SIZE",
    "MBUF_DEFAULT_DATAROOM",
    "MBUF_F_INDIRECT",
    "MBUF_HEADER_DTYPE",
    "MBUF_MAX_NB_SEGS",
    "MBUF_PORT_INVALID",
    "PKTMBUF_HEADROOM",
    "SOCKET_ID_ANY",
    "Mbuf",
    "PktmbufPool",
    "pktmbuf_pool_create",
    "socket_id",
    "LCORE_ID_ANY",
    "MAX_LCORE",
    "MEMPOOL_F_NO_CACHE_ALIGN",
    "RING_F_EXACT_SZ",
    "RING_F_SC_DEQ",
    "RING_F_SP_ENQ",
    "WAIT_DATA",
    "WAIT_ROOM",
    "Waker",
    "BackendError",
    "BoundMbufPool",
    "BoundMempool",
    "BoundRing",
    "ClosedError",
    "ConfigError",
    "ExistsError",
    "MbufError",
    "Mempool",
    "MempoolCache",
    "MempoolError",
    "NotFoundError",
    "PipelineError",
    "Pipeline",
    "Stats",
    "Burst",
    "Source",
    "Stage",
    "StageContext",
    "StageStats",
    "register_stage",
    "stage_type",
    "stage_type_names",
    "PktflowError",
    "PktflowTypeError",
    "PktflowValueError",
    "Ring",
    "RingError",
    "RingStalledError",
    "Zone",
    "ZoneInfo",
    "ZoneSpaceError",
    "available_backends",
    "backend_names",
    "backend_unavailable_reason",
    "cleanup_zones",
    "default_backend_name",
    "get_backend",
    "hugepage_info",
    "lcore_id",
    "list_zones",
    "register_backend",
    "register_lcore",
    "unregister_lcore",
]
