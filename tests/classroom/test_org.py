"""The organization tree, scopes and migration 7: an existing catalog keeps
working, today's admin becomes a city admin, the sites' paths become nodes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from classroom.access.accounts import Accounts
from classroom.access.org import OrgTree
from classroom.access.roles import AccountRole, Scope
from classroom.catalog import Catalog
from classroom.db import MIGRATIONS, ROOT_NODE, Database
from classroom.errors import Forbidden, Invalid, StateConflict


def _at_version_5(path: Path) -> None:
    """A catalog as the release before the tree left it, with data in it."""
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:5]:
        assert isinstance(script, str)
        conn.executescript(script)
    conn.executescript("""
        PRAGMA user_version = 5;
        INSERT INTO admins (username, password_hash, created_at) VALUES ('admin', 'x', 1);
        INSERT INTO sites (name, org_path, created_at) VALUES
            ('新碶街道分课堂', '北仑区 / 新碶街道', 2), ('小港街道分课堂', '北仑区 / 小港街道', 3),
            ('市委组织部', '', 4), ('横河村', '慈溪市 / 横河镇 / 横河村', 5);
        INSERT INTO sessions (id, title, video_codec, publish_token, view_token, created_at)
            VALUES ('s1', '第一讲', 'H264', 'p', 'v', 6);
        INSERT INTO archive_items (id, title, recorded_at, created_at, updated_at)
            VALUES ('0123456789abcdef', '第一讲', 7, 7, 7);
    """)
    conn.close()


def test_migration_7_keeps_an_existing_catalog_working(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    _at_version_5(path)
    db = Database(path)
    assert db.migrate() == len(MIGRATIONS) == 8
    org = OrgTree(db)
    paths = {node["path"]: node["kind"] for node in org.nodes()}
    assert paths == {"": "city", "北仑区": "district", "北仑区 / 新碶街道": "town",
                     "北仑区 / 小港街道": "town", "慈溪市": "district",
                     "慈溪市 / 横河镇": "town", "慈溪市 / 横河镇 / 横河村": "village"}
    tree = org.tree()
    for site in Catalog(db).sites():
        assert tree.path(site["org_node_id"]) == site["org_path"]
    admin = Accounts(db).find("admin")
    assert admin is not None and admin[0].role is AccountRole.CITY_ADMIN
    assert admin[0].org_node_id == ROOT_NODE
    assert db.one("SELECT organizer_id FROM sessions")["organizer_id"] == ROOT_NODE  # type: ignore[index]
    assert db.one("SELECT owner_id FROM archive_items")["owner_id"] == ROOT_NODE  # type: ignore[index]
    assert db.migrate() == 8  # again: nothing to do
    db.close()


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(tmp_path / "catalog.sqlite3")
    database.migrate()
    return database


def test_paths_resolve_within_a_scope(db: Database) -> None:
    org = OrgTree(db)
    beilun = org.resolve_path("北仑区", create=True)
    town = org.resolve_path("北仑区／新碶街道 ", beilun, create=True)
    assert org.path(town) == "北仑区 / 新碶街道"
    assert org.resolve_path("北仑区 / 新碶街道", beilun) == town
    yinzhou = org.resolve_path("鄞州区", create=True)
    before = org.nodes()
    for outside in ("鄞州区 / 首南街道", "", "海曙区"):
        with pytest.raises(Forbidden):
            org.resolve_path(outside, beilun, create=True)
    assert org.nodes() == before
    with pytest.raises(Invalid):
        org.resolve_path("北仑区 / 不存在", beilun)
    assert org.subtree(beilun) == {beilun, town}
    assert yinzhou not in org.subtree(beilun)


def test_a_move_that_would_make_a_cycle_is_refused(db: Database) -> None:
    org = OrgTree(db)
    a = org.create({"name": "甲区", "parent_id": ROOT_NODE})["id"]
    b = org.create({"name": "乙镇", "parent_id": a})["id"]
    c = org.create({"name": "丙村", "parent_id": b})["id"]
    for parent in (a, b, c):
        with pytest.raises(Invalid) as refused:
            org.update(a, {"parent_id": parent})
        assert refused.value.errors == {"parent_id": "error.org_cycle"}
    with pytest.raises(Invalid):
        org.update(ROOT_NODE, {"parent_id": a})
    with pytest.raises(Invalid) as refused:
        org.update(b, {"parent_id": 12345})
    assert refused.value.errors == {"parent_id": "error.org_dangling"}
    # The deepest node moves up, under the city: allowed.
    assert org.update(c, {"parent_id": ROOT_NODE})["path"] == "丙村"
    with pytest.raises(StateConflict):
        org.delete(a)  # 乙镇 is below it
    org.delete(b)
    org.delete(a)


def test_scopes_of_each_role() -> None:
    district = Scope(AccountRole.DISTRICT_ADMIN, 2, frozenset({2, 5}), frozenset({1}), 7)
    city_row = {"organizer_id": 1, "presenter_id": None}
    own_row = {"organizer_id": 5, "presenter_id": 9}
    other_row = {"organizer_id": 3, "presenter_id": None}
    assert district.reads_session(city_row) and not district.manages_session(city_row)
    assert district.manages_session(own_row) and district.sees_tokens(own_row)
    assert not district.reads_session(other_row)
    assert not district.sees_tokens(city_row)
    assert district.reads_item({"owner_id": 1, "state": "ready"})
    assert not district.reads_item({"owner_id": 1, "state": "recording"})
    assert not district.reads_item({"owner_id": 3, "state": "ready"})
    assert not district.may_grant("city_admin", 2) and district.may_grant("presenter", 5)
    presenter = Scope(AccountRole.PRESENTER, 5, frozenset({5}), frozenset({1, 2}), 9)
    assert presenter.reads_session(own_row) and presenter.sees_tokens(own_row)
    assert not presenter.reads_session({"organizer_id": 5, "presenter_id": 10})
    assert not presenter.reads and not presenter.manages
    auditor = Scope(AccountRole.AUDITOR, 2, frozenset({2, 5}), frozenset({1}), 11)
    assert auditor.reads_session(own_row) and not auditor.sees_tokens(own_row)
    assert not auditor.manages_item({"owner_id": 5})
    city = Scope.city()
    assert city.manages_session(other_row) and city.may_grant("city_admin", ROOT_NODE)
