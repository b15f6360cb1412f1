"""An account's name in shared stores (the ledger, Redis): a digest of base URL and owner id."""

from __future__ import annotations

import hashlib

__all__ = ["account_id"]


def account_id(base_url: str, owner_id: str) -> str:
    """The namespace of an account in a ledger or Redis: a digest of its base URL and owner id."""
    digest = hashlib.sha256(f"{base_url}\n{owner_id}".encode()).hexdigest()
    return digest[:32]
