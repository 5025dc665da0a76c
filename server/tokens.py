"""Secrets the server hands out: admin API tokens, bootstrap tokens, agent tokens.

A token is 32 random bytes (urlsafe base64) behind a short kind prefix, so a
leaked token in a log or a paste is recognisable. The database stores only the
SHA-256 of the whole token: tokens carry 256 bits of entropy, so a fast hash is
enough (there is nothing to brute-force) and lookups stay one indexed equality.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import Enum


class TokenKind(Enum):
    ADMIN = "aami_adm_"
    BOOTSTRAP = "aami_bst_"
    AGENT = "aami_agt_"


class Role(Enum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return {"viewer": 0, "operator": 1, "admin": 2}[self.value]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True)
class NewToken:
    secret: str  # shown once, never stored
    token_hash: str
    prefix: str  # the first characters, for listings ("aami_adm_Xy3k")


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_token(kind: TokenKind) -> NewToken:
    secret = kind.value + secrets.token_urlsafe(32)
    return NewToken(secret=secret, token_hash=hash_token(secret), prefix=secret[:13])


def kind_of(secret: str) -> TokenKind | None:
    for kind in TokenKind:
        if secret.startswith(kind.value):
            return kind
    return None


def mask_secret(secret: str) -> str:
    """What a log line may show of a token."""
    return secret[:13] + "…" if kind_of(secret) else "***"
