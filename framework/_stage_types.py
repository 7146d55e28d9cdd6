"""Stage types by name: built-ins, the ``pktflow.stages`` entry points, "module:Class".

The same registry machinery as ring backends (``_registry.Registry``): a
third party's stage is found exactly as the built-in ones are. Loading a
pipeline may import code: a ``type`` of ``"package.module:Class"`` imports
that module.

Usage::

    pktflow.register_stage("tag", Tag)          # or an entry point in pktflow.stages
    pktflow.stage_type("generator")             # -> pktflow.pipelines.generator.Generator
"""

from __future__ import annotations

from ._errors import ConfigError
from ._registry import Registry
from ._stage import Stage

__all__ = ["register_stage", "stage_type", "stage_type_names"]

ENTRY_POINT_GROUP = "pktflow.stages"

_BUILTIN: dict[str, str] = {
    "generator": "pktflow.pipelines.generator:Generator",
    "parse": "pktflow.pipelines.parse:Parse",
    "counter": "pktflow.pipelines.sinks:Counter",
    "drop": "pktflow.pipelines.sinks:Drop",
    "balance": "pktflow.pipelines.balance:Balance",
    "filter": "pktflow.pipelines.filter:Filter",
    "l2fwd": "pktflow.pipelines.l2fwd:L2fwd",
    "tap": "pktflow.pipelines.tap:Tap",
    "pcap_source": "pktflow.pipelines.pcap:PcapSource",
    "pcap_sink": "pktflow.pipelines.pcap:PcapSink",
    "udp_source": "pktflow.pipelines.udp:UdpSource",
    "udp_sink": "pktflow.pipelines.udp:UdpSink",
    "afpacket_source": "pktflow.pipelines.afpacket:AfpacketSource",
    "afpacket_sink": "pktflow.pipelines.afpacket:AfpacketSink",
}


def _is_stage(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, Stage)


_registry: Registry[type[Stage]] = Registry(
    kind="stage type",
    group=ENTRY_POINT_GROUP,
    builtins=_BUILTIN,
    validate=_is_stage,
    expected="a pktflow.Stage subclass",
    error=ConfigError,
)


def register_stage(name: str, stage: type[Stage] | str) -> None:
    """Make a stage class (or a "module:Class" path) a type YAML can name.

    Usage: ``pktflow.register_stage("tag", Tag)``
    """
    _registry.register(name, stage)


def stage_type(name: str) -> type[Stage]:
    """The stage class a YAML ``type`` names; ``ConfigError`` listing the known ones.

    Usage: ``pktflow.stage_type("parse")``
    """
    return _registry.load(name)


def stage_type_names() -> list[str]:
    """Every declared stage type name (built-in, entry points, registered).

    Usage: ``pktflow.stage_type_names()  # ['counter', 'drop', 'generator', 'parse']``
    """
    return _registry.names()
