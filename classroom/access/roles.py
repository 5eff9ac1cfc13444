"""Roles and scopes: what an account may see and change.

Four roles. A **city admin** may do everything. A **district admin** is
scoped to one node of the organization tree: it manages the sites, courses, sessions,
archive items and accounts of that node's subtree, reads the sessions,
courses and ready lectures of the nodes above it (the city's), so it can
schedule replays of them for its rooms, and sees only its own rooms in them. A
**presenter** opens the presenter page of the sessions assigned to it and
nothing else. An **auditor** reads (reports, the wall, the archive) within
its node's subtree and changes nothing.

A :class:`Scope` is computed once per request from the account and the tree;
its predicates take catalog rows. Nothing here knows HTTP: the web layer
turns a refused predicate into 403.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from classroom.db import ROOT_NODE
from classroom.errors import Forbidden


class AccountRole(StrEnum):
    CITY_ADMIN = "city_admin"
    DISTRICT_ADMIN = "district_admin"
    PRESENTER = "presenter"
    AUDITOR = "auditor"


ROLES = tuple(role.value for role in AccountRole)


@dataclass(frozen=True)
class Scope:
    """An account's role and its part of the tree.

    ``subtree`` is the account's node and everything below it; ``above`` the
    nodes strictly above it (the city for a district). A city admin's
    ``everything`` short-cuts the checks (it also covers nodes made after the
    scope was read).
    """

    role: AccountRole
    node_id: int
    subtree: frozenset[int]
    above: frozenset[int]
    account_id: int | None = None
    everything: bool = False

    @classmethod
    def city(cls, account_id: int | None = None) -> Scope:
        return cls(AccountRole.CITY_ADMIN, ROOT_NODE, frozenset(), frozenset(), account_id,
                   everything=True)

    # ----------------------------------------------------------- roles

    @property
    def is_city(self) -> bool:
        return self.role is AccountRole.CITY_ADMIN

    @property
    def manages(self) -> bool:
        """May change things (in its subtree)."""
        return self.role in (AccountRole.CITY_ADMIN, AccountRole.DISTRICT_ADMIN)

    @property
    def reads(self) -> bool:
        """May read reports, the wall, the archive and sessions (in its scope)."""
        return self.role is not AccountRole.PRESENTER

    def covers(self, node_id: Any) -> bool:
        return self.everything or node_id in self.subtree

    def require_covers(self, node_id: Any, what: str = "object") -> None:
        if not self.covers(node_id):
            raise Forbidden(f"this {what} belongs to another part of the organization")

    # ----------------------------------------------------------- objects

    def reads_session(self, row: Mapping[str, Any]) -> bool:
        """Its own sessions, and the sessions of the nodes above it (read-only)."""
        if self.role is AccountRole.PRESENTER:
            return self.account_id is not None and row.get("presenter_id") == self.account_id
        organizer = row.get("organizer_id")
        return self.covers(organizer) or organizer in self.above

    def manages_session(self, row: Mapping[str, Any]) -> bool:
        return self.manages and self.covers(row.get("organizer_id"))

    def sees_tokens(self, row: Mapping[str, Any]) -> bool:
        """The publish and view tokens: its manager's, or the assigned presenter's."""
        if self.role is AccountRole.PRESENTER:
            return self.reads_session(row)
        return self.manages_session(row)

    def reads_item(self, item: Mapping[str, Any]) -> bool:
        """Its own archive items in any state; ready lectures from above."""
        if not self.reads:
            return False
        owner = item.get("owner_id")
        return self.covers(owner) or (owner in self.above and item.get("state") == "ready")

    def manages_item(self, item: Mapping[str, Any]) -> bool:
        return self.manages and self.covers(item.get("owner_id"))

    def reads_course(self, row: Mapping[str, Any]) -> bool:
        """The city's courses and its own (a district's lecturers)."""
        owner = row.get("owner_id")
        return self.reads and (self.covers(owner) or owner in self.above)

    def manages_course(self, row: Mapping[str, Any]) -> bool:
        return self.manages and self.covers(row.get("owner_id"))

    def manages_account(self, account: Mapping[str, Any]) -> bool:
        """City admins manage every account; a district admin the accounts of
        its subtree other than city admins and itself."""
        if self.is_city:
            return True
        return (self.role is AccountRole.DISTRICT_ADMIN
                and account.get("role") != AccountRole.CITY_ADMIN
                and account.get("id") != self.account_id
                and self.covers(account.get("org_node_id")))

    def may_grant(self, role: str, node_id: int) -> bool:
        """Whether it may give an account ``role`` at ``node_id``."""
        if self.is_city:
            return role != AccountRole.CITY_ADMIN or node_id == ROOT_NODE
        return (self.role is AccountRole.DISTRICT_ADMIN and role != AccountRole.CITY_ADMIN
                and self.covers(node_id))
