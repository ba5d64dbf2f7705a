"""The bounded YAML reader of configs and specs.

`read_yaml` refuses what could fool validation (a duplicate key whose last copy silently wins)
or exhaust memory (a huge file, deep nesting, an alias bomb), reads `1e-3` as a float and
rejects inf/nan, each with one line naming the file and where. The package `study.spec`
re-exports `read_yaml`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from study.spec._errors import ConfigError, short_repr

# Bounds on what a YAML document may cost to read (a spec is a few KB; these are generous).
MAX_YAML_BYTES = 1_000_000  # file size
MAX_SET_CHARS = 10_000  # one --set value
MAX_YAML_DEPTH = 40  # nesting of mappings/sequences
MAX_YAML_NODES = 200_000  # nodes after alias expansion (an alias counts what it points at)


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads 1e-3 as a float (YAML 1.1 wants 1.0e-3 and gives a string),
    refuses duplicate keys, nesting deeper than MAX_YAML_DEPTH and documents that expand (through
    aliases) to more than MAX_YAML_NODES nodes, so validation can neither be fooled (the last
    duplicate silently winning) nor made to exhaust memory or the recursion limit."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[int, int] = {}  # id(node) -> expanded size, for completed nodes

    def _expanded(self, node: yaml.Node) -> int:
        size = self._sizes.get(id(node))
        if size is None:
            if isinstance(node, yaml.ScalarNode):
                return 1
            raise yaml.composer.ComposerError(
                None,
                None,
                "found a recursive alias (an anchor used inside itself)",
                node.start_mark,
            )
        return size

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            self._count(self._expanded(node), node)
            return node
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"nesting deeper than {MAX_YAML_DEPTH} levels",
                self.peek_event().start_mark,
            )
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._expanded(c) for c in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._expanded(k) + self._expanded(v) for k, v in node.value)
        else:
            size = 1
        self._sizes[id(node)] = size
        self._count(1, node)
        return node

    def _count(self, n: int, node: yaml.Node) -> None:
        self._nodes += n
        if self._nodes > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"the document expands (aliases included) to more than {MAX_YAML_NODES} values",
                node.start_mark,
            )

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults` merges on purpose
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # an unhashable key: PyYAML reports it itself
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {short_repr(key)} (first given on line {first.line + 1})",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_problem(e: yaml.YAMLError) -> str:
    """A PyYAML error as one line: what, and where (line, column)."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def load_yaml_text(text: str) -> Any:
    """yaml.safe_load, except that scientific notation without a dot is a float, and with the
    bounds of `_Loader` (duplicate keys, depth, alias expansion)."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def non_finite_key(node: Any, prefix: str = "") -> tuple[str, float] | None:
    """(dotted key, value) of the first inf/nan float in a loaded document, or None."""
    if isinstance(node, float) and not math.isfinite(node):
        return prefix or "(value)", node
    if isinstance(node, Mapping):
        for k, v in node.items():
            hit = (
                non_finite_key(v, f"{prefix}{k}.")
                if isinstance(v, Mapping)
                else non_finite_key(v, f"{prefix}{k}")
            )
            if hit:
                return hit
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            hit = non_finite_key(v, f"{prefix.rstrip('.')}[{i}]")
            if hit:
                return hit
    return None


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file: at most MAX_YAML_BYTES, UTF-8, no duplicate keys, no inf/nan.

    Raises:
        ConfigError: one line naming the file and what is wrong where.
    """
    return read_yaml_text(path)[0]


def read_yaml_text(path: str | Path) -> tuple[Any, str]:
    """The loaded document (an empty file gives {}) and the file's text, checked as `read_yaml`
    describes; a study keeps the text to log the spec exactly as written."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "no such file"
        raise ConfigError(f"{what}: {path}", source=str(path))
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise ConfigError(
            f"the file is {size} bytes; a spec or config may have at most {MAX_YAML_BYTES}",
            source=str(path),
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"not UTF-8 text: byte 0x{raw[e.start]:02x} at offset {e.start} (line {line})",
            source=str(path),
        ) from None
    try:
        tree = load_yaml_text(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {yaml_problem(e)}", source=str(path)) from None
    bad = non_finite_key(tree)
    if bad:
        raise ConfigError(
            f"key '{bad[0]}': expected a finite number, but got {bad[1]}",
            source=str(path),
            key=bad[0],
        )
    return (tree if tree is not None else {}), text
