"""fast_init: the per-recipient values keep the generated ``__init__``'s signature and
behaviour (defaults, factories, keyword-only fields, __post_init__, immutability, replace)."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from bulkmail._frozen import fast_init
from bulkmail.books.base import PendingRow, RowOutcome
from bulkmail.delivery.sender import Delivery, Status
from bulkmail.input.recipients import Recipient
from bulkmail.mail.message import Message
from bulkmail.providers._http_types import Response
from bulkmail.providers.base import Outcome, Verdict


def _twins() -> tuple[type[Any], type[Any]]:
    def make() -> type[Any]:
        @dataclasses.dataclass(frozen=True, slots=True)
        class Value:
            a: int
            b: str = "b"
            c: list[int] = dataclasses.field(default_factory=lambda: [1])
            d: int = dataclasses.field(default=4, kw_only=True)
            e: tuple[int, ...] = dataclasses.field(kw_only=True, default=())

            def __post_init__(self) -> None:
                if self.a < 0:
                    raise ValueError("a must not be negative")

        return Value

    return make(), fast_init(make())


def _expected(cls: type[Any]) -> list[tuple[str, Any, Any]]:
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = "<factory>"
        else:
            default = inspect.Parameter.empty
        kind = inspect.Parameter.KEYWORD_ONLY if f.kw_only else "positional"
        out.append((f.name, kind, default))
    return out


def _actual(cls: type[Any]) -> list[tuple[str, Any, Any]]:
    out = []
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        kind = "positional" if p.kind is p.POSITIONAL_OR_KEYWORD else p.kind
        default = (
            p.default if p.default is p.empty or repr(p.default) != "<factory>" else "<factory>"
        )
        out.append((p.name, kind, default))
    return out


def test_the_twin_behaves_like_the_generated_init() -> None:
    plain, fast = _twins()
    assert _actual(fast) == _actual(plain) == _expected(plain)
    cases: list[Callable[[type[Any]], Any]] = [
        lambda c: c(1),
        lambda c: c(1, "x", [2], d=5, e=(1,)),
        lambda c: c(a=2, e=(3,)),
        lambda c: c(1, c=[]),
    ]
    for case in cases:
        p, f = case(plain), case(fast)
        assert repr(p).replace("_twins.<locals>.make.<locals>.", "") == repr(f).replace(
            "_twins.<locals>.make.<locals>.", ""
        )
        assert dataclasses.astuple(p) == dataclasses.astuple(f)
    assert fast(1).c is not fast(1).c  # a new list from the factory each time
    for bad in (lambda c: c(), lambda c: c(1, "x", [2], 5), lambda c: c(1, z=2)):
        with pytest.raises(TypeError):
            bad(plain)
        with pytest.raises(TypeError):
            bad(fast)
    with pytest.raises(ValueError, match="negative"):
        fast(-1)
    value = fast(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.a = 2
    assert dataclasses.replace(value, b="y") == fast(1, "y")
    assert hash(fast(1, c=(), e=(2,))) == hash(fast(1, c=(), e=(2,)))  # type: ignore[arg-type]


def test_refuses_what_it_cannot_reproduce() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithInitVar:
        a: int
        b: dataclasses.InitVar[int] = 0

    @dataclasses.dataclass(frozen=True, slots=True)
    class NotInit:
        a: int
        b: int = dataclasses.field(default=0, init=False)

    for cls in (NoSlots, WithInitVar, NotInit):
        with pytest.raises(TypeError):
            fast_init(cls)


@pytest.mark.parametrize(
    ("cls", "make"),
    [
        (Message, lambda: Message(to="a@example.com", sender="b@example.com", text="t", key=3)),
        (Recipient, lambda: Recipient(2, "a@example.com", "a@example.com", {"x": "1"})),
        (PendingRow, lambda: PendingRow(1, 2, "a@example.com", {}, False, 0)),
        (RowOutcome, lambda: RowOutcome(1, "sent", message_id="m", attempts=1)),
        (Delivery, lambda: Delivery(Status.SENT, message_id="m", attempts=1)),
        (Outcome, lambda: Outcome(Verdict.SENT, message_id="m", service_time=0.1)),
        (Response, lambda: Response(200, {}, b"{}", 0.1)),  # type: ignore[arg-type]
    ],
)
def test_per_recipient_values(cls: type[Any], make: Callable[[], Any]) -> None:
    assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"
    assert _actual(cls) == _expected(cls)
    value = make()
    assert value == make() and value is not make()
    first = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, first, None)
    if cls is not Message:  # its tags are a mappingproxy, which never pickled
        assert pickle.loads(pickle.dumps(value)) == value
    assert dataclasses.replace(value) == value


def test_message_defaults() -> None:
    m = Message(to="a@example.com", sender="b@example.com")
    assert (m.subject, m.text, m.html, m.reply_to, m.headers, m.key) == (
        "",
        None,
        None,
        (),
        (),
        None,
    )
    assert dict(m.tags) == {} and m.tags is Message(to="x", sender="y").tags  # one shared empty
    with pytest.raises(TypeError):
        Message("a@example.com", "b@example.com")  # type: ignore[misc]
