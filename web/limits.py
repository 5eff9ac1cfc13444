"""Limits per credential: how much of the box one link, token or address may hold.

A room's link is a bearer credential that gets forwarded in chat groups, and
the session's view token may sit in a WHEP player somewhere; neither may be
able to exhaust the relay. What is bounded, and what a refusal says:

* live WHEP peers per invitation and per view token — ``429`` (that link
  already holds its share; a peer left behind by a dropped network goes
  within the 30 s connect/consent timeout, so ``Retry-After`` says 10 s);
* offers answered but not yet connected (each holds ICE and DTLS state for up
  to 30 s), per client address — ``429`` — and in total — ``503``: the box is
  busy, ``Retry-After`` 2 s (a 9:00 join storm connects within a second or so);
* WebSocket connections per token (or per login cookie) — ``429``;
* uploads and imports (the sites' CSV import): at once — ``503`` — and per
  credential a minute — ``429``.

Each refusal is one warning in the log, at most one line per limit and
credential every ``LOG_EVERY`` seconds, which counts the refusals it stood
for: a flood of refused offers does not become a flood of log lines.
Credentials are named in the log by what they are (``invitation 12``, ``view
token of session …``, an address), never by the token.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from web.errors import AppError

logger = logging.getLogger(__name__)

LOG_EVERY = 10.0  # seconds between two log lines of one limit and credential
UPLOAD_WINDOW = 60.0


@dataclass(frozen=True)
class LimitSettings:
    """Every limit; 0 means no limit."""

    peers_per_invitation: int = 3
    peers_per_view_token: int = 20
    pending_per_address: int = 20
    pending_total: int = 100
    sockets_per_token: int = 8
    uploads_at_once: int = 2
    uploads_per_minute: int = 20
    # A learner's player reports progress every 10 s and when the page goes:
    # a burst of this many, then one per ``progress_every`` seconds.
    progress_burst: int = 6
    # Retry-After of each kind of refusal, in seconds.
    retry_peers: int = 10
    retry_pending: int = 2
    retry_sockets: int = 10
    retry_uploads: int = 5
    progress_every: float = 4.0


class TooManyRequests(AppError):
    """This credential or address holds its share already."""

    status = 429


class Unavailable(AppError):
    """The server as a whole is at a limit for now."""

    status = 503


class _Peer(Protocol):
    resource_id: str
    connected_at: float | None


class _Holder(Protocol):
    """What holds the peers (a broadcast): the peer of a resource while it lives."""

    def resource(self, resource_id: str) -> _Peer | None: ...


@dataclass
class _Tracked:
    holder: _Holder
    peer: _Peer
    address: str
    credential: str | None

    def alive(self) -> bool:
        return self.holder.resource(self.peer.resource_id) is self.peer

    def pending(self) -> bool:
        return self.peer.connected_at is None


@dataclass
class _Admission:
    """One offer being answered; ``admit`` tracks the peer it made."""

    limiter: Limiter
    address: str
    credential: str | None

    def admit(self, holder: _Holder, resource_id: str) -> None:
        peer = holder.resource(resource_id)
        if peer is not None:
            self.limiter._tracked.append(
                _Tracked(holder, peer, self.address, self.credential))


class Limiter:
    """Counts what each credential and address holds, and refuses the excess.

    Peers are tracked from the moment their offer is read until their
    holder forgets them (``holder.resource(id)`` is no longer them); the
    count is brought up to date at each new offer, so nothing has to tell
    the limiter when a peer ends.
    """

    def __init__(self, settings: LimitSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._tracked: list[_Tracked] = []
        self._answering: Counter[str] = Counter()  # address -> offers being answered
        self._sockets: Counter[str] = Counter()  # credential key -> open sockets
        self._uploading = 0
        self._uploads: dict[str, deque[float]] = {}
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}
        self._reports: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    # ---------------------------------------------------------------- peers

    @contextlib.contextmanager
    def offer(self, address: str, credential: str | None,
              per_credential: int) -> Iterator[_Admission]:
        """Around answering one WHIP/WHEP offer from ``address``.

        ``credential`` names what the offer came with when its live peers
        are bounded (at ``per_credential``); None when they are not.
        """
        settings = self.settings
        self._tracked = [t for t in self._tracked if t.alive()]
        if credential is not None and per_credential:
            held = sum(1 for t in self._tracked if t.credential == credential)
            if held >= per_credential:
                self._refuse(TooManyRequests, "peers", credential, settings.retry_peers,
                             f"this link already has {held} connections (at most "
                             f"{per_credential}); close one or wait")
        pending = [t for t in self._tracked if t.pending()]
        if settings.pending_per_address:
            held = self._answering[address] + sum(1 for t in pending if t.address == address)
            if held >= settings.pending_per_address:
                self._refuse(TooManyRequests, "pending offers", f"address {address}",
                             settings.retry_pending,
                             f"{held} connections from this address are still being set up; "
                             "try again shortly")
        if settings.pending_total:
            held = sum(self._answering.values()) + len(pending)
            if held >= settings.pending_total:
                self._refuse(Unavailable, "pending offers", "all addresses",
                             settings.retry_pending,
                             "the server is setting up many connections; try again shortly")
        self._answering[address] += 1
        try:
            yield _Admission(self, address, credential)
        finally:
            self._answering[address] -= 1
            if not self._answering[address]:
                del self._answering[address]

    def peers_held(self, credential: str) -> int:
        """Live peers tracked for ``credential`` (as of the last offer, pruned now)."""
        self._tracked = [t for t in self._tracked if t.alive()]
        return sum(1 for t in self._tracked if t.credential == credential)

    # ---------------------------------------------------------------- sockets

    @contextlib.contextmanager
    def socket(self, secret: str, label: str) -> Iterator[None]:
        """Around one WebSocket of the credential ``secret`` (a token or a
        login cookie; only its digest is kept), named ``label`` in the log."""
        key = hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()
        limit = self.settings.sockets_per_token
        if limit and self._sockets[key] >= limit:
            self._refuse(TooManyRequests, "sockets", label, self.settings.retry_sockets,
                         f"this link already has {self._sockets[key]} open event "
                         f"connections (at most {limit})")
        self._sockets[key] += 1
        try:
            yield
        finally:
            self._sockets[key] -= 1
            if not self._sockets[key]:
                del self._sockets[key]

    # ---------------------------------------------------------------- uploads

    @contextlib.contextmanager
    def upload(self, secret: str, label: str) -> Iterator[None]:
        """Around reading and applying one upload or import of ``secret``'s."""
        settings = self.settings
        now = self._clock()
        key = hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()
        recent = self._uploads.setdefault(key, deque())
        while recent and recent[0] <= now - UPLOAD_WINDOW:
            recent.popleft()
        if not recent:
            del self._uploads[key]
        if settings.uploads_per_minute and len(recent) >= settings.uploads_per_minute:
            wait = max(1, int(recent[0] + UPLOAD_WINDOW - now + 0.999))
            self._refuse(TooManyRequests, "uploads", label, wait,
                         f"at most {settings.uploads_per_minute} uploads a minute")
        if settings.uploads_at_once and self._uploading >= settings.uploads_at_once:
            self._refuse(Unavailable, "uploads at once", "all credentials",
                         settings.retry_uploads,
                         "the server is busy with other uploads; try again shortly")
        self._uploads.setdefault(key, recent).append(now)
        self._uploading += 1
        try:
            yield
        finally:
            self._uploading -= 1

    # ---------------------------------------------------------------- progress reports

    def progress_report(self, key: str, label: str) -> None:
        """One progress report of a learner (``key``): a token bucket of
        ``progress_burst`` refilled one per ``progress_every`` seconds; 429
        beyond, with the seconds until the next token."""
        settings = self.settings
        if not settings.progress_burst:
            return
        now = self._clock()
        tokens, at = self._reports.get(key, (float(settings.progress_burst), now))
        tokens = min(float(settings.progress_burst),
                     tokens + (now - at) / settings.progress_every)
        if tokens < 1:
            self._reports[key] = (tokens, now)
            wait = max(1, int((1 - tokens) * settings.progress_every + 0.999))
            self._refuse(TooManyRequests, "progress reports", label, wait,
                         f"at most one progress report every {settings.progress_every:g} s")
        self._reports[key] = (tokens - 1, now)
        if len(self._reports) > 100_000:  # full buckets hold nothing worth keeping
            self._reports = {k: v for k, v in self._reports.items()
                             if v[0] + (now - v[1]) / settings.progress_every
                             < settings.progress_burst}

    # ---------------------------------------------------------------- refusals

    def _refuse(self, kind: type[AppError], limit: str, who: str, retry_after: int,
                message: str) -> None:
        now = self._clock()
        last, silenced = self._logged.get((limit, who), (None, 0))
        if last is None or now - last >= LOG_EVERY:
            more = f" (and {silenced} more since the last line)" if silenced else ""
            logger.warning("limit reached: %s of %s, refused with %d%s", limit, who,
                           kind.status, more)
            self._logged[(limit, who)] = (now, 0)
            if len(self._logged) > 10_000:  # a flood from many addresses: forget old lines
                self._logged = {k: v for k, v in self._logged.items() if now - v[0] < LOG_EVERY}
        else:
            self._logged[(limit, who)] = (last, silenced + 1)
        raise kind(message, headers={"Retry-After": str(retry_after)})


# -------------------------------------------------------------------- configuration

_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("peers_per_invitation", "max-peers-per-invitation",
     "live WHEP connections one room's link may hold (429 beyond)"),
    ("peers_per_view_token", "max-peers-per-view-token",
     "live WHEP connections a session's view token may hold (429 beyond)"),
    ("pending_per_address", "max-pending-per-address",
     "WHIP/WHEP offers from one address answered but not yet connected (429 beyond)"),
    ("pending_total", "max-pending",
     "WHIP/WHEP offers answered but not yet connected, in all (503 beyond)"),
    ("sockets_per_token", "max-sockets-per-token",
     "open event WebSockets per token or admin login (429 beyond)"),
    ("uploads_at_once", "max-uploads",
     "uploads and imports being read at once (503 beyond)"),
    ("uploads_per_minute", "max-uploads-per-minute",
     "uploads and imports per token or admin login a minute (429 beyond)"),
    ("progress_burst", "max-progress-burst",
     "progress reports a learner's link may send at once; then one every 4 s (429 beyond)"),
)


def _count(text: str) -> int:
    if not text.strip().isdigit() or int(text) > 1_000_000:
        raise argparse.ArgumentTypeError(f"not a whole number from 0 to 1000000: {text!r}")
    return int(text)


# What an edge (``zhixing edge``) enforces: it takes only rooms' WHEP offers.
EDGE_LIMITS = ("peers_per_invitation", "pending_per_address", "pending_total")


def add_limit_arguments(parser: argparse.ArgumentParser,
                        only: tuple[str, ...] | None = None) -> None:
    """One flag and one ZHIXING_* variable per limit (0: no limit); ``only``
    names the limits a command has, when not all."""
    defaults = LimitSettings()
    group = parser.add_argument_group(
        "limits", "what one link, token or address may hold; refusals answer 429 or 503 "
                  "with Retry-After and write one line to the log (0: no limit)")
    for name, flag, what in _FLAGS:
        if only is not None and name not in only:
            continue
        variable = "ZHIXING_" + flag.replace("-", "_").upper()
        default = getattr(defaults, name)
        group.add_argument(
            # argparse converts a string default with ``type``, as it does the flag.
            f"--{flag}", dest=f"limit_{name}", type=_count, metavar="N",
            default=os.environ.get(variable) or str(default),
            help=f"{what} (env {variable}; default {default})")


def limit_settings_from_args(args: argparse.Namespace) -> LimitSettings:
    """The limits of the parsed flags (those a command lacks keep their default)."""
    return LimitSettings(**{name: getattr(args, f"limit_{name}") for name, _, _ in _FLAGS
                            if hasattr(args, f"limit_{name}")})
