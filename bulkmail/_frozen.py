"""A faster ``__init__`` for the frozen, slotted dataclasses made once per recipient.

A frozen dataclass's generated ``__init__`` sets each field with
``__dataclass_builtins_object__.__setattr__(self, "name", value)``: a global lookup, an
attribute lookup and a call per field, because its own ``__setattr__`` refuses. On a slotted
class each field is a member descriptor whose ``__set__`` stores the value directly, so
:func:`fast_init` puts in an ``__init__`` with the same signature that calls those (bound
once, held in closure cells). Measured on Python 3.11 (``python -m timeit``, best of 15):
the seven values made per recipient (Recipient, PendingRow, Message, Response, Outcome,
Delivery, RowOutcome) 11.1 -> 7.25 µs together; a send run spent 5.5 % of its samples in
generated ``__init__`` bodies (py-spy).

Everything else stays the dataclass's: immutability (``__setattr__`` still refuses),
equality, hashing, ``repr``, :func:`dataclasses.replace` (which calls this ``__init__``),
pickling. Supported: positional and keyword-only fields, defaults, ``default_factory``,
``__post_init__``; a class with ``init=False`` fields or ``InitVar`` s is refused.

>>> from dataclasses import dataclass
>>> @fast_init
... @dataclass(frozen=True, slots=True)
... class Point:
...     x: int
...     y: int = 0
>>> Point(1)
Point(x=1, y=0)
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["fast_init"]

T = TypeVar("T")


class _Factory:
    """The default of a field with a ``default_factory`` (shown as the dataclass shows it)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def fast_init(cls: type[T]) -> type[T]:
    """Give the frozen, slotted dataclass ``cls`` an ``__init__`` that sets its slots directly."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: fast_init is for frozen dataclasses with slots=True")
    generated = cls.__init__.__code__
    expected = generated.co_varnames[
        1 : 1 + generated.co_argcount - 1 + generated.co_kwonlyargcount
    ]
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if list(expected) != [f.name for f in fields if not f.kw_only] + [
        f.name for f in fields if f.kw_only
    ]:  # an InitVar or an init=False field: not what this reproduces
        raise TypeError(f"{cls.__name__}: only plain fields are supported (no InitVar)")
    names: dict[str, Any] = {"_FACTORY": _FACTORY}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for f in fields:
        if not f.init:
            raise TypeError(f"{cls.__name__}.{f.name}: init=False fields are not supported")
        name = f.name
        param = name
        if f.default is not dataclasses.MISSING:
            names[f"_d_{name}"] = f.default
            param = f"{name}=_d_{name}"
        elif f.default_factory is not dataclasses.MISSING:
            names[f"_f_{name}"] = f.default_factory
            param = f"{name}=_FACTORY"
            body.append(f"    if {name} is _FACTORY: {name} = _f_{name}()")
        (keyword if f.kw_only else positional).append(param)
        names[f"_s_{name}"] = cls.__dict__[name].__set__
        body.append(f"    _s_{name}(self, {name})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    signature = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    cells = ", ".join(names)
    source = (
        f"def _make({cells}):\n"
        f"  def __init__({signature}) -> None:\n"
        + "".join(f"  {line}\n" for line in body or ["    pass"])
        + "  return __init__\n"
    )
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # noqa: S102 - our own source, built from field names above
    init = namespace["_make"](**names)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
