"""Trickle ICE fragments, RFC 8840 (web/signaling.py)."""

from __future__ import annotations

import pytest

from web.errors import BadRequest
from web.signaling import parse_sdpfrag


def test_parse_sdpfrag_reads_ufrag_candidates_and_end() -> None:
    fragment = (
        "a=ice-options:trickle ice2\r\n"
        "a=group:BUNDLE 0 1\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=mid:0\r\n"
        "a=ice-ufrag:EsAw\r\n"
        "a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n"
        "a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\n"
        "a=candidate:473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active\r\n"
        "a=end-of-candidates\r\n"
    )
    ufrag, candidates, end = parse_sdpfrag(fragment)
    assert ufrag == "EsAw"
    assert candidates == [
        ("0", "1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0"),
        ("0", "473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active"),
    ]
    assert end


def test_parse_sdpfrag_tracks_the_mid_of_each_media_section() -> None:
    fragment = (
        "a=candidate:1 1 udp 1 192.0.2.1 1 typ host\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\n"
        "c=IN IP4 0.0.0.0\n"
        "a=mid:a\n"
        "a=candidate:2 1 udp 1 192.0.2.1 2 typ host\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\n"
        "a=candidate:3 1 udp 1 192.0.2.1 3 typ host\n"
        "a=mid:v\n"
        "a=candidate:4 1 udp 1 192.0.2.1 4 typ host\n"
        "\n"
        "   \n"
    )
    ufrag, candidates, end = parse_sdpfrag(fragment)
    assert ufrag is None
    assert [mid for mid, _ in candidates] == [None, "a", None, "v"]
    assert [line.split()[0] for _, line in candidates] == ["1", "2", "3", "4"]
    assert not end


def test_parse_sdpfrag_of_nothing() -> None:
    assert parse_sdpfrag("") == (None, [], False)
    assert parse_sdpfrag("a=end-of-candidates") == (None, [], True)


@pytest.mark.parametrize(
    "fragment",
    [
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n",
        "hello",
        "a=mid:0\r\ncandidate:1 1 udp 1 1.2.3.4 5 typ host",
    ],
)
def test_parse_sdpfrag_rejects_what_is_not_a_fragment(fragment: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_sdpfrag(fragment)
    assert raised.value.status == 400
