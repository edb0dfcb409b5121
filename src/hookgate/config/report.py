"""The errors of one config file, collected in one pass, each with its key and line."""

from __future__ import annotations

from hookgate.config.locate import line_of, under


class Report:
    """Every error found in one file, without the ones that only echo another.

    A value that is wrong (or missing, for ``${ENV}`` and secret files) is reported,
    then *dropped*: left out so that the rest of its table can still be decoded.
    An error at a dropped key, or at one that holds a dropped key, would only
    repeat the same mistake (a default standing in, an empty secret), so it is not
    reported.
    """

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines()
        self.errors: list[str] = []
        """The errors in the order found: ``"<key path>: <message> (line <n>)"``."""
        self._error_lines: list[int | None] = []  # the line of each error, where known
        self._reported: list[str] = []
        self._dropped: set[str] = set()

    def error(self, key: str, message: str, line_key: str | None = None) -> None:
        """Report ``message`` at ``key``, unless it follows from a value left out there.

        ``line_key``: where to look for the line, when ``key`` is not a plain
        dotted path (a quoted header name).
        """
        if any(under(key, dropped) or dropped.startswith(f"{key}[") for dropped in self._dropped):
            return
        line = line_of(self._lines, line_key or key)
        at = f" (line {line})" if line else ""
        self.errors.append(f"{key}: {message}{at}")
        self._error_lines.append(line)
        self._reported.append(key)

    def drop(self, key: str) -> None:
        """The value at ``key`` was left out (after its error was reported)."""
        self._dropped.add(key)

    def dropped(self, key: str) -> bool:
        """Was the value at exactly ``key`` left out?"""
        return key in self._dropped

    def troubled(self, prefix: str) -> bool:
        """Was an error reported, or a value left out, at ``prefix`` or under it?"""
        return any(under(key, prefix) for key in (*self._reported, *self._dropped))

    def in_file_order(self) -> list[str]:
        """The errors by line, those without a known line last (each group as found)."""
        order = sorted(
            range(len(self.errors)),
            key=lambda i: (self._error_lines[i] is None, self._error_lines[i] or 0, i),
        )
        return [self.errors[i] for i in order]
