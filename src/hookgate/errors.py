"""hookgate's own errors: one root, and the few kinds that callers catch.

Each stage raises these, never a library's exception, across its boundary: the CLI
and the daemon turn them into one line and an exit code, the listeners into a
status and a JSON error.
"""

from __future__ import annotations


class HookgateError(Exception):
    """Something hookgate itself reports; the message is meant for an operator."""


class ConfigError(HookgateError):
    """The configuration is invalid; ``errors`` holds one line per problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class StoreError(HookgateError):
    """The store cannot do this now (disk full, locked, corrupt, deleted, or closing)."""


class ConflictError(StoreError):
    """The change does not apply to the row in its current state."""


class StartupError(HookgateError):
    """The daemon could not start (port in use, database unusable, bad TLS files)."""


class VerificationFailed(HookgateError):
    """An inbound request is not authentic; ``reason`` says which check failed (for logs)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
