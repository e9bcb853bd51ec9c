"""A compiled Jinja template as a plain function of a context dict, without
``Template.render``'s per-call costs (see :func:`render_function`).

>>> import jinja2
>>> env = jinja2.Environment(autoescape=True)
>>> render = render_function(env.from_string("<b>{{ name }}</b>"), escape=True)
>>> render({"name": "Tom & Jerry"})
'<b>Tom &amp; Jerry</b>'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jinja2
import markupsafe

__all__ = ["render_function"]


def render_function(
    template: jinja2.Template, *, escape: bool = False
) -> Callable[[dict[str, Any]], str]:
    """``template.render`` without its per-call costs.

    ``Template.render(ctx)`` copies ``ctx`` merged with the environment globals into a new
    dict on every call (5 us of the 7 us a small template takes). ``Renderer.render`` builds
    that merged dict once per row, so each part can use it as a shared context. This is
    exactly what ``Template.render`` does after the merge (Jinja2 3.1), minus the traceback
    rewriting on errors, which bulkmail turns into a ``RenderProblem`` anyway.

    The :class:`jinja2.runtime.Context` is made directly, without ``globals``: given them,
    it copies the names of the template's globals (a ``ChainMap``) into a set on every call,
    5 µs of the 11 µs a context took, for ``{% import %}`` of a template with other globals
    than this one's (the context here already holds them all, merged).

    ``escape``: the template autoescapes; its ``{{ … }}`` outputs call :func:`_memo_escape`
    instead of :func:`markupsafe.escape` (see there).
    """
    environment = template.environment
    make_context = environment.context_class
    name, blocks = template.name, template.blocks
    root = template.root_render_func
    if escape:
        # The compiled template looks ``escape`` up in the namespace its code ran in, which
        # is this template's own (``Template.from_code``); its blocks share it.
        root.__globals__["escape"] = _memo_escape()
    join = "".join

    def render(context: dict[str, Any]) -> str:
        return join(root(make_context(environment, context, name, blocks)))

    return render


def _memo_escape(size: int = 1024, longest: int = 200) -> Callable[[Any], markupsafe.Markup]:
    """:func:`markupsafe.escape` that remembers up to ``size`` plain strings it escaped, each
    at most ``longest`` characters (a few MB held at most, whatever the columns hold).

    An HTML template shows the same few columns many times (the benchmark's: 14 outputs
    of 3 columns a row): each ``escape`` took ~0.65 µs (markupsafe 3's is Python, making a
    :class:`~markupsafe.Markup` through ``Markup.__new__``), a lookup here ~0.15 µs.
    Only an exact ``str`` is looked up: ``Markup("<b>")`` equals ``"<b>"`` but is not escaped
    again, and ``True == 1``; everything else goes to markupsafe as before.
    """
    memo: dict[str, markupsafe.Markup] = {}
    slow = markupsafe.escape

    def escape(value: Any) -> markupsafe.Markup:
        if type(value) is str and len(value) <= longest:
            got = memo.get(value)
            if got is None:
                if len(memo) >= size:
                    memo.clear()
                got = memo[value] = slow(value)
            return got
        return slow(value)

    return escape
