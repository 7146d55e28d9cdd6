"""``filter``: keep the packets an expression accepts (``out``), the rest to ``rejected``.

The expression language, over the layers ``parse`` found (put ``parse``
upstream: an unparsed frame has no layers, only ``eth.*`` and ``pkt_len``)::

    expr    := or
    or      := and (("or" | "||") and)*
    and     := unary (("and" | "&&") unary)*
    unary   := ("not" | "!") unary | "(" expr ")" | test
    test    := FIELD                       a layer's presence: vlan, ip, ipv4, tcp, ...
             | FIELD CMP VALUE             CMP: == != < <= > >=
             | FIELD "in" VALUE            a CIDR prefix: ipv4.dst in 10.0.0.0/8
             | FIELD "in" "{" VALUE ("," VALUE)* "}"      any of: udp.dport in {53, 5353}

``not`` binds tighter than ``and``, ``and`` tighter than ``or``. Values are
integers (decimal or 0x hex), IPv4 and IPv6 addresses (with ``/len`` after
``in``) and MAC addresses. Fields:

- presence: ``vlan``, ``ip`` (v4 or v6), ``ipv4``, ``ipv6``, ``tcp``,
  ``udp``, ``icmp`` (ICMP or ICMPv6), ``sctp``, ``frag`` (an IP fragment);
- ``eth.dst``, ``eth.src`` (MAC: == !=), ``eth.type`` (the EtherType after
  any VLAN tags), ``vlan.id`` (the outer tag's VID);
- ``ipv4.src``, ``ipv4.dst``, ``ipv6.src``, ``ipv6.dst`` (IPv6: == != in),
  ``ip.proto`` (IPv6: the L4 protocol parse found, else the first next
  header), ``ip.ttl`` (IPv6: the hop limit);
- ``tcp.sport``, ``tcp.dport``, ``tcp.flags``, ``udp.sport``, ``udp.dport``
  (not in fragments), ``pkt_len``.

A comparison on a field the packet lacks is false whatever its operator
(Wireshark's rule): ``udp.dport != 53`` is false for TCP, ``not udp.dport
== 53`` true. A bad expression is a ``ConfigError`` naming its column, raised
when the pipeline is loaded (``pktflow validate`` finds it).

Parsed by a small recursive-descent parser (no ``eval``), compiled to a
postfix program that one generic jitted kernel runs (``_filter_kernels``):
a new expression compiles no new machine code, so numba's on-disk cache
keeps serving it. One kernel call per burst evaluates and partitions it.

Usage (YAML)::

    dns: {type: filter, inputs: [parse], expr: "ipv4.dst in 10.0.0.0/8 and udp.dport == 53"}
    other: {type: drop, inputs: [dns.rejected]}
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

import pktflow
from pktflow._registry import did_you_mean
from pktflow.backends._numba._ring import _compiled

from . import _filter_kernels as k
from ._pool_data import PoolArraysCache

__all__ = ["FIELDS", "Filter", "FilterExprError", "Program", "compile_filter"]

_filter_burst = _compiled(k.filter_burst)

# name -> (field id, kind); kind: "layer" (presence), "int:BITS", "ipv4", "ipv6", "mac".
FIELDS: dict[str, tuple[int, str]] = {
    "vlan": (k.F_VLAN, "layer"),
    "ip": (k.F_IP, "layer"),
    "ipv4": (k.F_IPV4, "layer"),
    "ipv6": (k.F_IPV6, "layer"),
    "tcp": (k.F_TCP, "layer"),
    "udp": (k.F_UDP, "layer"),
    "icmp": (k.F_ICMP, "layer"),
    "sctp": (k.F_SCTP, "layer"),
    "frag": (k.F_FRAG, "layer"),
    "eth.dst": (k.F_ETH_DST, "mac"),
    "eth.src": (k.F_ETH_SRC, "mac"),
    "eth.type": (k.F_ETH_TYPE, "int:16"),
    "vlan.id": (k.F_VLAN_ID, "int:12"),
    "ipv4.src": (k.F_IPV4_SRC, "ipv4"),
    "ipv4.dst": (k.F_IPV4_DST, "ipv4"),
    "ipv6.src": (k.F_IPV6_SRC, "ipv6"),
    "ipv6.dst": (k.F_IPV6_DST, "ipv6"),
    "ip.proto": (k.F_IP_PROTO, "int:8"),
    "ip.ttl": (k.F_IP_TTL, "int:8"),
    "tcp.sport": (k.F_TCP_SPORT, "int:16"),
    "tcp.dport": (k.F_TCP_DPORT, "int:16"),
    "tcp.flags": (k.F_TCP_FLAGS, "int:8"),
    "udp.sport": (k.F_UDP_SPORT, "int:16"),
    "udp.dport": (k.F_UDP_DPORT, "int:16"),
    "pkt_len": (k.F_PKT_LEN, "int:32"),
}
_CMPS = {"==": k.CMP_EQ, "!=": k.CMP_NE, "<": k.CMP_LT, "<=": k.CMP_LE, ">": k.CMP_GT,
         ">=": k.CMP_GE}  # fmt: skip
_KEYWORDS = {"and": "and", "&&": "and", "or": "or", "||": "or", "not": "not", "!": "not",
             "in": "in"}  # fmt: skip
_TOKEN = re.compile(
    r"\s*(?:(?P<punct>==|!=|<=|>=|&&|\|\||[<>!(){},])|(?P<word>[A-Za-z0-9_.:]+(?:/[0-9]+)?))"
)
_MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
_ALL64 = (1 << 64) - 1
_Address = (
    ipaddress.IPv4Network | ipaddress.IPv6Network | ipaddress.IPv4Address | ipaddress.IPv6Address
)


class FilterExprError(pktflow.ConfigError):
    """A filter expression that does not parse; ``column`` is 1-based.

    Its ``key`` is the option, ``expr``: a pipeline's loader reports it under
    the stage's key (``stages.<name>`` then ``expr: column N: ...``).

    Usage: ``except FilterExprError as exc: print(exc.column)``
    """

    def __init__(self, message: str, *, expr: str, column: int) -> None:
        self.column = column
        self.expr = expr
        super().__init__(f"column {column}: {message} (in {expr!r})", key="expr")


class _Token(NamedTuple):
    kind: str  # "punct", "word", "end"
    text: str
    column: int  # 1-based


class Program(NamedTuple):
    """A compiled expression: the kernel's program rows and constants."""

    rows: npt.NDArray[np.int64]
    consts: npt.NDArray[np.uint64]
    text: str


@dataclass
class _Parser:
    expr: str
    tokens: list[_Token]
    at: int = 0

    def error(self, message: str, token: _Token | None = None) -> FilterExprError:
        token = token or self.tokens[self.at]
        return FilterExprError(message, expr=self.expr, column=token.column)

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def next(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def keyword(self, token: _Token) -> str | None:
        return _KEYWORDS.get(token.text.lower() if token.kind == "word" else token.text)


def _tokens(expr: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while True:
        while pos < len(expr) and expr[pos].isspace():
            pos += 1
        if pos == len(expr):
            out.append(_Token("end", "", pos + 1))
            return out
        match = _TOKEN.match(expr, pos)
        if match is None or match.end() == pos:
            raise FilterExprError(f"unexpected character {expr[pos]!r}", expr=expr, column=pos + 1)
        kind = "punct" if match.group("punct") else "word"
        text = match.group(kind)
        out.append(_Token(kind, text, match.start(kind) + 1))
        pos = match.end()


class _Compiler:
    """Recursive descent straight to postfix rows (op, field, cmp, const)."""

    def __init__(self, expr: str) -> None:
        self.p = _Parser(expr, _tokens(expr))
        self.rows: list[tuple[int, int, int, int]] = []
        self.consts: list[int] = []

    def compile(self) -> Program:
        if self.p.peek().kind == "end":
            raise self.p.error("an empty expression")
        self.or_()
        if self.p.peek().kind != "end":
            raise self.p.error(f"expected 'and', 'or' or the end, got {self.p.peek().text!r}")
        rows = np.array(self.rows, dtype=np.int64).reshape(-1, 4)
        consts = np.array(self.consts or [0], dtype=np.uint64)
        return Program(rows, consts, self.p.expr)

    def or_(self) -> None:
        self.and_()
        while self.p.keyword(self.p.peek()) == "or":
            self.p.next()
            self.and_()
            self.rows.append((k.OP_OR, 0, 0, 0))

    def and_(self) -> None:
        self.unary()
        while self.p.keyword(self.p.peek()) == "and":
            self.p.next()
            self.unary()
            self.rows.append((k.OP_AND, 0, 0, 0))

    def unary(self) -> None:
        token = self.p.peek()
        if self.p.keyword(token) == "not":
            self.p.next()
            self.unary()
            self.rows.append((k.OP_NOT, 0, 0, 0))
        elif token.text == "(":
            self.p.next()
            if self.p.peek().text == ")":
                raise self.p.error("an empty pair of parentheses")
            self.or_()
            if self.p.peek().text != ")":
                raise self.p.error(
                    f"expected ')' to close the '(' at column {token.column}, "
                    f"got {self.p.peek().text or 'the end'!r}"
                )
            self.p.next()
        else:
            self.test()

    def test(self) -> None:
        token = self.p.next()
        if token.kind != "word" or self.p.keyword(token):
            got = token.text or "the end"
            raise self.p.error(f"expected a field, 'not' or '(', got {got!r}", token)
        if token.text not in FIELDS:
            raise self.p.error(
                f"unknown field {token.text!r}{did_you_mean(token.text, FIELDS)}", token
            )
        field, kind = FIELDS[token.text]
        op = self.p.peek()
        is_in = self.p.keyword(op) == "in"
        if not is_in and op.text not in _CMPS:
            if kind != "layer":
                raise self.p.error(
                    f"{token.text} is a value: compare it (e.g. {token.text} == ...)", op
                )
            self.rows.append((k.OP_PRESENT, field, 0, 0))
            return
        if kind == "layer":
            raise self.p.error(
                f"{token.text} is a layer: test it alone ({token.text}, not {token.text})", op
            )
        self.p.next()
        if not is_in:
            self.value_test(token.text, field, kind, op, False)
            return
        if self.p.peek().text != "{":
            self.value_test(token.text, field, kind, op, True)
            return
        brace = self.p.next()
        count = 0
        while True:
            self.value_test(token.text, field, kind, op, True)
            if count:
                self.rows.append((k.OP_OR, 0, 0, 0))
            count += 1
            sep = self.p.next()
            if sep.text == "}":
                return
            if sep.text != ",":
                raise self.p.error(
                    f"expected ',' or '}}' to close the '{{' at column {brace.column}, "
                    f"got {sep.text or 'the end'!r}",
                    sep,
                )

    def value_test(self, name: str, field: int, kind: str, op: _Token, is_in: bool) -> None:
        token = self.p.next()
        text = token.text
        if token.kind != "word" or self.p.keyword(token):
            raise self.p.error(f"expected a value after {op.text!r}, got {text or 'the end'!r}",
                               token)  # fmt: skip
        cmp = _CMPS.get(op.text, k.CMP_EQ)
        ordered = cmp in (k.CMP_LT, k.CMP_LE, k.CMP_GT, k.CMP_GE)
        if kind.startswith("int"):
            bits = int(kind.partition(":")[2])
            try:
                value = int(text, 0)
            except ValueError:
                raise self.p.error(f"{name} takes an integer, not {text!r}", token) from None
            if not 0 <= value < 1 << bits:
                raise self.p.error(f"{value} is outside {name}'s range 0..{(1 << bits) - 1}", token)
            self.emit_test(field, cmp, [value])
        elif kind == "mac":
            if ordered or is_in:
                raise self.p.error(f"{name} compares with == or != only", op)
            if not _MAC.fullmatch(text):
                raise self.p.error(f"{name} takes a MAC address like 02:00:00:00:00:01, "
                                   f"not {text!r}", token)  # fmt: skip
            self.emit_test(field, cmp, [int(text.replace(":", ""), 16)])
        else:
            version = 4 if kind == "ipv4" else 6
            if version == 6 and ordered:
                raise self.p.error(f"{name} compares with ==, != or in only", op)
            try:
                parsed: _Address = (
                    ipaddress.ip_network(text) if is_in else ipaddress.ip_address(text)
                )
            except ValueError as exc:
                example = "10.0.0.0/8" if version == 4 else "2001:db8::/32"
                what = f"a prefix like {example}" if is_in else "an address"
                raise self.p.error(f"{name} takes {what}: {exc}", token) from None
            if parsed.version != version:
                raise self.p.error(f"{name} takes an IPv{version} value, not {text!r}", token)
            if isinstance(parsed, ipaddress.IPv4Network | ipaddress.IPv6Network):
                value, mask = int(parsed.network_address), int(parsed.netmask)
                cmp = k.CMP_MASKEQ
            else:
                value, mask = int(parsed), (1 << parsed.max_prefixlen) - 1
            if version == 4:
                self.emit_test(field, cmp, [value, mask])
            else:
                self.emit_test(field, cmp, [value >> 64, value & _ALL64, mask >> 64, mask & _ALL64])

    def emit_test(self, field: int, cmp: int, consts: list[int]) -> None:
        self.rows.append((k.OP_TEST, field, cmp, len(self.consts)))
        self.consts.extend(consts)


def compile_filter(expr: str) -> Program:
    """Parse and compile ``expr``; ``FilterExprError`` (a ``ConfigError``) with its column.

    Usage: ``program = compile_filter("udp.dport == 53 and not vlan")``
    """
    return _Compiler(expr).compile()


class Filter(pktflow.Stage):
    """Emits the packets ``expr`` accepts to ``out``, the others to ``rejected``.

    Options:
        expr: The expression, e.g. "ipv4.dst in 10.0.0.0/8 and udp.dport == 53 and not vlan"
            (the fields parse found: put parse upstream).
    """

    outputs = ("out", "rejected")
    keeps_lengths = True

    @classmethod
    def outputs_for(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        # Called when the pipeline is loaded: a bad expression fails there
        # (pktflow validate, from_yaml), with the file and line, not at start.
        expr = options.get("expr")
        if isinstance(expr, str):
            compile_filter(expr)
        return cls.outputs

    def __init__(self, ctx: pktflow.StageContext, *, expr: str) -> None:
        super().__init__(ctx)
        self.program = compile_filter(expr)
        self._rows, self._consts = self.program.rows, self.program.consts
        self._arrays = PoolArraysCache()
        self._scratch = np.empty(ctx.burst_size, dtype=np.uint32)
        self._nbytes = np.zeros(2, dtype=np.int64)  # accepted, rejected

    def process(self, burst: pktflow.Burst) -> None:
        words, data, stride = self._arrays.of(burst.pool)
        n = burst.n
        if self._scratch.shape[0] < n:
            self._scratch = np.empty(burst.capacity, dtype=np.uint32)
        kept = _filter_burst(words, data, stride, burst.array, n, self._rows, self._consts,
                             self._scratch, self._nbytes)  # fmt: skip
        if kept == n:
            self.emit(burst)
        elif kept == 0:
            self.emit(burst, "rejected")
        elif kept > 0:
            accepted, rejected = self._nbytes.tolist()
            out = burst.take(slice(0, kept))
            out.nbytes = accepted  # counted by the kernel: the runtime need not
            self.emit(out)
            out = burst.take(slice(kept, n))
            out.nbytes = rejected
            self.emit(out, "rejected")
        else:
            raise pktflow.MbufError(
                f"filter: a handle of the burst is not an mbuf of pool {burst.pool.name!r}"
            )
