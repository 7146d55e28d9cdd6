"""Generated pages: the YAML reference, the built-in stages and the CLI's help.

A MkDocs hook (``hooks:`` in mkdocs.yml). A page asks for a generated part
with a line of its own, ``<!-- generate: NAME -->``; NAME is one of
``GENERATORS``. Each part is read from the code at build time, so it cannot
drift from it:

- ``yaml-reference``: the msgspec Structs the validator converts each
  section into (``pktflow._spec``), field by field: key, type, default and
  the meaning in the field's ``msgspec.Meta(description=...)``;
- ``builtin-stages``: every built-in stage type, its class's docstring, its
  keyword-only constructor arguments (its YAML options) and its outputs;
- ``cli``: ``pktflow --help`` and the help of every subcommand, from click.

tests/test_docs.py imports this file too (every field has a meaning).
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import msgspec
import msgspec.inspect as mi

__all__ = ["GENERATORS", "on_page_content", "on_page_markdown", "on_startup", "yaml_fields"]

_MARKER = re.compile(r"^<!-- generate: ([a-z-]+) -->$", re.M)


# -- the YAML reference ------------------------------------------------------


def _bounds(t: Any) -> str:
    low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else None)
    high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else None)
    if low is not None and high is not None:
        text = f"{low}..{high}"
    elif low is not None:
        text = f"≥ {low}"
    elif high is not None:
        text = f"≤ {high}"
    else:
        text = ""
    if getattr(t, "multiple_of", None):
        text += f"{', ' if text else ''}a multiple of {t.multiple_of}"
    return text


def type_text(t: Any) -> str:
    """A msgspec.inspect type as a reader says it: ``int (1..65535)``, ``busy | adaptive``."""
    if isinstance(t, mi.Metadata):
        return type_text(t.type)
    if isinstance(t, mi.IntType):
        bounds = _bounds(t)
        return f"int ({bounds})" if bounds else "int"
    if isinstance(t, mi.FloatType):
        return "float"
    if isinstance(t, mi.StrType):
        return "string"
    if isinstance(t, mi.BoolType):
        return "bool"
    if isinstance(t, mi.NoneType):
        return "null"
    if isinstance(t, mi.LiteralType):
        return " \\| ".join(f"`{v}`" for v in t.values)
    if isinstance(t, mi.ListType):
        return f"list of {type_text(t.item_type)}"
    if isinstance(t, mi.DictType):
        return f"mapping of {type_text(t.key_type)} to {type_text(t.value_type)}"
    if isinstance(t, mi.StructType):
        return f"mapping ([{_section_title(t.cls)}](#{_anchor(t.cls)}))"
    if isinstance(t, mi.UnionType):
        return " or ".join(type_text(u) for u in t.types)
    raise TypeError(f"the YAML reference cannot describe {t!r}")


def _description(t: Any) -> str:
    if isinstance(t, mi.Metadata) and t.extra_json_schema:
        return str(t.extra_json_schema.get("description", ""))
    return ""


def yaml_fields(cls: type[msgspec.Struct]) -> Iterator[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for each field of a spec Struct, in order."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    for field in info.fields:
        if field.required:
            default = "required"
        elif field.default_factory is not msgspec.NODEFAULT:
            default = f"`{msgspec.json.encode(field.default_factory()).decode()}`"
        else:
            default = f"`{msgspec.json.encode(field.default).decode()}`"
        yield field.encode_name, type_text(field.type), default, _description(field.type)


def _sections() -> list[tuple[str, type[msgspec.Struct], str]]:
    from pktflow import _spec

    return [
        ("runtime:", _spec.RuntimeSpec, "The runtime of the whole pipeline. Optional."),
        (
            "mempools: NAME:",
            _spec.MempoolSpec,
            "Each entry is a mempool of mbufs, by name (letters, digits, `_` and `-`). "
            "A pipeline without `mempools:` gets one, `pkts` (n 8191).",
        ),
        (
            "stages: NAME:",
            _spec._StageKeys,
            "Each entry is a stage, by name. Besides these keys, a stage's mapping holds "
            "the stage type's own options (see [the built-in stages](stages.md#built-in-stages)).",
        ),
        ("edge:", _spec.EdgeSpec, "Under a stage's `edge:`: its input edges."),
        ("metrics:", _spec.MetricsSpec, "Under `runtime:`: where the counters are served."),
        (
            "cluster:",
            _spec.ClusterSpec,
            "Pipelines across machines. **Not yet available**: this version checks the "
            "section, then refuses it.",
        ),
    ]


def _section_title(cls: type) -> str:
    for title, section_cls, _ in _sections():
        if section_cls is cls:
            return f"`{title}`"
    return cls.__name__


def _anchor(cls: type) -> str:
    return cls.__name__.strip("_").lower()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def yaml_reference() -> str:
    out = []
    for title, cls, intro in _sections():
        out += [f"### `{title}` {{#{_anchor(cls)}}}", "", intro, ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for key, type_, default, meaning in yaml_fields(cls):
            out.append(f"| `{key}` | {type_} | {default} | {_cell(meaning)} |")
        out.append("")
    return "\n".join(out)


# -- the built-in stages -------------------------------------------------------


def _options(cls: type) -> list[inspect.Parameter]:
    params = inspect.signature(cls.__init__).parameters.values()
    return [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _hint_text(cls: type, name: str) -> str:
    hints = typing.get_type_hints(cls.__init__)
    hint = hints.get(name)
    if hint is None:
        return "any"
    try:
        return type_text(mi.type_info(hint))
    except TypeError:
        return f"`{hint}`"


def _option_meanings(cls: type) -> dict[str, str]:
    """The ``Options:`` section of a stage class's docstring: ``name: meaning`` lines."""
    doc = inspect.getdoc(cls) or ""
    meanings: dict[str, str] = {}
    section = doc.partition("\nOptions:\n")[2]
    current = None
    for line in section.splitlines():
        if not line.strip():
            break
        match = re.match(r"\s{4}(\w+): (.*)", line)
        if match:
            current = match.group(1)
            meanings[current] = match.group(2)
        elif current is not None:
            meanings[current] += " " + line.strip()
    return meanings


def builtin_stages() -> str:
    import pktflow
    from pktflow import _stage_types

    out = []
    modules = [path.partition(":")[0] for path in _stage_types._BUILTIN.values()]
    for name in sorted(_stage_types._BUILTIN):
        cls = pktflow.stage_type(name)
        kind = "source" if issubclass(cls, pktflow.Source) else "stage"
        path = f"{cls.__module__}.{cls.__qualname__}"
        summary = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
        module_doc = inspect.getdoc(inspect.getmodule(cls)) or ""
        out += [f"### `{name}`", "", f"{summary}", ""]
        details = module_doc.split("\n\n")[1:]
        details = [d for d in details if not d.startswith("Usage")]
        if details and modules.count(cls.__module__) == 1 and not details[0].endswith(":"):
            out += [details[0].replace("\n", " "), ""]
        outputs = ", ".join(f"`{o}`" for o in cls.outputs) or "none (a sink)"
        if "outputs_for" in vars(cls):  # outputs may depend on options: the summary says
            outputs += " (with the default options)"
        out += [f"- class: `{path}` ({kind})", f"- outputs: {outputs}"]
        options = _options(cls)
        if not options:
            out += ["- options: none", ""]
            continue
        meanings = _option_meanings(cls)
        out += ["", "| option | type | default | meaning |", "|---|---|---|---|"]
        for p in options:
            default = "required" if p.default is p.empty else f"`{_yaml_value(p.default)}`"
            out.append(
                f"| `{p.name}` | {_hint_text(cls, p.name)} | {default} "
                f"| {_cell(meanings.get(p.name, ''))} |"
            )
        out.append("")
    return "\n".join(out)


def _yaml_value(value: Any) -> str:
    return msgspec.json.encode(value).decode()


# -- the CLI -------------------------------------------------------------------


def _commands(
    group: click.Group, ctx: click.Context
) -> Iterator[tuple[click.Command, click.Context]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        sub = click.Context(command, info_name=name, parent=ctx, terminal_width=88)
        yield command, sub
        if isinstance(command, click.Group):
            yield from _commands(command, sub)


def cli_help() -> str:
    from pktflow.cli import main

    root = click.Context(
        main, info_name="pktflow", terminal_width=88, max_content_width=88, **main.context_settings
    )
    out = ["### `pktflow`", "", "```text", main.get_help(root), "```", ""]
    for command, ctx in _commands(main, root):
        out += [f"### `{ctx.command_path}`", "", "```text", command.get_help(ctx), "```", ""]
    return "\n".join(out)


def constants() -> str:
    """The rows of a table of pktflow's public constants and their values."""
    import pktflow

    names = [n for n in pktflow.__all__ if n.isupper()]
    rows = []
    for name in names:
        value = getattr(pktflow, name)
        if isinstance(value, int) and "_F_" in name:  # a flag: its bit
            text = f"`{value:#x}`"
        elif isinstance(value, int | str):
            text = f"`{value!r}`"
        else:
            text = "a numpy dtype (see `Mbuf`)"
        rows.append(f"| `pktflow.{name}` | {text} |")
    return "\n".join(rows)


def api_rest(markdown: str) -> str:
    """``::: pktflow.NAME`` for each public name the page does not show yet (no drift)."""
    import pktflow

    shown = set(re.findall(r"^::: pktflow\.(\w+)$", markdown, re.M))
    rest = [n for n in pktflow.__all__ if not n.isupper() and n not in shown]
    if not rest:
        return ""
    entries = "\n\n".join(f"::: pktflow.{name}" for name in rest)
    return f"## Other names\n\nPublic names not in a section above.\n\n{entries}\n"


def validate_quickstart() -> str:
    """What ``pktflow validate`` prints for the example pipeline."""
    from click.testing import CliRunner

    from pktflow.cli import main

    path = "pipelines/examples/quickstart.yaml"
    root = Path(__file__).parents[2]
    result = CliRunner(env={"COLUMNS": "80"}).invoke(main, ["validate", str(root / path)])
    if result.exit_code != 0:
        raise RuntimeError(f"pktflow validate {path} failed: {result.output}")
    lines = [line.rstrip() for line in result.output.splitlines()]
    return "\n".join(["```text", f"$ pktflow validate {path}", *lines, "```"])


def quickstart_yaml() -> str:
    """The example pipeline as the repository has it."""
    path = Path(__file__).parents[2] / "pipelines" / "examples" / "quickstart.yaml"
    return f"```yaml\n{path.read_text().rstrip()}\n```"


GENERATORS: dict[str, Callable[[], str]] = {
    "constants": constants,
    "quickstart-yaml": quickstart_yaml,
    "validate-quickstart": validate_quickstart,
    "yaml-reference": yaml_reference,
    "builtin-stages": builtin_stages,
    "cli": cli_help,
}


def on_startup(**_: Any) -> None:
    """Keep the ``pktflow`` console script from shadowing the package.

    ``mkdocs`` runs as a script, so its folder (the environment's bin/, which
    holds the ``pktflow`` script) is first on ``sys.path``; the API pages'
    static loader (griffe) searches ``sys.path`` and would take that file for
    the module.
    """
    sys.path[:] = [p for p in sys.path if not os.path.isfile(os.path.join(p or ".", "pktflow"))]


def on_page_content(html: str, **_: Any) -> str:
    """The docstrings' reST-style ``Usage::`` (a literal block follows) reads as ``Usage:``."""
    return html.replace("Usage::", "Usage:")


def on_page_markdown(markdown: str, **_: Any) -> str:
    def generate(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "api-rest":
            return api_rest(markdown)
        if name not in GENERATORS:
            raise KeyError(f"no generator {name!r}; known: {', '.join(GENERATORS)}")
        return GENERATORS[name]()

    return _MARKER.sub(generate, markdown)
