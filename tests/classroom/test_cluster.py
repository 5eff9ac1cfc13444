"""The cluster seam's pure parts: sealing, directory entries, choosing an edge."""

from __future__ import annotations

import pytest

from classroom.live.cluster import (
    LINK_QUALITY,
    LINK_TTL,
    MAX_LINK_REPORT,
    MAX_LINK_VIEWERS,
    LinkBoard,
    LinkReport,
    NodeEntry,
    Unsealed,
    ViewerEvent,
    ViewerLink,
    closest_edge,
    cluster_key,
    seal,
    unseal,
)

KEY = cluster_key(b"s" * 32)


def entry(name: str = "edge-beilun", district: str = "北仑区", load: int = 0,
          url: str = "http://10.8.0.5:8090") -> NodeEntry:
    return NodeEntry(name, url, district, load)


def test_a_sealed_entry_comes_back_as_it_was() -> None:
    sealed = seal(KEY, entry().to_fields())
    assert NodeEntry.from_fields(unseal(KEY, sealed)) == entry()
    assert NodeEntry.from_fields(unseal(KEY, sealed.encode())) == entry()


@pytest.mark.parametrize("raw", [
    None, 7, b"\xff\xfe", "", "no seal", "{}|AAAA", "x" * 9000,
    seal(cluster_key(b"t" * 32), {"name": "edge"}),  # another city's secret
    seal(KEY, {"name": "edge"}).replace("edge", "egde", 1),  # altered after sealing
    "[1]|" + seal(KEY, {}).rpartition("|")[2],  # a seal of something else
])
def test_anything_not_sealed_with_the_key_is_refused(raw: object) -> None:
    with pytest.raises(Unsealed):
        unseal(KEY, raw)


def test_the_cluster_key_is_not_the_invitation_key() -> None:
    from classroom.access.signing import InvitationClaims, Signer

    token = Signer(b"s" * 32).sign(InvitationClaims("i", "s", 0))
    payload, _, signature = token.partition(".")
    with pytest.raises(Unsealed):
        unseal(KEY, f"{payload}|{signature}")


@pytest.mark.parametrize("fields", [
    {"name": "edge/../x", "url": "http://a:1", "district": "北仑区", "load": 0},
    {"name": "edge", "url": "javascript:alert(1)", "district": "北仑区", "load": 0},
    {"name": "edge", "url": "http://a:1 b", "district": "北仑区", "load": 0},
    {"name": "edge", "url": "http://a:1", "district": " / ", "load": 0},
    {"name": "edge", "url": "http://a:1", "district": "北仑区", "load": -1},
    {"name": "edge", "url": "http://a:1", "district": "北仑区", "load": True},
    {"name": "edge", "url": "http://a:1", "district": "北仑区"},
    {"name": 5, "url": "http://a:1", "district": "北仑区", "load": 0},
])
def test_a_malformed_entry_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(Unsealed):
        NodeEntry.from_fields(fields)


def test_a_site_goes_to_the_edge_of_its_district_narrowest_then_least_loaded() -> None:
    city_wide = entry("edge-city", "宁波市", 0)
    beilun_busy = entry("edge-beilun-1", "北仑区", 40)
    beilun_free = entry("edge-beilun-2", "北仑区", 3)
    town = entry("edge-xinqi", "北仑区 / 新碶街道", 90)
    edges = [city_wide, beilun_busy, beilun_free, town]
    assert closest_edge(edges, "北仑区 / 新碶街道 / 某村") == town
    assert closest_edge(edges, "北仑区 / 大碶街道") == beilun_free
    assert closest_edge(edges, "北仑区／大碶街道") == beilun_free  # a full-width slash
    assert closest_edge(edges, "鄞州区") is None
    assert closest_edge(edges, "北仑") is None  # a prefix of a name is not the district
    assert closest_edge(edges, None) is None
    assert closest_edge([], "北仑区") is None


def test_an_edge_origin_is_its_url_without_the_path() -> None:
    assert entry(url="https://edge.example:8443/zhixing").origin == "https://edge.example:8443"


def test_viewer_events_round_trip_and_refuse_unknown_kinds() -> None:
    event = ViewerEvent("s1", "i1", "edge-beilun/r1", "open", 1700000000.5)
    assert ViewerEvent.from_fields(unseal(KEY, seal(KEY, event.to_fields()))) == event
    with pytest.raises(Unsealed):
        ViewerEvent.from_fields({**event.to_fields(), "e": "delete"})
    with pytest.raises(Unsealed):
        ViewerEvent.from_fields({**event.to_fields(), "t": "soon"})


def test_a_worker_takes_every_site_after_the_edges_of_its_district() -> None:
    from classroom.live.cluster import ALL_SITES

    worker = entry("worker-1", ALL_SITES, 0, "http://127.0.0.1:8081")
    beilun = entry("edge-beilun", "北仑区", 99)
    assert NodeEntry.from_fields(worker.to_fields()) == worker
    assert closest_edge([worker, beilun], "北仑区 / 新碶街道") == beilun
    assert closest_edge([worker, beilun], "鄞州区") == worker
    busy = entry("worker-2", ALL_SITES, 5, "http://127.0.0.1:8082")
    assert closest_edge([busy, worker], "鄞州区") == worker  # the least loaded


def link(resource: str = "edge-beilun/r1", bytes_sent: float = 1000.0,
         session: str = "s1") -> ViewerLink:
    quality: dict[str, float | None] = dict.fromkeys(LINK_QUALITY, 0)
    quality.update(bitrate=900_000, fraction_lost=0.02, rtt=0.012, jitter=None)
    return ViewerLink(session, "i1", resource, 1700000000.0, quality,
                      {"zhixing_egress_bytes": bytes_sent, "zhixing_egress_packets": 10})


def sealed(report: LinkReport, key: bytes = KEY) -> str:
    return seal(key, report.to_fields())


def test_a_link_report_round_trips() -> None:
    report = LinkReport("edge-beilun", 1700000001.0, (link(), link("edge-beilun/r2")))
    assert LinkReport.from_fields(unseal(KEY, sealed(report), MAX_LINK_REPORT)) == report


@pytest.mark.parametrize("change", [
    {"k": "open"},  # another kind of message
    {"n": "edge/../x"},
    {"v": "everyone"},
    {"v": [{"s": "s1"}]},
    {"v": [{**link().to_fields(), "r": "edge-other/r1"}]},  # another node's viewer
    {"v": [{**link().to_fields(), "q": {"bitrate": -5}}]},
    {"v": [{**link().to_fields(), "q": {"fraction_lost": 3}}]},
    {"v": [{**link().to_fields(), "q": {"loss": 0.1}}]},
    {"v": [{**link().to_fields(), "q": {"rtt": True}}]},
    {"v": [{**link().to_fields(), "m": {"rm -rf": 1}}]},
    {"v": [{**link().to_fields(), "m": {"zhixing_egress_bytes": float("nan")}}]},
    {"v": [{**link().to_fields(), "m": {"zhixing_egress_bytes": None}}]},
    {"v": [link().to_fields()] * (MAX_LINK_VIEWERS + 1)},
])
def test_a_malformed_link_report_is_refused(change: dict[str, object]) -> None:
    fields = {**LinkReport("edge-beilun", 1.0, (link(),)).to_fields(), **change}
    with pytest.raises(Unsealed):
        LinkReport.from_fields(fields)


def test_the_board_keeps_the_latest_report_and_retires_what_leaves_it(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    board = LinkBoard(KEY, clock=lambda: now[0])
    assert board.receive(sealed(LinkReport("edge-beilun", 1.0, (link(), link("edge-beilun/r2")))))
    assert board.receive(sealed(LinkReport("edge-yinzhou", 1.0, (link("edge-yinzhou/r1"),))))
    # r2 left the edge: its last counters are retired, r1's new ones replace its old.
    board.receive(sealed(LinkReport("edge-beilun", 3.0, (link(bytes_sent=5000.0),))))
    assert board.retired == {"zhixing_egress_bytes": 1000.0, "zhixing_egress_packets": 10}
    assert {r.node: len(r.viewers) for r in board.reports()} == {"edge-beilun": 1,
                                                                 "edge-yinzhou": 1}
    # Forged, garbage, too long, an old one sent again: refused, logged,
    # nothing changes.
    for raw in (sealed(LinkReport("edge-beilun", 5.0, ()), cluster_key(b"t" * 32)),
                b"\xff garbage", "x" * (MAX_LINK_REPORT + 1),
                sealed(LinkReport("edge-beilun", 1.0, ()))):
        assert board.receive(raw) is None
    assert board.refused == 4 and "link report refused" in caplog.text
    assert len(board.reports()[0].viewers) == 1
    # An edge that stopped reporting is forgotten, its viewers' counters retired.
    now[0] += LINK_TTL - 1
    board.receive(sealed(LinkReport("edge-yinzhou", 7.0, (link("edge-yinzhou/r1"),))))
    now[0] += 2
    assert [r.node for r in board.reports()] == ["edge-yinzhou"]
    assert board.retired["zhixing_egress_bytes"] == 1000.0 + 5000.0
