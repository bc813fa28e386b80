"""Errors a user can act on: each names the file, the node and the reason.

The CLI turns a ``ModelError`` into one line on stderr and exit code 2; nothing else in the
compiler should reach the user as a traceback.
"""

from __future__ import annotations


class ModelError(Exception):
    """A model, or an input for it, that intflow cannot accept."""

    def __init__(
        self, reason: str, *, file: str | None = None, node: str | None = None,
        op: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.file = file
        self.node = node
        self.op = op

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.node is not None or self.op:
            where.append(f"node '{self.node or '?'}' ({self.op or '?'})")
        return (": ".join(where) + ": " if where else "") + self.reason

    def located(self, file: str) -> ModelError:
        """Return this error with ``file`` filled in where it is missing."""
        if self.file is None:
            self.file = file
        return self


class UnsupportedOp(ModelError):
    """An operator intflow has no lowering for."""


class FloatPrefix(ModelError):
    """Float computation on a graph input before its first QuantizeLinear that does not
    commute with quantisation (onnxruntime runs it in float on the CPU)."""
