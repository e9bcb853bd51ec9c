"""The renderer: escaping, strict variables, header safety, List-Unsubscribe, shared constants."""

from __future__ import annotations

from typing import Any

import markupsafe
import pytest

from bulkmail.errors import ConfigError
from bulkmail.input._jinja import _memo_escape
from bulkmail.input.recipients import Recipient
from bulkmail.input.render import Renderer, RenderProblem
from bulkmail.mail.message import Message
from bulkmail.mail.mime import to_mime

SENDER = "News <news@example.com>"


def row(email: str = "ana@example.com", **fields: Any) -> Recipient:
    return Recipient(line=2, email=email, key=email, fields={"email": email, **fields})


def renderer(**kwargs: Any) -> Renderer:
    options: dict[str, Any] = {
        "sender": SENDER,
        "subject": "Hi {{ first_name }}",
        "text": "Hello {{ first_name }}",
        "html": None,
    }
    options.update(kwargs)
    return Renderer(**options)


def message(result: Message | RenderProblem) -> Message:
    assert isinstance(result, Message), result
    return result


def test_html_escapes_recipient_data_but_subject_and_text_do_not() -> None:
    r = renderer(html="<p>Hello {{ first_name }}</p>")
    m = message(r.render(row(first_name="<b>Tom & Jerry</b>")))
    assert m.subject == "Hi <b>Tom & Jerry</b>"
    assert m.text == "Hello <b>Tom & Jerry</b>"
    assert m.html == "<p>Hello &lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>"


def test_html_escaping_is_the_same_for_every_row_and_value_type() -> None:
    # The HTML part remembers what it escaped (render._memo_escape): a value escaped before,
    # a Markup equal to a plain string, True next to 1, must each come out as markupsafe's.
    r = renderer(
        subject="Hi",
        text=None,
        html="{{ a }}|{{ a | safe }}|{{ b }}|{{ a }}|{{ b | e }}",
    )
    rows = [
        ("<b>", 1),
        ("<b>", True),
        ("Tom & Jerry", 1.0),
        ("<b>", None),
        ("plain", "<i>"),
    ]
    for a, b in rows * 2:
        m = message(r.render(row(a=a, b=b)))
        escaped, other = markupsafe.escape(a), markupsafe.escape(b)
        assert m.html == f"{escaped}|{a}|{other}|{escaped}|{other}"


def test_memo_escape_matches_markupsafe_past_its_size() -> None:
    escape = _memo_escape(size=2, longest=3)
    values: list[Any] = ["<a>", "b&", "<a>", "c'", '"d"', markupsafe.Markup("<a>"), 1, True, "<a>"]
    values += ["<long & longer>", "<long & longer>"]
    for value in values * 3:
        got = escape(value)
        assert got == markupsafe.escape(value)
        assert type(got) is markupsafe.Markup


def test_message_fields() -> None:
    r = renderer(html="<p>{{ email }}</p>\n", text="Hi {{ first_name }}\n")
    m = message(r.render(row("Ana@Example.com", first_name="Ana"), key=7))
    assert m.to == "Ana@Example.com"
    assert m.sender == SENDER
    assert m.key == 7
    assert m.text == "Hi Ana\n"  # the trailing newline is kept
    assert m.html == "<p>Ana@Example.com</p>\n"


def test_email_variable_is_the_recipient_address() -> None:
    r = renderer(subject="Hi", text="to {{ email }}")
    fields = {"email": " a@example.com "}  # as the CSV column had it
    m = message(r.render(Recipient(2, "a@example.com", "a@example.com", fields)))
    assert m.text == "to a@example.com"


def test_missing_variable_is_a_problem_not_a_half_filled_message() -> None:
    r = renderer(html="<p>{{ code }}</p>")
    problem = r.render(row(first_name="Ana"))
    assert problem == RenderProblem(
        "missing_field", "template 'html' uses 'code' but the row has no such column"
    )
    problem = r.render(row(code="X"))
    assert isinstance(problem, RenderProblem)
    assert problem.code == "missing_field"
    assert "'first_name'" in problem.reason


def test_empty_value_is_fine() -> None:
    m = message(renderer().render(row(first_name="")))
    assert m.subject == "Hi "


def test_non_string_values_and_globals() -> None:
    r = renderer(text="{{ n + 1 }} {% for i in range(2) %}{{ i }}{% endfor %} {{ who.name }}")
    m = message(r.render(row(first_name="x", n=41, who={"name": "Ana"})))
    assert m.text == "42 01 Ana"
    problem = r.render(row(first_name="x", n="41", who={"name": "Ana"}))
    assert isinstance(problem, RenderProblem)
    assert problem.code == "render_error"


@pytest.mark.parametrize(
    "evil", ["Ana\r\nBcc: x@example.com", "Ana\nX", "Ana\rX", "A\x00", "A\u2028B"]
)
def test_header_injection_through_a_field_in_the_subject(evil: str) -> None:
    problem = renderer().render(row(first_name=evil))
    assert problem == RenderProblem("header_injection", "rendered subject contains a line break")


def test_line_breaks_in_bodies_are_fine() -> None:
    r = renderer(subject="Hi", text="{{ first_name }}", html="<p>{{ first_name }}</p>")
    m = message(r.render(row(first_name="a\r\nb")))
    assert (m.text, m.html) == ("a\r\nb", "<p>a\r\nb</p>")


def test_header_injection_through_a_header_value_or_unsubscribe_url() -> None:
    r = renderer(subject="Hi", headers={"X-Campaign-Id": "{{ first_name }}"})
    assert message(r.render(row(first_name="Ana"))).headers == (("X-Campaign-Id", "Ana"),)
    problem = r.render(row(first_name="Ana\r\nBcc: x@example.com"))
    assert isinstance(problem, RenderProblem)
    assert problem.code == "header_injection"
    assert "X-Campaign-Id" in problem.reason

    r = renderer(unsubscribe_url="https://example.com/u/{{ token }}")
    problem = r.render(row(first_name="Ana", token="t\r\nBcc: x@example.com"))
    assert isinstance(problem, RenderProblem)
    assert problem.code == "header_injection"
    problem = r.render(row(first_name="Ana", token="t>, <https://evil.example"))
    assert isinstance(problem, RenderProblem)
    assert problem.code == "bad_unsubscribe_url"


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"sender": "a@example.com\r\nBcc: x@example.com"}, "key 'sender'"),
        ({"reply_to": ["ok@example.com", "b@example.com\nBcc: x"]}, "key 'reply_to[1]'"),
        ({"subject": "Hi\nthere"}, "key 'subject'"),
        ({"headers": {"X-A": "1\r\n2"}}, "key 'headers.X-A'"),
        ({"headers": {"Bcc": "x@example.com"}}, "key 'headers.Bcc'"),
        ({"headers": {"Bad Name": "x"}}, "not a valid header name"),
        ({"unsubscribe_url": "http://example.com/u"}, "https://"),
        ({"text": None, "html": None}, "text or an html body"),
        ({"tags": {"campaign": "a\nb"}}, "key 'tags.campaign'"),
    ],
)
def test_bad_constants_are_config_errors(options: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        renderer(**options)
    assert needle in str(info.value)


def test_syntax_error_names_the_file_and_line() -> None:
    html = "<html>\n<body>\n<p>{{ first_name </p>\n</body>\n"
    with pytest.raises(ConfigError) as info:
        renderer(html=html, sources={"html": "templates/body.html"})
    assert info.value.file == "templates/body.html"
    assert info.value.line == 3
    assert str(info.value).startswith("templates/body.html:3: template syntax error:")


def test_syntax_error_without_a_file_names_the_campaign_key() -> None:
    with pytest.raises(ConfigError) as info:
        renderer(subject="Hi {% if x %}")
    assert info.value.key == "subject"
    assert info.value.line == 1
    with pytest.raises(ConfigError, match="No filter named 'nope'"):
        renderer(text="{{ x|nope }}")


def test_list_unsubscribe_url_and_mailto() -> None:
    r = renderer(
        unsubscribe_url="https://example.com/u?e={{ email|urlencode }}",
        unsubscribe_mailto="unsub@example.com",
        headers={"X-Campaign": "spring"},
    )
    m = message(r.render(row("ana+x@example.com", first_name="Ana")))
    assert m.headers == (
        ("X-Campaign", "spring"),
        (
            "List-Unsubscribe",
            "<https://example.com/u?e=ana%2Bx%40example.com>, <mailto:unsub@example.com>",
        ),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    )
    mime = to_mime(m)
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in mime
    assert b"X-Campaign: spring" in mime


def test_list_unsubscribe_mailto_only_has_no_one_click() -> None:
    r = renderer(unsubscribe_mailto="mailto:unsub@example.com?subject=unsubscribe")
    m = message(r.render(row(first_name="Ana")))
    assert m.headers == (("List-Unsubscribe", "<mailto:unsub@example.com?subject=unsubscribe>"),)


def test_constant_unsubscribe_url() -> None:
    m = message(renderer(unsubscribe_url="https://example.com/u").render(row(first_name="A")))
    assert m.headers == (
        ("List-Unsubscribe", "<https://example.com/u>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    )


def test_constants_are_shared_between_messages() -> None:
    text = "The same for everyone.\n"
    r = renderer(
        text=text,
        html="<p>{{ first_name }}</p>",
        reply_to=["help@example.com"],
        tags={"campaign": "spring"},
        configuration_set="marketing",
        unsubscribe_url="https://example.com/u",
    )
    a = message(r.render(row("a@example.com", first_name="A")))
    b = message(r.render(row("b@example.com", first_name="B")))
    assert a.html != b.html
    assert a.sender is b.sender
    assert a.reply_to is b.reply_to and a.reply_to == ("help@example.com",)
    assert a.tags is b.tags and dict(a.tags) == {"campaign": "spring"}
    assert a.headers is b.headers
    assert a.configuration_set == "marketing"
    assert a.text is text and b.text is text  # no template syntax: never rendered


def test_tags_cannot_be_changed_through_a_message() -> None:
    tags = {"campaign": "spring"}
    m = message(renderer(tags=tags).render(row(first_name="A")))
    tags["campaign"] = "changed"
    assert m.tags["campaign"] == "spring"
    with pytest.raises(TypeError):
        m.tags["campaign"] = "x"  # type: ignore[index]


def test_variables() -> None:
    r = renderer(
        html="{% for i in range(n) %}{{ code }}{% endfor %}{% set local = 1 %}{{ local }}",
        unsubscribe_url="https://example.com/u/{{ token }}",
        headers={"X-Id": "{{ id }}"},
    )
    assert r.variables == frozenset({"first_name", "n", "code", "token", "id"})
    assert renderer(subject="Hi", text="plain").variables == frozenset()


def test_a_rendered_message_builds_mime() -> None:
    r = renderer(subject="Olá {{ first_name }}", html="<p>{{ first_name }}</p>")
    mime = to_mime(message(r.render(row(first_name="João"))))
    assert b"Subject: =?utf-8?" in mime
    assert b"To: ana@example.com" in mime
