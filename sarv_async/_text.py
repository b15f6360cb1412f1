"""What is kept of text a server sent: at most ~1,000 characters, and never the token."""

from __future__ import annotations

__all__ = ["SERVER_TEXT_LIMIT", "server_text"]

#: Characters of a server's text (an error message, a header) kept in an exception.
SERVER_TEXT_LIMIT = 1_000


def server_text(text: str, *, mask: str | None = None, limit: int = SERVER_TEXT_LIMIT) -> str:
    """``text`` with ``mask`` (the token) replaced by ``***``, cut to ``limit`` characters.

    The mask is applied to the whole text before cutting, so no prefix of the token can
    survive at the cut. A cut text ends with a note of how long the original was.
    """
    if mask and mask in text:
        text = text.replace(mask, "***")
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [cut: {len(text):,} characters in all]"
