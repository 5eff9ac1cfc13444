"""Keyframe request coalescing (streaming/keyframe_requests.py)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from streaming.keyframe_requests import KeyframeRequester, KeyframeRequestThrottle
from tests.support.fakes import FakeClock

INTERVAL = 0.3  # the default keyframe request interval


def test_throttle_sends_at_most_once_per_interval() -> None:
    throttle = KeyframeRequestThrottle(INTERVAL)
    assert throttle.request(10.0) == 0.0  # the first one goes out at once
    delay = throttle.request(10.1)
    assert delay == pytest.approx(0.2)  # inside the interval: deferred, not lost
    assert throttle.pending
    assert throttle.request(10.2) is None  # covered by the deferred one
    assert throttle.fire(10.3)
    assert not throttle.pending
    assert throttle.request(10.35) == pytest.approx(0.25)
    assert throttle.fire(10.6)
    assert throttle.request(10.95) == 0.0  # a quiet interval later: at once again


def test_throttle_a_keyframe_answers_the_pending_request() -> None:
    throttle = KeyframeRequestThrottle(INTERVAL)
    assert throttle.request(0.0) == 0.0
    assert throttle.request(0.1) is not None
    throttle.keyframe_arrived()
    assert not throttle.pending
    assert not throttle.fire(0.3)
    # The interval still counts from the last send.
    assert throttle.request(0.31) == 0.0


def test_throttle_join_storm_costs_one_request_and_one_deferred() -> None:
    throttle = KeyframeRequestThrottle(INTERVAL)
    decisions = [throttle.request(5.0 + i * 0.001) for i in range(100)]
    assert decisions[0] == 0.0
    deferred = [d for d in decisions[1:] if d is not None]
    assert len(deferred) == 1 and deferred[0] > 0
    assert throttle.fire(5.3)
    assert not throttle.fire(5.3)


async def test_requester_coalesces_to_one_send_per_interval() -> None:
    loop = asyncio.get_running_loop()
    sent_at: list[float] = []
    requester = KeyframeRequester(lambda: sent_at.append(loop.time()), INTERVAL, loop.time)
    try:
        start = loop.time()
        while loop.time() - start < 1.0:
            requester.request()
            await asyncio.sleep(0.01)
        await asyncio.sleep(INTERVAL + 0.1)
    finally:
        requester.close()
    assert requester.sent == len(sent_at)
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert all(gap >= INTERVAL - 1e-3 for gap in gaps), gaps
    # Requests inside intervals are not lost: a send every interval, not just one.
    assert 3 <= len(sent_at) <= 1.0 / INTERVAL + 2, sent_at


async def test_requester_sends_a_request_from_inside_the_interval_when_it_ends() -> None:
    clock = FakeClock()
    sends: list[float] = []
    requester = KeyframeRequester(lambda: sends.append(clock()), INTERVAL, clock)
    try:
        requester.request()
        assert sends == [clock.now]
        clock.advance(0.1)
        requester.request()
        requester.request()
        assert len(sends) == 1  # not yet
        clock.advance(0.2)
        await asyncio.sleep(0.2 + 0.1)  # the loop's timer: 0.2 s on the loop clock
        assert len(sends) == 2
        assert sends[1] - sends[0] == pytest.approx(INTERVAL)
        await asyncio.sleep(INTERVAL + 0.1)
        assert len(sends) == 2  # one request, one deferred send: nothing more
    finally:
        requester.close()


async def test_requester_a_keyframe_cancels_the_pending_request() -> None:
    clock = FakeClock()
    requester = KeyframeRequester(lambda: None, INTERVAL, clock)
    try:
        requester.request()
        clock.advance(0.05)
        requester.request()
        requester.keyframe_arrived()
        clock.advance(INTERVAL)
        await asyncio.sleep(INTERVAL + 0.1)
        assert requester.sent == 1
    finally:
        requester.close()


async def test_requester_join_storm_of_100_is_one_send_and_one_deferred() -> None:
    clock = FakeClock()
    requester = KeyframeRequester(lambda: None, INTERVAL, clock)
    try:
        for _ in range(100):
            requester.request()
            clock.advance(0.0005)
        assert requester.sent == 1
        clock.advance(INTERVAL)
        await asyncio.sleep(INTERVAL + 0.1)
        assert requester.sent == 2
        await asyncio.sleep(INTERVAL)
        assert requester.sent == 2
    finally:
        requester.close()


async def test_requester_close_cancels_the_deferred_send() -> None:
    clock = FakeClock()
    requester = KeyframeRequester(lambda: None, INTERVAL, clock)
    requester.request()
    requester.request()
    requester.close()
    clock.advance(INTERVAL)
    await asyncio.sleep(INTERVAL + 0.1)
    assert requester.sent == 1

