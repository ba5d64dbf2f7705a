"""Dotted keys ("mi.weight") over nested config trees: flatten, list and suggest keys, parse and
apply `--set key=value` overrides, merge trees, and check values against size bounds.

Nothing here knows the trial config: the model or the valid keys come in as arguments, so that
`study.spec.trial` (which binds them to TrialConfig) imports this module and never the other way
round; the package `study.spec` re-exports the public names.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import yaml
from pydantic import BaseModel

from study.spec._errors import ConfigError, short_repr
from study.spec._yaml import MAX_SET_CHARS, load_yaml_text, non_finite_key, yaml_problem


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> {"a.b.c": leaf}. Lists stay leaves."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def section(ann: Any) -> Any:
    """What a field annotation holds: a model class, ("dict", value type) for a dict of
    models (the spec's `search`), or None for a leaf (Optional/union members included)."""
    if getattr(ann, "__origin__", None) is dict:
        return ("dict", ann.__args__[1])
    for a in [ann, *getattr(ann, "__args__", ())]:
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def valid_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key of a model; section names too (they are valid keys of their parent)."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        sub = section(field.annotation)
        if isinstance(sub, type):
            keys.extend(valid_keys(sub, f"{prefix}{name}."))
    return keys


def closest_key(key: str, candidates: Iterable[str]) -> str | None:
    """The valid key a typo most likely meant ('network.hiden' -> 'network.hidden'), or None."""
    candidates = list(candidates)
    leaf = key.rsplit(".", 1)[-1]
    prefixed = [c for c in candidates if c.rsplit(".", 1)[-1].startswith(leaf) and len(leaf) >= 3]
    if len(prefixed) == 1:
        return prefixed[0]
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if match:
        return match[0]
    # fall back to the leaf name alone (e.g. 'hiden' -> 'network.hidden')
    leaf = key.rsplit(".", 1)[-1]
    leaves = {c.rsplit(".", 1)[-1]: c for c in candidates}
    match = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.7)
    return leaves[match[0]] if match else None


def parse_assignment(text: str) -> tuple[str, Any]:
    """'mi.weight=0.3' -> ('mi.weight', 0.3); the value is parsed as YAML (numbers, lists,
    null)."""
    if "=" not in text:
        raise ConfigError(
            f"override must look like key=value, but got {short_repr(text)}",
            source="--set",
            key=text[:60] or "(empty)",
        )
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(
            f"override {short_repr(text)} has no key before '='", source="--set", key="(empty)"
        )
    if len(raw) > MAX_SET_CHARS:
        raise ConfigError(
            f"value of '{key}' is {len(raw)} characters long; at most {MAX_SET_CHARS}",
            source="--set",
            key=key,
        )
    try:
        value = load_yaml_text(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(
            f"value of '{key}' is not valid YAML ({yaml_problem(e)}): {short_repr(raw)}",
            source="--set",
            key=key,
        ) from None
    if non_finite_key(value):
        raise ConfigError(
            f"key '{key}': expected a finite number, but got {short_repr(raw)}",
            source="--set",
            key=key,
        )
    return key, value


def apply_overrides(
    tree: Mapping[str, Any],
    overrides: Mapping[str, Any],
    *,
    valid: Collection[str],
    source: str = "--set",
) -> dict[str, Any]:
    """Set dotted keys in a nested dict (copy); a key not in `valid` raises with the closest
    valid one."""
    out = json.loads(json.dumps(tree))  # deep copy of plain data
    for dotted, value in overrides.items():
        if dotted not in valid:
            guess = closest_key(dotted, valid)
            hint = f" (did you mean '{guess}'?)" if guess else ""
            raise ConfigError(f"unknown key '{dotted}'{hint}", source=source, key=dotted)
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `over` merged in, section by section (a copy; `over` wins at the leaves)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            deep_merge(out[k], v)
            if isinstance(v, Mapping) and isinstance(out.get(k), Mapping)
            else v
        )
    return out


def lists_to_tuples(node: Any) -> Any:
    """Every list in a nested tree as a tuple: strict mode accepts tuples, not lists, for tuple
    fields (YAML gives lists)."""
    if isinstance(node, Mapping):
        return {k: lists_to_tuples(v) for k, v in node.items()}
    if isinstance(node, list):
        return tuple(node)
    return node


def tuples_to_lists(node: Any) -> Any:
    """Every tuple in a nested tree as a list (back to plain YAML/JSON data)."""
    if isinstance(node, Mapping):
        return {k: tuples_to_lists(v) for k, v in node.items()}
    if isinstance(node, tuple):
        return [tuples_to_lists(v) for v in node]
    return node


SEED_MAX = 2**32 - 1  # NumPy / Optuna seeds (the largest `seed + seeds - 1`)


def _num(x: float) -> str:
    """A bound as written in a message: 4096, not 4096.0."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def check_limits(
    flat: Mapping[str, Any],
    limits: Mapping[str, tuple[float, float]],
    *,
    source: str | None,
    prefix: str = "",
) -> None:
    """ConfigError for the first value of `flat` (dotted keys) outside its bounds in `limits`.
    Also a seed range that `seed + seeds - 1` would push past SEED_MAX."""
    for key, (low, high) in limits.items():
        value = flat.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not low <= value <= high:
            raise ConfigError(
                f"key '{prefix}{key}': expected a value in [{_num(low)}, "
                f"{_num(high)}], but got {short_repr(value)}",
                source=source,
                key=prefix + key,
            )
    seed, seeds = flat.get("seed"), flat.get("seeds")
    if isinstance(seed, int) and isinstance(seeds, int) and seed + seeds - 1 > SEED_MAX:
        raise ConfigError(
            f"key '{prefix}seed': seed + seeds - 1 must be at most {SEED_MAX}, but "
            f"got seed={seed}, seeds={seeds}",
            source=source,
            key=prefix + "seed",
        )
