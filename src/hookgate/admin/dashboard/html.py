"""HTML built from elements, escaped by construction.

Text is always escaped; only ``Markup`` (made here, by ``tag``) passes as it is, so
a page cannot carry markup that came from a webhook, a header or a config value.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping


class Markup(str):
    """HTML that is safe to put in a page as it is."""

    __slots__ = ()


def escape(value: object) -> Markup:
    """``value`` as text in HTML (markup stays as it is)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def tag(
    name: str, attrs: Mapping[str, str | int | bool | None] | None = None, *children: object
) -> Markup:
    """``<name attrs>children</name>``; an attribute that is None or False is left out,
    True writes it bare; children may be nested iterables, None is nothing."""
    opening = name + "".join(_attribute(k, v) for k, v in (attrs or {}).items())
    if name in _VOID:
        return Markup(f"<{opening}>")
    return Markup(f"<{opening}>{join(children)}</{name}>")


def join(children: Iterable[object]) -> Markup:
    """The children as one piece of HTML, each escaped unless it is markup."""
    parts: list[str] = []
    for child in children:
        if child is None:
            continue
        if isinstance(child, str | int | float):
            parts.append(escape(child))
        else:
            parts.append(join(child))  # type: ignore[arg-type]
    return Markup("".join(parts))


def _attribute(key: str, value: str | int | bool | None) -> str:
    if value is None or value is False:
        return ""
    if value is True:
        return f" {key}"
    return f' {key}="{escape(value)}"'


_VOID = frozenset({"input", "meta", "link", "br", "hr", "img"})
