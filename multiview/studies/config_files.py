"""Trainer config files for study steps: a base configargparse file plus `key=value` overrides.

A study step trains with `--config <derived file>`, where the derived file is the base config's items
(comments dropped) with the overrides applied, headed by a comment naming both. Writing the file into
the study folder records exactly what each child trained with; the trainer itself checks the keys
(an unknown key fails naming the derived file and the nearest valid key).

Override syntax (`parse_overrides`): `key=value` with the value in config-file syntax — `true`/`false`
for flags, `[a, b]` for lists; a value holding whitespace is a list too (`lr_decay_steps=100 200`), which
is the form to use inside a config file's `[...]` list, where commas separate the overrides themselves.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import configargparse


def read_config_items(path: str | Path) -> OrderedDict:
    """The `key = value` items of a configargparse file (lists as lists of strings; later keys win)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    with open(path) as stream:
        return configargparse.DefaultConfigFileParser().parse(stream)


def parse_override(text: str) -> tuple[str, str | list[str]]:
    """`key=value` -> (key, value); see the module docstring for lists."""
    key, sep, value = text.partition("=")
    key, value = key.strip().lstrip("-"), value.strip()
    if not sep or not key or any(c.isspace() for c in key):
        raise ValueError(f"override {text!r}: expected key=value (e.g. num_iterations=2)")
    if value.startswith("[") and value.endswith("]"):
        return key, [v.strip() for v in value[1:-1].split(",") if v.strip()]
    if len(value.split()) > 1:
        return key, value.split()
    return key, value


def parse_overrides(overrides: list[str] | None, reserved: tuple[str, ...] = ()) -> OrderedDict:
    """Parse several overrides; a key in `reserved` (set by the study itself) is an error."""
    items: OrderedDict = OrderedDict()
    for text in overrides or []:
        key, value = parse_override(text)
        if key in reserved:
            raise ValueError(f"override {text!r}: {key} is set by the study for each step; "
                             f"do not override it (reserved: {', '.join(reserved)})")
        items[key] = value
    return items


def format_config(items: OrderedDict, header: list[str] | None = None) -> str:
    """configargparse text for `items`, with `# ` comment lines first."""
    lines = [f"# {line}" if line else "#" for line in header or []]
    for key, value in items.items():
        if isinstance(value, list):
            value = "[" + ", ".join(str(v) for v in value) + "]"
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def derived_config_text(base_config: str | Path, overrides: OrderedDict, header: list[str] | None = None) -> str:
    """The base config's items with `overrides` applied (see the module docstring)."""
    items = read_config_items(base_config)
    items.update(overrides)
    header = list(header or []) + [f"base config: {base_config}"]
    if overrides:
        header.append("overrides: " + " ".join(f"{k}={v}" for k, v in overrides.items()))
    return format_config(items, header)


def write_config_once(path: str | Path, text: str) -> Path:
    """Write `text` to `path`; an existing file must hold the same text (a resumed study may not change it).

    Raises ValueError when the file exists with other contents: the step was started with another config,
    so resuming it would mix two settings; delete its run (and this file) or use a new study name.
    """
    path = Path(path)
    if path.is_file():
        if path.read_text() != text:
            raise ValueError(f"{path}: this step was started with a different config (base config or overrides "
                             "changed since). Resuming would mix two settings: restore the old settings, or delete "
                             "this file and the step's run folder to start the step again, or use a new name.")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)
    return path


def config_value(items: OrderedDict, key: str, default=None):
    """One value of parsed config items ('None'/'' read as missing)."""
    value = items.get(key, default)
    return default if value in (None, "", "None") else value
