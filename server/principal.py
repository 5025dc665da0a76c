"""Who is calling: resolved once per request from the bearer token."""

from __future__ import annotations

from dataclasses import dataclass

from aami.server.tokens import Role


@dataclass(frozen=True)
class AdminPrincipal:
    token_id: int
    name: str
    role: Role


@dataclass(frozen=True)
class AgentPrincipal:
    token_id: int
    target_id: int
    hostname: str


@dataclass(frozen=True)
class BootstrapPrincipal:
    token_id: int


Principal = AdminPrincipal | AgentPrincipal | BootstrapPrincipal
