"""WHIP (RFC 9725) ingest and WHEP playback: one resource model for both.

``POST /whip/{session}`` or ``/whep/{session}`` with an SDP offer and a bearer
token creates a resource (``201``, ``Location``, the SDP answer with all our
candidates). ``PATCH`` on the resource adds trickled candidates; an ICE
restart is answered ``422`` (aiortc cannot restart ICE: the client makes a new
resource instead, which for a publisher replaces the old one and for a viewer
is a new join). ``DELETE`` ends it.

Who may do what: the session's publish token publishes the program; its
view token views. A room's invitation token views, and publishes only that
room's *uplink* (its own camera and microphone for questions): never the
program, whatever it offers. An uplink reaches nobody until the presenter
puts the room on stage (``classroom/live/discussion.py``).
"""

from __future__ import annotations

import hmac
from typing import Any, ClassVar
from urllib.parse import quote

from aiohttp import web
from aiortc import sdp as aiortc_sdp
from pydantic import Field

from classroom.access.invitations import is_invitation_token
from classroom.access.tokens import Role
from classroom.live.cluster import closest_edge
from classroom.live.sessions import Session
from streaming.broadcast import BroadcastClosed, PublisherReplaced
from streaming.peers import MAX_SDP_BYTES, MalformedOffer, MissingMedia, Peer, UnsupportedCodec
from web.api.spec import ABSENT, Reply, Validated, operation, read_query
from web.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    NotAcceptable,
    NotFound,
    Unprocessable,
    UnsupportedMediaType,
)
from web.http import bearer_token, read_limited
from web.keys import CONFIG, LIMITER, REPLAYS, SCHOOL, SESSIONS, TOKENS
from web.workers import as_seen_from

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, ETag, Accept-Patch, Retry-After",
}

SDP_BODY = {SDP: {"schema": {"type": "string"}}}
SDP_ERRORS = (400, 401, 403, 404, 406, 410, 413, 415, 422,
              (429, "this link or address holds its share of connections (Retry-After)"),
              (503, "too many connections being set up (Retry-After)"))
WHIP_SUMMARY = (
    "Publish (WHIP, RFC 9725). The session's publish token publishes the program; a room's "
    "invitation token publishes only that room's uplink (its camera and microphone for "
    "questions, one per invitation, a new one replacing the old), which reaches nobody "
    "until it is put on stage")


def routes() -> list[web.RouteDef]:
    table = []
    for kind in ("whip", "whep"):
        table += [
            web.post(f"/{kind}/{{session_id}}", create_resource),
            web.options(f"/{kind}/{{session_id}}", preflight),
            web.patch(f"/{kind}/{{session_id}}/{{resource_id}}", patch_resource),
            web.delete(f"/{kind}/{{session_id}}/{{resource_id}}", delete_resource),
            web.options(f"/{kind}/{{session_id}}/{{resource_id}}", preflight),
        ]
    return table


def _role(request: web.Request) -> Role:
    return Role.PUBLISH if request.path.startswith("/whip/") else Role.VIEW


def _authorized_session(request: web.Request) -> tuple[Session, str | None]:
    """The live session named in the path, if the bearer token may use it,
    and the invitation the token came from (for a room's viewer)."""
    session, invitation = _authorized(request)
    return session, str(invitation["id"]) if invitation is not None else None


def _is_edge(request: web.Request, token: str) -> bool:
    """Whether ``token`` is the edges' (which may view every session)."""
    edge_token = request.app[CONFIG].edge_token
    return edge_token is not None and _role(request) is Role.VIEW \
        and hmac.compare_digest(edge_token.encode(), token.encode())


def _authorized(request: web.Request) -> tuple[Session, dict[str, Any] | None]:
    """The live session named in the path, if the bearer token may use it,
    and the invitation row the token came from (for a room)."""
    token = bearer_token(request)
    session_id = request.match_info["session_id"]
    session = request.app[SESSIONS].get(session_id)
    if session is None:
        # A valid token for another session still learns nothing here.
        raise NotFound("no such session")
    if session.ended_at is not None:
        raise Gone("this session has ended")
    if is_invitation_token(token):
        # WHEP: the room's viewer; WHIP: the room's uplink, never the program.
        return session, request.app[SCHOOL].check_invitation(token, session_id)
    if not _is_edge(request, token):
        request.app[TOKENS].require(token, _role(request), session_id)
    return session, None


async def _read_body(request: web.Request, content_type: str) -> str:
    if request.content_type != content_type:
        raise UnsupportedMediaType(f"Content-Type must be {content_type}")
    body = await read_limited(request, MAX_SDP_BYTES)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("body is not UTF-8 text") from exc


class PublishQuery(Validated):
    resumes: str = Field(ABSENT, max_length=64, description=(
        "an automatic reconnection: the resource id this publisher had. If another publisher "
        "has since taken the program over and is still on, the answer is 409 and that one "
        "stays; without it, a new publisher always takes over"))
    refusals: ClassVar[dict[str, str]] = {"resumes": "error.too_long"}


class ViewQuery(Validated):
    direct: str = Field(ABSENT, max_length=8, description=(
        "1: answer here even if the room's district has an edge (a room page whose "
        "redirected request failed on the network asks so, and plays from the origin)"))
    refusals: ClassVar[dict[str, str]] = {"direct": "error.too_long"}


@operation(WHIP_SUMMARY, path="/whip/{session_id}", body_media=SDP_BODY,
           errors=(*SDP_ERRORS, 409), query=(PublishQuery,),
           replies={201: Reply("SDP answer; Location names the new resource",
                               media=SDP_BODY)})
@operation("View (WHEP)", path="/whep/{session_id}", body_media=SDP_BODY, errors=SDP_ERRORS,
           query=(ViewQuery,),
           replies={201: Reply("SDP answer; Location names the new resource",
                               media=SDP_BODY),
                    307: Reply("the room's district has a healthy edge: make the same "
                               "request to the Location, an edge's WHEP URL (RFC 9725 "
                               "allows redirects; the invitation token rides in its query, "
                               "since a redirect to another origin drops Authorization)")})
async def create_resource(request: web.Request) -> web.Response:
    session, invitation = _authorized(request)
    invitation_id = str(invitation["id"]) if invitation is not None else None
    if invitation is not None and _role(request) is Role.VIEW \
            and read_query(request, ViewQuery).direct != "1":
        _redirect_to_edge(request, session, invitation)
    edge = invitation is None and _role(request) is Role.VIEW \
        and _is_edge(request, bearer_token(request))
    room = session.broadcast
    uplink = _role(request) is Role.PUBLISH and invitation_id is not None
    if _role(request) is Role.PUBLISH and not uplink \
            and request.app[REPLAYS].is_replay(session.id):
        raise Conflict("this session replays an archived lecture: it takes no publisher")
    limits = request.app[LIMITER].settings
    credential: str | None = None
    per_credential = 0
    if _role(request) is Role.VIEW:
        # A publisher (the program, a room's uplink) replaces its predecessor;
        # viewers add up, so a link's viewers are counted.
        if invitation_id is not None:
            credential, per_credential = f"invitation {invitation_id}", \
                limits.peers_per_invitation
        elif edge:
            credential = None  # one pull per session and edge; edges are few
        else:
            credential, per_credential = f"view token of session {session.id}", \
                limits.peers_per_view_token
    try:
        with request.app[LIMITER].offer(request.remote or "unknown", credential,
                                        per_credential) as admission:
            offer = await _read_body(request, SDP)
            if uplink:
                assert invitation_id is not None
                resource_id, answer = await room.publish_uplink(invitation_id, offer)
            elif _role(request) is Role.PUBLISH:
                resumes = read_query(request, PublishQuery).resumes
                resource_id, answer = await room.publish(offer, resumes=resumes)
            else:
                resource_id, answer = await room.view(offer, tag=invitation_id, relay=edge)
            admission.admit(room, resource_id)
    except MalformedOffer as exc:
        raise BadRequest(str(exc)) from exc
    except MissingMedia as exc:
        raise Unprocessable(str(exc)) from exc
    except UnsupportedCodec as exc:
        raise NotAcceptable(f"{exc} (this session sends {session.video_codec} and Opus)") from exc
    except BroadcastClosed as exc:
        raise Gone("this session has ended") from exc
    except PublisherReplaced as exc:
        raise Conflict("another publisher has taken over this session's program; publish "
                       "again without 'resumes' to take it back") from exc
    location = f"{request.path}/{resource_id}"
    headers = {
        "Location": location,
        "ETag": f'"{resource_id}"',
        "Accept-Patch": SDPFRAG,
        **CORS_HEADERS,
    }
    links = [f'<{server["urls"]}>; rel="ice-server"'
             for server in request.app[CONFIG].browser_ice_servers()]
    if links:
        headers["Link"] = ", ".join(links)
    return web.Response(status=201, text=answer, content_type=SDP, headers=headers)


def _redirect_to_edge(request: web.Request, session: Session,
                      invitation: dict[str, Any]) -> None:
    """A room whose site lies in a district with a healthy edge watches
    through that edge: 307 to its WHEP URL (the room page's fetch follows
    it; when the edge dies its entry lapses within 2 s and the room's next
    try is answered here)."""
    cluster = request.app[SCHOOL].cluster
    edge = closest_edge(cluster.healthy_edges(), invitation.get("org_path"))
    if edge is None:
        return
    cluster.sent(edge)
    token = bearer_token(request)
    url = as_seen_from(request.app[CONFIG], edge.url, str(request.url.origin()))
    raise web.HTTPTemporaryRedirect(
        f"{url}/whep/{quote(session.id, safe='')}?token={quote(token, safe='')}",
        headers=CORS_HEADERS)


def _resource(request: web.Request) -> tuple[Session, Peer]:
    session, invitation_id = _authorized_session(request)
    peer = session.broadcast.resource(request.match_info["resource_id"])
    kind = Role.PUBLISH if session.broadcast.is_publisher(peer) else Role.VIEW
    if peer is None or kind is not _role(request):
        raise NotFound("no such resource (it may have ended)")
    if invitation_id is not None and getattr(peer, "tag", None) != invitation_id:
        raise Forbidden("this resource belongs to another room")
    return session, peer


@operation("Trickle ICE candidates for a WHIP resource (ICE restart: 422)",
           path="/whip/{session_id}/{resource_id}",
           body_media={SDPFRAG: {"schema": {"type": "string"}}},
           errors=(400, 401, 403, 404, 415, 422), replies={204: Reply("candidates added")})
@operation("Trickle ICE candidates for a WHEP resource (ICE restart: 422)",
           path="/whep/{session_id}/{resource_id}",
           body_media={SDPFRAG: {"schema": {"type": "string"}}},
           errors=(400, 401, 403, 404, 415, 422), replies={204: Reply("candidates added")})
async def patch_resource(request: web.Request) -> web.Response:
    _, peer = _resource(request)
    fragment = await _read_body(request, SDPFRAG)
    ufrag, candidates, end = parse_sdpfrag(fragment)
    remote = peer.pc.remoteDescription
    if ufrag is not None and remote is not None:
        ice = aiortc_sdp.SessionDescription.parse(remote.sdp).media[0].ice
        if ice is None or ufrag != ice.usernameFragment:
            raise Unprocessable(
                "ICE restart is not supported: create a new resource with POST instead"
            )
    parsed = []
    for mid, line in candidates:
        try:
            candidate = aiortc_sdp.candidate_from_sdp(line)
        except (ValueError, IndexError, AssertionError) as exc:
            # aiortc asserts that a candidate line has at least eight fields.
            raise BadRequest(f"malformed candidate: {line[:80]}") from exc
        candidate.sdpMid = mid
        candidate.sdpMLineIndex = None if mid is not None else 0
        parsed.append(candidate)
    # Only a fragment that is valid as a whole adds anything.
    for candidate in parsed:
        await peer.add_candidate(candidate)
    if end:
        await peer.add_candidate(None)
    return web.Response(status=204, headers=CORS_HEADERS)


def parse_sdpfrag(fragment: str) -> tuple[str | None, list[tuple[str | None, str]], bool]:
    """(ice-ufrag, [(mid, candidate line)], end-of-candidates) of an SDP fragment."""
    ufrag = None
    mid: str | None = None
    candidates: list[tuple[str | None, str]] = []
    end = False
    for raw in fragment.splitlines():
        line = raw.strip()
        if line.startswith("a=ice-ufrag:"):
            ufrag = line.split(":", 1)[1]
        elif line.startswith("m="):
            mid = None
        elif line.startswith("a=mid:"):
            mid = line.split(":", 1)[1]
        elif line.startswith("a=candidate:"):
            candidates.append((mid, line[len("a=candidate:"):]))
        elif line == "a=end-of-candidates":
            end = True
        elif line and not line.startswith(("a=", "m=", "c=")):
            raise BadRequest(f"not an SDP fragment line: {line[:80]}")
    return ufrag, candidates, end


@operation("End a WHIP resource", path="/whip/{session_id}/{resource_id}",
           errors=(401, 403, 404), replies={200: Reply("ended")})
@operation("End a WHEP resource", path="/whep/{session_id}/{resource_id}",
           errors=(401, 403, 404), replies={200: Reply("ended")})
async def delete_resource(request: web.Request) -> web.Response:
    _, peer = _resource(request)
    await peer.close()
    return web.Response(status=200, headers=CORS_HEADERS)


@operation("CORS preflight", security=None, replies={204: Reply("ok")})
async def preflight(request: web.Request) -> web.Response:
    methods = "POST, OPTIONS" if "resource_id" not in request.match_info else \
        "PATCH, DELETE, OPTIONS"
    return web.Response(status=204, headers={
        **CORS_HEADERS,
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Max-Age": "86400",
        "Accept-Post": SDP,
    })
