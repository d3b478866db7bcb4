"""The one YAML loader of Crescent's inputs: bounded, strict, and clear about what it refused.

Every YAML file a user hands the product (exam files, gantry configs, fault
files, rig files) is read through :func:`load_yaml_file` (or, for text
already in memory, :func:`load_yaml_text`). Compared to ``yaml.safe_load``
it refuses, each with a :class:`YamlInputError` that names the file:

* a file larger than ``max_bytes`` (default :data:`MAX_YAML_BYTES`), checked
  from the file size before anything is read, and again while reading (a
  file that grows, a device such as ``/dev/zero``): ``file too large:
  N bytes, limit M bytes``;
* binary data (a NUL byte) and text that is not UTF-8, naming the offset;
* anchors and aliases (``&a`` / ``*a``, and ``<<`` merges that use them):
  they are what makes a "billion laughs" document expand to gigabytes, and
  no Crescent input needs them;
* more than :data:`MAX_YAML_NODES` nodes or nesting deeper than
  :data:`MAX_YAML_DEPTH` (a flood of keys, ``[[[[...]]]]``);
* a mapping that gives the same key twice (PyYAML keeps the last one
  silently, which is no way to treat a safety-relevant file).

The checks run over the parser's event stream before any node is built
(libyaml's parser when available), so memory and time stay bounded by the
size cap whatever the document holds. Values quoted in messages go through
:func:`short_repr` (at most :data:`QUOTE_CHARS` characters and an ellipsis).

Example
-------
>>> load_yaml_text("kvp: 29\\nmas: 80\\n", "exam.yaml")
{'kvp': 29, 'mas': 80}
>>> try:
...     load_yaml_text("a: &x [1]\\nb: *x\\n", "exam.yaml")
... except YamlInputError as err:
...     print(err)
exam.yaml: YAML anchors and aliases are not accepted (anchor '&x' at line 1, column 4)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

#: Largest YAML input accepted (bytes). An exam file is about 1 kB, a gantry config a few kB.
MAX_YAML_BYTES = 1 << 20
#: Most YAML nodes (scalars, sequences, mappings) in one document.
MAX_YAML_NODES = 20_000
#: Deepest nesting of sequences and mappings.
MAX_YAML_DEPTH = 32
#: Longest quotation of a value in an error message (characters, ellipsis included).
QUOTE_CHARS = 80

_CLoader = getattr(yaml, "CSafeLoader", None)
_BaseLoader: type = _CLoader if _CLoader is not None else yaml.SafeLoader


class YamlInputError(ValueError):
    """A YAML input that was refused; ``source`` names the file, ``reason`` says why."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


def short_repr(value: Any, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters with an ellipsis ("...") at the end.

    Long strings and containers are cut before ``repr`` builds the whole text.
    """
    if isinstance(value, (str, bytes)) and len(value) > limit:
        value = value[: limit + 1]
    elif isinstance(value, (list, tuple)) and len(value) > limit:
        value = type(value)(value[:limit])
    elif isinstance(value, dict) and len(value) > limit:
        value = dict(list(value.items())[:limit])
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_validation_error(error: Any, limit: int = 20) -> str:
    """A pydantic ``ValidationError`` as "field = value: rule" items joined by "; ", values cut by :func:`short_repr`.

    At most ``limit`` items are listed, then "... and N more"; no pydantic URL or type dump.
    """
    items = []
    errors = error.errors(include_url=False)
    for err in errors[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "<document>"
        loc = loc if len(loc) <= QUOTE_CHARS else loc[: QUOTE_CHARS - 3] + "..."
        msg = err["msg"] if len(err["msg"]) <= 4 * QUOTE_CHARS else err["msg"][: 4 * QUOTE_CHARS - 3] + "..."
        if err["type"] == "missing":
            items.append(f"{loc}: required field is missing")
        elif err["type"] == "extra_forbidden":
            items.append(f"{loc}: unknown field")
        elif err["loc"]:
            items.append(f"{loc} = {short_repr(err.get('input'))}: {msg}")
        else:
            items.append(f"{loc}: {msg}")
    if len(errors) > limit:
        items.append(f"... and {len(errors) - limit} more")
    return "; ".join(items)


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown position"


def _check_events(text: str, source: str, max_nodes: int, max_depth: int) -> None:
    """Walk the parser's events: no anchors or aliases, node count and depth within bounds."""
    nodes = depth = 0
    try:
        for ev in yaml.parse(text, Loader=_BaseLoader):
            if isinstance(ev, yaml.AliasEvent):
                raise YamlInputError(
                    source, f"YAML anchors and aliases are not accepted (alias '*{short_repr(ev.anchor)[1:-1]}' "
                    f"at {_where(ev.start_mark)})")
            if isinstance(ev, yaml.NodeEvent):
                if ev.anchor is not None:
                    raise YamlInputError(
                        source, f"YAML anchors and aliases are not accepted (anchor '&{short_repr(ev.anchor)[1:-1]}' "
                        f"at {_where(ev.start_mark)})")
                nodes += 1
                if nodes > max_nodes:
                    raise YamlInputError(
                        source, f"too many YAML nodes: more than {max_nodes} (at {_where(ev.start_mark)})")
            if isinstance(ev, yaml.CollectionStartEvent):
                depth += 1
                if depth > max_depth:
                    raise YamlInputError(
                        source, f"YAML nested too deep: more than {max_depth} levels (at {_where(ev.start_mark)})")
            elif isinstance(ev, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as err:
        raise YamlInputError(source, f"invalid YAML: {_yaml_error_text(err)}") from None


def _yaml_error_text(err: yaml.YAMLError) -> str:
    """PyYAML's message with the "<unicode string>" name dropped and any quoted snippet kept short."""
    text = str(err).replace('"<unicode string>", ', "").replace('"<file>", ', "")
    lines = [ln if len(ln) <= 2 * QUOTE_CHARS else ln[: 2 * QUOTE_CHARS - 3] + "..." for ln in text.splitlines()]
    return "; ".join(ln.strip() for ln in lines if ln.strip()).replace("; in line", " in line")


class _UniqueKeyLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loader that refuses duplicate mapping keys."""


def _construct_mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            raise yaml.constructor.ConstructorError(
                None, None, f"YAML merge keys ('<<') are not accepted ({_where(key_node.start_mark)})", None)
        key = loader.construct_object(key_node, deep=deep)
        try:
            fresh = key not in seen
        except TypeError:  # an unhashable key (a list as key): construct_mapping names it below
            continue
        if not fresh:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {short_repr(key)} ({_where(key_node.start_mark)})", None
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_text(
    text: str,
    source: str = "<string>",
    *,
    max_bytes: int = MAX_YAML_BYTES,
    max_nodes: int = MAX_YAML_NODES,
    max_depth: int = MAX_YAML_DEPTH,
) -> Any:
    """Parse one YAML document under the limits above; raises :class:`YamlInputError` naming ``source``."""
    if len(text) > max_bytes:  # characters: a lower bound of the UTF-8 size, checked without encoding
        raise YamlInputError(source, f"file too large: {len(text)} characters, limit {max_bytes} bytes")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise YamlInputError(source, f"file too large: {size} bytes, limit {max_bytes} bytes")
    if "\x00" in text:
        raise YamlInputError(source, f"binary data, not YAML text (NUL character at offset {text.index(chr(0))})")
    _check_events(text, source, max_nodes, max_depth)
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise YamlInputError(source, f"invalid YAML: {_yaml_error_text(err)}") from None
    except RecursionError:  # not reachable under max_depth; kept so no traceback can escape
        raise YamlInputError(source, "YAML nested too deep") from None


def read_text_capped(path: str | Path, max_bytes: int = MAX_YAML_BYTES, what: str = "file") -> str:
    """UTF-8 text of ``path``, refusing a file over ``max_bytes`` before reading it, binary and non-UTF-8 data.

    Raises :class:`YamlInputError` (``source`` = the path); a missing file is
    ``"<what> not found"``, other OS errors ``"cannot read <what>: ..."``.
    """
    p = Path(path)
    src = str(p)
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise YamlInputError(src, f"file too large: {size} bytes, limit {max_bytes} bytes")
            data = f.read(max_bytes + 1)  # a pipe or device reports no size: read one byte past the limit
    except FileNotFoundError:
        raise YamlInputError(src, f"{what} not found") from None
    except IsADirectoryError:
        raise YamlInputError(src, f"is a directory, not a {what}") from None
    except OSError as err:
        raise YamlInputError(src, f"cannot read {what}: {err.strerror or err}") from None
    if len(data) > max_bytes:
        raise YamlInputError(src, f"file too large: more than {max_bytes} bytes, limit {max_bytes} bytes")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise YamlInputError(src, f"binary data, not YAML text (NUL byte at offset {nul})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise YamlInputError(
            src, f"not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start} (line {line})"
        ) from None


def load_yaml_file(
    path: str | Path,
    *,
    max_bytes: int = MAX_YAML_BYTES,
    max_nodes: int = MAX_YAML_NODES,
    max_depth: int = MAX_YAML_DEPTH,
    what: str = "file",
) -> Any:
    """Read and parse one YAML file under the limits above; errors name the file."""
    text = read_text_capped(path, max_bytes, what)
    return load_yaml_text(text, str(path), max_bytes=max_bytes, max_nodes=max_nodes, max_depth=max_depth)
