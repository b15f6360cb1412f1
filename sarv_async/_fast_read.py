"""Precomputed readers for well-formed answers: the converter's fast path.

A reader is generated once per attrs model from its fields. It accepts only the
well-formed shape: a ``dict`` holding every required field, strings as ``str``,
integers as ``int`` (never ``bool``), enums as one of their exact values, optional
fields absent or well-formed, a password under either of its names. On anything
else (a numeric string, ``"enable"``, ``1``, a null, a missing key, a non-dict) it
raises, and the caller reads the same value through the tolerant cattrs path, which
knows every spelling and names the bad field. So a reader never decides an answer
the tolerant path would read differently; it only decides it sooner.

For a slotted model with no validators, converters or init hooks the reader fills
the slots directly, as the model's own ``__init__`` would, without its per-field
``object.__setattr__`` calls.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Literal, TypeVar, overload

import attrs

__all__ = ["NotWellFormed", "make_reader"]

T = TypeVar("T")


class NotWellFormed(Exception):
    """The value is not of the well-formed shape: read it the tolerant way."""


Spellings = Mapping[type[enum.Enum], Mapping[Hashable, enum.Enum]]


@overload
def make_reader(
    cls: type[T],
    *,
    aliases: Mapping[str, str],
    spellings: Spellings | None = ...,
    or_none: Literal[False] = ...,
) -> Callable[[Any], T] | None: ...


@overload
def make_reader(
    cls: type[T],
    *,
    aliases: Mapping[str, str],
    spellings: Spellings | None = ...,
    or_none: Literal[True],
) -> Callable[[Any], T | None] | None: ...


def make_reader(
    cls: type[T],
    *,
    aliases: Mapping[str, str],
    spellings: Spellings | None = None,
    or_none: bool = False,
) -> Callable[[Any], T | None] | None:
    """A reader of one ``cls`` from a dict, or ``None`` if ``cls`` has fields it cannot read.

    ``aliases`` maps a field to a second key, read when the first is absent.
    ``spellings`` gives, per enum, the exact JSON strings and integers read as each
    member (default: its string values). The reader raises (`NotWellFormed`,
    `KeyError`, `TypeError`...) on any surprise; with ``or_none`` it returns ``None``
    instead where a value is of another type, which is cheaper than raising when many
    values are (a server that sends every number as a string).
    """
    model: Any = cls
    fields = attrs.fields(attrs.resolve_types(model))
    namespace: dict[str, Any] = {"_cls": model, "_NotWellFormed": NotWellFormed}
    reads: list[str] = []
    checks: list[str] = []
    for i, field in enumerate(fields):
        value, key = f"v{i}", field.name
        if not field.init:
            return None
        if field.default is attrs.NOTHING:
            read = f"d[{key!r}]"
            if key in aliases:
                read = f"d[{key!r}] if {key!r} in d else d[{aliases[key]!r}]"
        elif isinstance(field.default, (str, int)) and key not in aliases:
            namespace[f"_default{i}"] = field.default
            read = f"d.get({key!r}, _default{i})"
        else:  # a factory default, or a default with an alias: the tolerant path knows
            return None
        if field.type is str or field.type is int:
            checks.append(f"type({value}) is not {field.type.__name__}")
        elif isinstance(field.type, type) and issubclass(field.type, enum.Enum):
            # Exact spellings only: any other is the tolerant path's business.
            members = dict((spellings or {}).get(field.type) or _values(field.type))
            namespace[f"_members{i}"] = members
            if all(type(spelling) is str for spelling in members):
                read = f"_members{i}[{read}]"
            else:  # 1 is a key, and True and 1.0 would find it: check the raw type too
                reads.append(f"s{i} = {read}")
                read = f"_members{i}[s{i}]"
                checks.append(f"(type(s{i}) is not str and type(s{i}) is not int)")
        else:
            return None
        reads.append(f"{value} = {read}")

    body = [*reads]
    if checks:
        body.append(f"if {' or '.join(checks)}:")
        body.append("    return None" if or_none else "    raise _NotWellFormed")
    body.extend(_build_lines(model, fields, namespace))
    source = "\n".join(["def read(d):", *(f"    {line}" for line in body), "    return o"])
    code = compile(source, f"<sarv_async fast reader of {cls.__name__}>", "exec")
    exec(code, namespace)  # noqa: S102 - our own source, built from the model's fields
    reader: Callable[[Any], T | None] = namespace["read"]
    return reader


def _values(cls: type[enum.Enum]) -> dict[Hashable, enum.Enum]:
    return {member.value: member for member in cls if isinstance(member.value, str)}


def _build_lines(
    cls: type[Any], fields: tuple[attrs.Attribute[Any], ...], namespace: dict[str, Any]
) -> list[str]:
    """Lines that build ``o`` from ``v0...``: by filling slots, else by calling ``cls``."""
    names = [field.name for field in fields]
    slots = cls.__dict__.get("__slots__")
    direct = (
        slots is not None
        and cls.__mro__ == (cls, object)
        and set(slots) - {"__weakref__"} == set(names)
        and all(field.validator is None and field.converter is None for field in fields)
        and not hasattr(cls, "__attrs_pre_init__")
        and not hasattr(cls, "__attrs_post_init__")
    )
    if direct:
        namespace["_new"] = object.__new__
        lines = ["o = _new(_cls)"]
        for i, name in enumerate(names):
            namespace[f"_set{i}"] = cls.__dict__[name].__set__
            lines.append(f"_set{i}(o, v{i})")
        return lines
    arguments = ", ".join(f"{field.alias}=v{i}" for i, field in enumerate(fields))
    return [f"o = _cls({arguments})"]
