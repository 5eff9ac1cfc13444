"""The OpenAPI document: the contract of the HTTP interface."""

from __future__ import annotations

from typing import Any

_error = {"$ref": "#/components/responses/Error"}
_bearer: list[dict[str, list[str]]] = [{"bearer": []}]


def _sdp_endpoint(kind: str, summary: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": _bearer,
            "requestBody": {"required": True,
                            "content": {"application/sdp": {"schema": {"type": "string"}}}},
            "responses": {
                "201": {"description": "SDP answer; Location names the new resource",
                        "content": {"application/sdp": {"schema": {"type": "string"}}}},
                "400": _error, "401": _error, "403": _error, "404": _error, "406": _error,
                "410": _error, "413": _error, "415": _error, "422": _error,
            },
        },
        "options": {"summary": "CORS preflight", "responses": {"204": {"description": "ok"}}},
    }


def _resource_endpoint(kind: str) -> dict[str, Any]:
    return {
        "patch": {
            "summary": f"Trickle ICE candidates for a {kind} resource (ICE restart: 422)",
            "security": _bearer,
            "requestBody": {"required": True, "content": {
                "application/trickle-ice-sdpfrag": {"schema": {"type": "string"}}}},
            "responses": {"204": {"description": "candidates added"},
                          "400": _error, "401": _error, "403": _error, "404": _error,
                          "415": _error, "422": _error},
        },
        "delete": {
            "summary": f"End a {kind} resource",
            "security": _bearer,
            "responses": {"200": {"description": "ended"}, "401": _error, "403": _error,
                          "404": _error},
        },
        "options": {"summary": "CORS preflight", "responses": {"204": {"description": "ok"}}},
    }


_session_path_param = {"name": "session_id", "in": "path", "required": True,
                       "schema": {"type": "string"}}
_resource_path_params = [_session_path_param,
                         {"name": "resource_id", "in": "path", "required": True,
                          "schema": {"type": "string"}}]

_row_path_param = {"name": "row_id", "in": "path", "required": True,
                   "schema": {"type": "integer", "minimum": 1}}
_invitation_path_param = {"name": "invitation_id", "in": "path", "required": True,
                          "schema": {"type": "string"}}


def _schema(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _json_body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": _json(_schema(schema))}


def _listed(key: str, schema: str) -> dict[str, Any]:
    return {"type": "object", "properties": {key: {"type": "array", "items": _schema(schema)}}}


def _crud(kind: str, singular: str, schema: str, summary: str,
          fields: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The five routes of a catalog table: list, create, get, change, delete."""
    return {
        f"/api/v1/{kind}": {
            "post": {
                "summary": f"Create a {singular} ({summary})",
                "security": _bearer,
                "requestBody": _json_body(f"{schema}Input"),
                "responses": {
                    "201": {"description": f"created; Location names the new {singular}",
                            "content": _json(_schema(schema))},
                    "400": _error, "401": _error, "403": _error, "413": _error,
                    "415": _error, "422": _error},
            },
            "get": {"summary": f"List {kind}", "security": _bearer,
                    "responses": {"200": {"description": f"{{{kind}: [{schema}]}}",
                                          "content": _json(_listed(kind, schema))},
                                  "401": _error, "403": _error}},
        },
        f"/api/v1/{kind}/{{row_id}}": {
            "parameters": [_row_path_param],
            "get": {"summary": f"A {singular}", "security": _bearer,
                    "responses": {"200": {"description": schema,
                                          "content": _json(_schema(schema))},
                                  "401": _error, "403": _error, "404": _error}},
            "patch": {
                "summary": f"Change a {singular} (absent fields stay as they are)",
                "security": _bearer,
                "requestBody": {"required": True, "content": _json(
                    {"type": "object", "properties": fields,
                     "description": "any of the fields; absent ones are left alone"})},
                "responses": {"200": {"description": f"the changed {singular}",
                                      "content": _json(_schema(schema))},
                              "400": _error, "401": _error, "403": _error, "404": _error,
                              "413": _error, "415": _error, "422": _error},
            },
            "delete": {"summary": f"Delete a {singular}", "security": _bearer,
                       "responses": {"204": {"description": "deleted"}, "401": _error,
                                     "403": _error, "404": _error}},
        },
    }


_name = {"type": "string", "minLength": 1, "maxLength": 200}
_text = {"type": "string", "maxLength": 2000}
_time = {"type": ["number", "null"], "description": "unix time in seconds (2000 … 2100)"}
_unit_fields = {"name": _name, "description": _text}
_course_fields = {"title": _name, "lecturer": {"type": "string", "maxLength": 200},
                  "unit_id": {"type": ["integer", "null"]}}
_site_fields = {"name": _name,
                "org_path": {**_text, "description": "levels separated by '/'"}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Zhixing Classroom API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "responses": {"Error": {"description": "error with a short text (for 422: every "
                                               "bad field and its message key)",
                                "content": {"application/json": {"schema": {
                                    "type": "object",
                                    "properties": {"error": {"type": "string"}}}}}}},
        "schemas": {
            "Session": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "title": {"type": "string"},
                    "course_id": {"type": ["integer", "null"]},
                    "course_title": {"type": ["string", "null"]},
                    "lecturer": {"type": ["string", "null"]},
                    "unit_name": {"type": ["string", "null"]},
                    "batch": {"type": "string"},
                    "scheduled_start": _time,
                    "scheduled_end": _time,
                    "video_codec": {"type": "string", "enum": ["H264", "VP8"]},
                    "state": {"type": "string", "enum": ["scheduled", "live", "ended"]},
                    "created_at": {"type": "number"},
                    "started_at": {"type": ["number", "null"]},
                    "ended_at": {"type": ["number", "null"]},
                    "publish_token": {"type": "string"},
                    "view_token": {"type": "string"},
                    "whip_url": {"type": "string"},
                    "whep_url": {"type": "string"},
                    "presenter_url": {"type": "string",
                                      "description": "the presenter page (主课堂), publish "
                                                     "token in the fragment"},
                    "stats": {"type": ["object", "null"],
                              "description": "live statistics (GET of one session only)"},
                },
            },
            "SessionInput": {
                "type": "object", "required": ["title"],
                "properties": {
                    "title": _name,
                    "course_id": {"type": ["integer", "null"]},
                    "batch": {"type": "string", "maxLength": 50},
                    "scheduled_start": _time,
                    "scheduled_end": {**_time, "description": "after scheduled_start"},
                    "video_codec": {"type": "string", "enum": ["H264", "VP8"],
                                    "default": "H264"},
                },
            },
            "SessionChange": {
                "type": "object",
                "description": "any of the fields; video_codec is fixed once created (422)",
                "properties": {
                    "title": _name,
                    "course_id": {"type": ["integer", "null"]},
                    "batch": {"type": "string", "maxLength": 50},
                    "scheduled_start": _time,
                    "scheduled_end": _time,
                },
            },
            "Unit": {
                "type": "object", "description": "专题: a theme that groups courses",
                "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                               "description": {"type": "string"},
                               "created_at": {"type": "number"}},
            },
            "UnitInput": {"type": "object", "required": ["name"], "properties": _unit_fields},
            "Course": {
                "type": "object", "description": "课程: a course, optionally in a unit",
                "properties": {"id": {"type": "integer"}, "title": {"type": "string"},
                               "lecturer": {"type": "string"},
                               "unit_id": {"type": ["integer", "null"]},
                               "unit_name": {"type": ["string", "null"]},
                               "created_at": {"type": "number"}},
            },
            "CourseInput": {"type": "object", "required": ["title"],
                            "properties": _course_fields},
            "Site": {
                "type": "object",
                "description": "分课堂: a sub-classroom; name and org_path are unique together",
                "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                               "org_path": {"type": "string",
                                            "description": "normalized: '北仑区 / 新碶街道'"},
                               "created_at": {"type": "number"}},
            },
            "SiteInput": {"type": "object", "required": ["name"], "properties": _site_fields},
            "Invitation": {
                "type": "object",
                "description": "a site's link to a session: signed, expiring, revocable",
                "properties": {
                    "id": {"type": "string"},
                    "session_id": {"type": "string"},
                    "site_id": {"type": "integer"},
                    "site_name": {"type": "string"},
                    "org_path": {"type": "string"},
                    "expires_at": {"type": "number"},
                    "revoked_at": {"type": ["number", "null"]},
                    "headcount": {"type": ["integer", "null"]},
                    "token": {"type": "string",
                              "description": "bearer token for WHEP of this session only"},
                    "url": {"type": "string", "description": "the /join/{token} link"},
                    "connected": {"type": "boolean",
                                  "description": "a viewer is connected with it (lists only)"},
                },
            },
            "InvitationInput": {
                "type": "object", "required": ["site_id"],
                "properties": {
                    "site_id": {"type": "integer"},
                    "expires_at": {**_time, "description": "in the future; default 30 days "
                                                           "after the scheduled end"},
                },
            },
        },
    },
    "paths": {
        "/api/v1/openapi.json": {"get": {"summary": "This document",
                                         "responses": {"200": {"description": "OpenAPI"}}}},
        "/i18n/{lang}.json": {"get": {
            "summary": "The message catalog of a language (zh-CN, en) used by the pages",
            "parameters": [{"name": "lang", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": ["zh-CN", "en"]}}],
            "responses": {"200": {"description": "{key: text}"}, "404": _error}}},
        "/api/v1/rtc-config": {"get": {
            "summary": "ICE servers for pages (the deployment's own STUN/TURN)",
            "responses": {"200": {"description": "{iceServers: [...]}"}}}},
        "/api/v1/me": {"get": {
            "summary": "Who is calling. Like every admin operation it also accepts the "
                       "login cookie zhixing_session (from POST /login) instead of the "
                       "bearer token; with the cookie, POST/PATCH/PUT/DELETE need "
                       "X-CSRF-Token",
            "security": _bearer,
            "responses": {"200": {"description": "the caller; csrf_token (to send as "
                                                 "X-CSRF-Token with POST/PATCH/PUT/DELETE) "
                                                 "only for a cookie login", "content":
                                  _json({"type": "object",
                                         "required": ["username", "csrf_token"],
                                         "properties": {
                                             "username": {"type": ["string", "null"]},
                                             "csrf_token": {"type": ["string", "null"]}}})},
                          "401": _error, "403": _error}}},
        "/api/v1/sessions": {
            "post": {
                "summary": "Create a session",
                "security": _bearer,
                "requestBody": _json_body("SessionInput"),
                "responses": {"201": {"description": "created", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Session"}}}},
                    "400": _error, "401": _error, "403": _error, "413": _error,
                    "415": _error, "422": _error},
            },
            "get": {"summary": "List sessions", "security": _bearer,
                    "responses": {"200": {"description": "{sessions: [Session]}",
                                          "content": _json(_listed("sessions", "Session"))},
                                  "401": _error, "403": _error}},
        },
        "/api/v1/sessions/{session_id}": {
            "parameters": [_session_path_param],
            "get": {"summary": "A session with live stats", "security": _bearer,
                    "responses": {"200": {"description": "Session with stats", "content": {
                        "application/json": {"schema": {
                            "$ref": "#/components/schemas/Session"}}}},
                        "401": _error, "403": _error, "404": _error}},
            "patch": {
                "summary": "Change a session's title, course, batch or schedule",
                "security": _bearer,
                "requestBody": _json_body("SessionChange"),
                "responses": {"200": {"description": "the changed session",
                                      "content": _json(_schema("Session"))},
                              "400": _error, "401": _error, "403": _error, "404": _error,
                              "413": _error, "415": _error, "422": _error},
            },
            "delete": {"summary": "End a session and disconnect everyone", "security": _bearer,
                       "responses": {"204": {"description": "ended"}, "401": _error,
                                     "403": _error, "404": _error}},
        },
        "/api/v1/sessions/{session_id}/start": {
            "parameters": [_session_path_param],
            "post": {"summary": "Mark a scheduled session live", "security": _bearer,
                     "responses": {"200": {"description": "the session",
                                           "content": _json(_schema("Session"))},
                                   "401": _error, "403": _error, "404": _error,
                                   "422": _error}},
        },
        "/api/v1/sessions/{session_id}/invitations": {
            "parameters": [_session_path_param],
            "post": {
                "summary": "Invite a site: a new link (replaces the site's previous one, "
                           "whose viewers are disconnected)",
                "security": _bearer,
                "requestBody": _json_body("InvitationInput"),
                "responses": {"201": {"description": "the invitation with its link",
                                      "content": _json(_schema("Invitation"))},
                              "400": _error, "401": _error, "403": _error, "404": _error,
                              "413": _error, "415": _error,
                              "422": {**_error, "description": "bad fields, or the session "
                                                               "has ended"}},
            },
            "get": {"summary": "The session's invitations, with who is connected",
                    "security": _bearer,
                    "responses": {"200": {"description": "{invitations: [Invitation]}",
                                          "content": _json(_listed("invitations",
                                                                   "Invitation"))},
                                  "401": _error, "403": _error, "404": _error}},
        },
        # presenter page (web/presenter_page.py)
        "/api/v1/sessions/{session_id}/presence": {
            "parameters": [_session_path_param],
            "get": {
                "summary": "Who is in: the publisher, connected viewers and every invited "
                           "site (connected ones have a viewer with its link). The "
                           "session's publish token or the admin token",
                "security": _bearer,
                "responses": {"200": {"description": "presence", "content": _json({
                    "type": "object",
                    "required": ["state", "publisher_connected", "viewer_count", "sites"],
                    "properties": {
                        "title": {"type": "string"},
                        "state": {"type": "string", "enum": ["scheduled", "live", "ended"]},
                        "publisher_connected": {"type": "boolean"},
                        "viewer_count": {"type": "integer",
                                         "description": "connected viewers, with or "
                                                        "without an invitation"},
                        "sites": {"type": "array", "items": {
                            "type": "object",
                            "properties": {
                                "invitation_id": {"type": "string"},
                                "site_name": {"type": "string"},
                                "org_path": {"type": "string"},
                                "connected": {"type": "boolean"},
                                "connected_viewers": {"type": "integer"},
                                "headcount": {"type": ["integer", "null"]}}}}}})},
                    "401": _error,
                    "403": {**_error, "description": "a view token, an invitation link or "
                                                     "another session's publish token"},
                    "404": _error},
            },
        },
        "/api/v1/invitations/{invitation_id}": {
            "parameters": [_invitation_path_param],
            "delete": {"summary": "Revoke an invitation and disconnect its viewers",
                       "security": _bearer,
                       "responses": {"204": {"description": "revoked"}, "401": _error,
                                     "403": _error, "404": _error}},
        },
        # -- admin console (web/console_page.py)
        "/api/v1/invitations/{invitation_id}/qr.svg": {
            "parameters": [_invitation_path_param],
            "get": {"summary": "The invitation link as a QR code (SVG, drawn by the server)",
                    "security": _bearer,
                    "responses": {"200": {"description": "the QR code",
                                          "content": {"image/svg+xml": {
                                              "schema": {"type": "string"}}}},
                                  "401": _error, "403": _error, "404": _error}},
        },
        # -- end admin console
        **_crud("units", "unit", "Unit", "专题", _unit_fields),
        **_crud("courses", "course", "Course", "课程", _course_fields),
        **_crud("sites", "site", "Site", "分课堂", _site_fields),
        "/api/v1/sites/import": {
            "post": {
                "summary": "Import sites from CSV (UTF-8, BOM allowed, header name,org_path): "
                           "every row or none",
                "security": _bearer,
                "requestBody": {"required": True, "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "text/plain": {"schema": {"type": "string"}}}},
                "responses": {
                    "201": {"description": "imported", "content": _json({
                        "type": "object",
                        "properties": {"imported": {"type": "integer"},
                                       "sites": {"type": "array",
                                                 "items": _schema("Site")}}})},
                    "400": {**_error, "description": "not UTF-8"}, "401": _error,
                    "403": _error, "413": _error, "415": _error,
                    "422": {**_error, "description": "bad rows (each named 'row N') or "
                                                     "no header or no rows"}},
            },
        },
        # --- the room page (分课堂): bearer = the room's invitation token ---
        "/api/v1/room": {"get": {
            "summary": "The room of the invitation token: its session, site and headcount "
                       "(for the room page)",
            "security": _bearer,
            "responses": {"200": {"description": "the room", "content": _json({
                "type": "object",
                "properties": {
                    "session_id": {"type": "string"},
                    "title": {"type": "string"},
                    "course_title": {"type": ["string", "null"]},
                    "lecturer": {"type": ["string", "null"]},
                    "site_name": {"type": "string"},
                    "org_path": {"type": "string"},
                    "state": {"type": "string", "enum": ["scheduled", "live", "ended"]},
                    "scheduled_start": _time,
                    "scheduled_end": _time,
                    "publisher_connected": {"type": "boolean",
                                            "description": "the program is on air (a live "
                                                           "publisher or a replay playing)"},
                    "program_failed": {"type": "boolean",
                                       "description": "a replay could not be played"},
                    "replay": {"type": "boolean", "description": "a replay session"},
                    "max_headcount": {"type": "integer",
                                      "description": "the largest headcount accepted"},
                    "timeshift_available": {"type": "boolean",
                                            "description": "on air and being recorded: the "
                                                           "room may watch from the start"},
                    "headcount": {"type": ["integer", "null"]},
                }})},
                "401": _error, "403": _error, "410": _error}}},
        "/api/v1/room/headcount": {"post": {
            "summary": "Report how many people are in the room (到场人数), with the room's "
                       "invitation token",
            "security": _bearer,
            "requestBody": {"required": True, "content": _json({
                "type": "object", "required": ["count"],
                "properties": {"count": {"type": "integer", "minimum": 0,
                                         "maximum": 500}}})},
            "responses": {"204": {"description": "stored"}, "400": _error, "401": _error,
                          "403": _error, "410": _error, "413": _error, "415": _error,
                          "422": _error}}},
        "/whip/{session_id}": {"parameters": [_session_path_param],
                               **_sdp_endpoint(
                                   "whip", "Publish (WHIP, RFC 9725). The session's "
                                   "publish token publishes the program; a room's "
                                   "invitation token publishes only that room's uplink "
                                   "(its camera and microphone for questions, one per "
                                   "invitation, a new one replacing the old), which "
                                   "reaches nobody until it is put on stage")},
        "/whip/{session_id}/{resource_id}": {"parameters": _resource_path_params,
                                             **_resource_endpoint("WHIP")},
        "/whep/{session_id}": {"parameters": [_session_path_param],
                               **_sdp_endpoint("whep", "View (WHEP)")},
        "/whep/{session_id}/{resource_id}": {"parameters": _resource_path_params,
                                             **_resource_endpoint("WHEP")},
    },
}


# ---------------------------------------------------------------------- archive

_item_path_param = {"name": "item_id", "in": "path", "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"}}
_reader: list[dict[str, list[str]]] = [{"bearer": []}, {"libraryCookie": []}]

OPENAPI["components"]["securitySchemes"]["libraryCookie"] = {
    "type": "apiKey", "in": "cookie", "name": "zhixing_library",
    "description": "set by opening a library link /library/k/{token}; the token also "
                   "works as a bearer token"}
OPENAPI["components"]["schemas"].update({
    "ArchiveItem": {
        "type": "object",
        "description": "课程录像: one lecture, recorded from a session or imported",
        "properties": {
            "id": {"type": "string"},
            "session_id": {"type": ["string", "null"]},
            "course_id": {"type": ["integer", "null"]},
            "course_title": {"type": ["string", "null"]},
            "unit_id": {"type": ["integer", "null"]},
            "unit_name": {"type": ["string", "null"]},
            "title": {"type": "string"},
            "lecturer": {"type": "string"},
            "description": {"type": "string"},
            "recorded_at": {"type": "number"},
            "origin": {"type": "string", "enum": ["recording", "import"]},
            "state": {"type": "string", "enum": ["recording", "finishing", "ready", "failed"]},
            "failure": {"type": ["string", "null"], "description": "why it failed"},
            "progress": {"type": "number", "description": "finishing progress, 0 to 1"},
            "duration": {"type": ["number", "null"], "description": "seconds"},
            "size": {"type": ["integer", "null"], "description": "bytes of the media file"},
            "video_codec": {"type": ["string", "null"]},
            "audio_codec": {"type": ["string", "null"]},
            "width": {"type": ["integer", "null"]},
            "height": {"type": ["integer", "null"]},
            "media_url": {"type": ["string", "null"],
                          "description": "the lecture file (HTTP Range), once ready"},
            "poster_url": {"type": ["string", "null"]},
            "mime_type": {"type": ["string", "null"]},
            "stage_url": {"type": ["string", "null"],
                          "description": "the rooms' pictures on stage (研讨), their turns "
                                         "one after another; their sound is in the media"},
            "stage": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "at": {"type": "number", "description": "seconds into the lecture"},
                    "offset": {"type": "number", "description": "seconds into the stage file"},
                    "duration": {"type": "number"},
                    "site_name": {"type": ["string", "null"]},
                    "org_path": {"type": ["string", "null"]}}}},
            "created_at": {"type": "number"},
        },
    },
    "ArchiveItemChange": {
        "type": "object",
        "properties": {
            "title": _name,
            "lecturer": _name,
            "description": {"type": "string", "maxLength": 2000},
            "course_id": {"type": ["integer", "null"]},
            "recorded_at": _time,
        },
    },
    "Recording": {
        "type": "object",
        "description": "a running recording",
        "properties": {
            "item_id": {"type": "string"},
            "started_at": {"type": "number"},
            "duration": {"type": "number", "description": "seconds recorded so far"},
            "bytes": {"type": "integer"},
            "segments": {"type": "integer",
                         "description": "a new one per publisher reconnect or size change"},
            "restarts": {"type": "integer", "description": "writer failures recovered"},
            "notices": {"type": "array", "items": {"type": "object", "properties": {
                "at": {"type": "number"}, "kind": {"type": "string"},
                "message": {"type": "string"}}}},
        },
    },
    "LibraryLink": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "label": {"type": "string"},
            "expires_at": {"type": ["number", "null"]},
            "revoked_at": {"type": ["number", "null"]},
            "created_at": {"type": "number"},
            "token": {"type": "string", "description": "only when created"},
            "url": {"type": "string", "description": "only when created"},
        },
    },
})
OPENAPI["components"]["schemas"]["Session"]["properties"]["recording"] = {
    "oneOf": [_schema("Recording"), {"type": "null"}]}
OPENAPI["paths"].update({
    "/api/v1/sessions/{session_id}/recording": {
        "parameters": [_session_path_param],
        "post": {"summary": "Start recording the session into a new archive item",
                 "security": _bearer,
                 "responses": {"201": {"description": "the new item (state recording)",
                                       "content": _json(_schema("ArchiveItem"))},
                               "401": _error, "403": _error, "404": _error,
                               "409": {"description": "already recording, or the session "
                                                      "has ended"}}},
        "get": {"summary": "The running recording", "security": _bearer,
                "responses": {"200": {"description": "running",
                                      "content": _json(_schema("Recording"))},
                              "401": _error, "403": _error,
                              "404": {"description": "no such session, or not recording"}}},
        "delete": {"summary": "Stop recording; the item is finished in the background",
                   "security": _bearer,
                   "responses": {"200": {"description": "the item (state finishing)",
                                         "content": _json(_schema("ArchiveItem"))},
                                 "401": _error, "403": _error, "404": _error,
                                 "409": {"description": "not recording"}}},
    },
    "/api/v1/archive": {"get": {
        "summary": "List archive items (readers see ready items only)",
        "security": _reader,
        "parameters": [
            {"name": "state", "in": "query", "schema": {
                "type": "string", "enum": ["recording", "finishing", "ready", "failed"]}},
            {"name": "unit_id", "in": "query", "schema": {"type": "integer"}},
            {"name": "course_id", "in": "query", "schema": {"type": "integer"}},
            {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 100},
             "description": "search in title, lecturer and course"}],
        "responses": {"200": {"description": "{items: [ArchiveItem]}",
                              "content": _json(_listed("items", "ArchiveItem"))},
                      "401": _error, "403": _error, "422": _error}}},
    "/api/v1/archive/{item_id}": {
        "parameters": [_item_path_param],
        "get": {"summary": "One archive item", "security": _reader,
                "responses": {"200": {"description": "the item",
                                      "content": _json(_schema("ArchiveItem"))},
                              "401": _error, "403": _error, "404": _error}},
        "patch": {"summary": "Edit an item's metadata", "security": _bearer,
                  "requestBody": _json_body("ArchiveItemChange"),
                  "responses": {"200": {"description": "the changed item",
                                        "content": _json(_schema("ArchiveItem"))},
                                "400": _error, "401": _error, "403": _error, "404": _error,
                                "413": _error, "415": _error, "422": _error}},
        "delete": {"summary": "Delete an item and its files", "security": _bearer,
                   "responses": {"204": {"description": "deleted"}, "401": _error,
                                 "403": _error, "404": _error,
                                 "409": {"description": "still recording or finishing"}}},
    },
    "/archive/{item_id}/media": {
        "parameters": [_item_path_param],
        "get": {"summary": "The lecture file (MP4 or WebM); supports Range",
                "security": _reader,
                "responses": {"200": {"description": "the whole file"},
                              "206": {"description": "the requested range"},
                              "401": _error, "403": _error, "404": _error,
                              "416": {"description": "range out of bounds"}}},
    },
    "/archive/{item_id}/stage": {
        "parameters": [_item_path_param],
        "get": {"summary": "The stage file: the rooms brought on stage, turn after turn "
                           "(same container as the lecture); supports Range",
                "security": _reader,
                "responses": {"200": {"description": "the whole file"},
                              "206": {"description": "the requested range"},
                              "401": _error, "403": _error, "404": _error,
                              "416": {"description": "range out of bounds"}}},
    },
    "/archive/{item_id}/poster.jpg": {
        "parameters": [_item_path_param],
        "get": {"summary": "The poster picture", "security": _reader,
                "responses": {"200": {"description": "JPEG"}, "401": _error, "403": _error,
                              "404": _error}},
    },
    "/api/v1/library-links": {
        "post": {"summary": "A new library link for cadres", "security": _bearer,
                 "requestBody": {"required": True, "content": _json({
                     "type": "object", "required": ["label"],
                     "properties": {"label": _name, "expires_at": _time}})},
                 "responses": {"201": {"description": "the link, with its token and URL",
                                       "content": _json(_schema("LibraryLink"))},
                               "400": _error, "401": _error, "403": _error, "413": _error,
                               "415": _error, "422": _error}},
        "get": {"summary": "Library links", "security": _bearer,
                "responses": {"200": {"description": "{links: [LibraryLink]} (no tokens)",
                                      "content": _json(_listed("links", "LibraryLink"))},
                              "401": _error, "403": _error}},
    },
    "/api/v1/library-links/{link_id}": {
        "parameters": [{"name": "link_id", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "delete": {"summary": "Revoke a library link", "security": _bearer,
                   "responses": {"204": {"description": "revoked"}, "401": _error,
                                 "403": _error, "404": _error}},
    },
})


# ---------------------------------------------------------------------- replay (重播)

OPENAPI["components"]["schemas"]["Replay"] = {
    "type": "object",
    "description": "the program of a replay session: an archive item played as if live",
    "properties": {
        "item_id": {"type": ["string", "null"]},
        "item_title": {"type": ["string", "null"]},
        "state": {"type": "string", "enum": ["waiting", "playing", "paused", "ended", "failed"]},
        "position": {"type": "number", "description": "seconds into the lecture"},
        "duration": {"type": ["number", "null"]},
        "error": {"type": ["string", "null"], "description": "why it failed"},
        "starts_at": {"type": ["number", "null"],
                      "description": "the scheduled start, while waiting"},
    },
}
OPENAPI["components"]["schemas"]["Session"]["properties"]["replay"] = {
    "oneOf": [_schema("Replay"), {"type": "null"}], "description": "null for a live session"}
OPENAPI["components"]["schemas"]["SessionInput"]["properties"]["replay_item_id"] = {
    "type": ["string", "null"],
    "description": "replay this archive item (重播) instead of a live publisher: it must be "
                   "ready and sendable (H.264 or VP8 without B-frames, Opus audio), else 422; "
                   "the session takes its codec, title and course; it starts by itself at "
                   "scheduled_start, or with the replay action start"}
OPENAPI["paths"]["/api/v1/sessions/{session_id}/replay"] = {
    "parameters": [_session_path_param],
    "post": {
        "summary": "Control a replay session: start now, pause, resume, seek",
        "security": _bearer,
        "requestBody": {"required": True, "content": _json({
            "type": "object", "required": ["action"],
            "properties": {
                "action": {"type": "string", "enum": ["start", "pause", "resume", "seek"]},
                "position": {"type": "number", "minimum": 0,
                             "description": "seconds (seek): playback goes on from the "
                                            "keyframe at or before it"}}})},
        "responses": {"200": {"description": "the replay", "content": _json(_schema("Replay"))},
                      "400": _error, "401": _error, "403": _error, "404": _error,
                      "409": {"description": "not a replay session, or not in a state for "
                                             "this action"},
                      "413": _error, "415": _error, "422": _error}},
}

OPENAPI["paths"]["/api/v1/room/timeshift"] = {"post": {
    "summary": "Timeshift (时移): this room's viewer watches the lecture from its beginning "
               "(served from the recording in progress), or goes back to live; with the "
               "room's invitation token",
    "security": _bearer,
    "requestBody": {"required": True, "content": _json({
        "type": "object", "required": ["mode", "resource"],
        "properties": {"mode": {"type": "string", "enum": ["start", "live"]},
                       "resource": {"type": "string",
                                    "description": "the id of this room's WHEP resource "
                                                   "(the last part of its Location)"}}})},
    "responses": {"200": {"description": "the viewer's mode", "content": _json({
        "type": "object", "properties": {
            "mode": {"type": "string", "enum": ["live", "timeshift"]},
            "position": {"type": ["number", "null"],
                         "description": "seconds into the lecture (timeshift)"}}})},
        "400": _error, "401": _error, "403": _error,
        "404": {"description": "no such viewer of this room"},
        "409": {"description": "the session is not being recorded"},
        "410": _error, "413": _error, "415": _error, "422": _error}}}


# ---------------------------------------------------------------------- attendance (出勤)

_threshold = {"type": "integer", "minimum": 1, "maximum": 100, "default": 80,
              "description": "a room attended if connected at least this percent of the "
                             "session (its scheduled window, else its actual start to end)"}
for _schema_name in ("Session", "SessionInput", "SessionChange"):
    OPENAPI["components"]["schemas"][_schema_name]["properties"][
        "attendance_threshold"] = _threshold
OPENAPI["paths"]["/api/v1/room/headcount"]["post"]["requestBody"]["content"][
    "application/json"]["schema"]["properties"]["count"]["description"] = \
    "at most --max-headcount (default 500); a new report corrects the last one"

_format_param = {"name": "format", "in": "query",
                 "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"},
                 "description": "csv: a streamed download, UTF-8 with BOM (opens in Excel), "
                                "named in Content-Disposition filename*"}
_utc_offset_param = {"name": "utc_offset", "in": "query",
                     "schema": {"type": "integer", "minimum": -720, "maximum": 840},
                     "description": "minutes east of UTC for dates and clock times "
                                    "(480 in China); default: the server's time zone"}
_unit_path_param = {"name": "unit_id", "in": "path", "required": True,
                    "schema": {"type": "integer", "minimum": 1}}
_district_params = [
    {"name": "prefix", "in": "query", "schema": {"type": "string", "maxLength": 200},
     "description": "org path prefix matched on whole parts ('北仑区' matches "
                    "'北仑区 / 新碶街道', not '北仑区二'); empty: every site"},
    {"name": "from", "in": "query", "required": True,
     "schema": {"type": "string", "format": "date"}, "description": "first day"},
    {"name": "to", "in": "query", "required": True,
     "schema": {"type": "string", "format": "date"},
     "description": "last day (included); from ≤ to, less than a year after from"},
    _utc_offset_param]
_totals: dict[str, Any] = {"type": "object", "properties": {
    name: {"type": "integer"} for name in (
        "sessions", "sites", "rooms_invited", "rooms_connected", "rooms_attended",
        "person_times", "attended_without_headcount")},
    "description": "rooms_* count (session, site) pairs; person_times (人次) sums the "
                   "latest headcounts of attended rooms"}
_group = {"type": "object", "properties": {"name": {"type": "string"}, **_totals["properties"]}}
_svg_response = {"200": {"description": "SVG image (drawn on the server)",
                         "content": {"image/svg+xml": {"schema": {"type": "string"}}}},
                 "401": _error, "403": _error}

OPENAPI["components"]["schemas"]["SiteAttendance"] = {
    "type": "object",
    "description": "one invited site's attendance: intervals as the server saw its WHEP "
                   "connections (ended_by 'restart': cut at the server's last sign of life)",
    "properties": {
        "invitation_id": {"type": "string"},
        "site_id": {"type": "integer"},
        "site_name": {"type": "string"},
        "org_path": {"type": "string"},
        "revoked": {"type": "boolean"},
        "intervals": {"type": "array", "items": {"type": "object", "properties": {
            "connected_at": {"type": "number"},
            "disconnected_at": {"type": ["number", "null"], "description": "null: connected"},
            "ended_by": {"type": ["string", "null"], "enum": ["left", "restart", None]}}}},
        "connected": {"type": "boolean", "description": "connected now"},
        "connected_seconds": {"type": "number",
                              "description": "union of the intervals inside the window "
                                             "(overlapping reconnects count once)"},
        "share": {"type": ["number", "null"], "description": "of the window, 0 … 1"},
        "attended": {"type": "boolean"},
        "reconnects": {"type": "integer"},
        "headcount": {"type": ["integer", "null"], "description": "the latest report"},
        "headcount_reported_at": {"type": ["number", "null"]},
        "headcount_history": {"type": "array", "items": {"type": "object", "properties": {
            "count": {"type": "integer"}, "reported_at": {"type": "number"}}}},
        "person_times": {"type": "integer", "description": "headcount if attended, else 0"},
    },
}
OPENAPI["components"]["schemas"]["SessionAttendance"] = {
    "type": "object",
    "properties": {
        "session_id": {"type": "string"},
        "title": {"type": "string"},
        "threshold": {"type": "integer"},
        "now": {"type": "number"},
        "window": {"type": ["object", "null"], "properties": {
            "start": {"type": "number"}, "end": {"type": "number"},
            "duration": {"type": "number"}, "scheduled": {"type": "boolean"}}},
        "invitations": {"type": "array", "items": _schema("SiteAttendance")},
        "totals": _totals,
        "timeline": {"type": "array", "items": {"type": "array"},
                     "description": "[time, rooms connected from then on]"},
    },
}
OPENAPI["paths"].update({
    "/api/v1/sessions/{session_id}/attendance": {
        "parameters": [_session_path_param],
        "get": {"summary": "A session's attendance (出勤) per invited site, with totals; "
                           "?format=csv downloads it",
                "security": _bearer, "parameters": [_format_param, _utc_offset_param],
                "responses": {"200": {"description": "attendance (JSON), or CSV",
                                      "content": {**_json(_schema("SessionAttendance")),
                                                  "text/csv": {"schema": {"type": "string"}}}},
                              "401": _error, "403": _error, "404": _error, "422": _error}},
    },
    "/api/v1/sessions/{session_id}/attendance/chart.svg": {
        "parameters": [_session_path_param],
        "get": {"summary": "Timeline of rooms connected over the session", "security": _bearer,
                "parameters": [_utc_offset_param],
                "responses": {**_svg_response, "404": _error, "422": _error}},
    },
    "/api/v1/reports/units/{unit_id}": {
        "parameters": [_unit_path_param],
        "get": {"summary": "A unit's (专题) attendance across its sessions, and per district "
                           "(first part of the org path); ?format=csv: one row per session",
                "security": _bearer, "parameters": [_format_param, _utc_offset_param],
                "responses": {"200": {"description": "report", "content": {
                    **_json({"type": "object", "properties": {
                        "unit": {"type": "object"},
                        "sessions": {"type": "array", "items": {"type": "object"}},
                        "districts": {"type": "array", "items": _group},
                        "totals": _totals}}),
                    "text/csv": {"schema": {"type": "string"}}}},
                    "401": _error, "403": _error, "404": _error, "422": _error}},
    },
    "/api/v1/reports/units/{unit_id}/chart.svg": {
        "parameters": [_unit_path_param],
        "get": {"summary": "Person-times per district of a unit (bar chart)",
                "security": _bearer, "responses": {**_svg_response, "404": _error}},
    },
    "/api/v1/reports/districts": {
        "get": {"summary": "Attendance per district: sites under an org path prefix, sessions "
                           "in a date range, summed per the path part below the prefix; "
                           "?format=csv: one row per (session, site), streamed",
                "security": _bearer, "parameters": [*_district_params, _format_param],
                "responses": {"200": {"description": "report", "content": {
                    **_json({"type": "object", "properties": {
                        "prefix": {"type": "string"}, "from": {"type": "string"},
                        "to": {"type": "string"},
                        "groups": {"type": "array", "items": _group},
                        "totals": _totals}}),
                    "text/csv": {"schema": {"type": "string"}}}},
                    "401": _error, "403": _error,
                    "422": {**_error, "description": "bad dates (from > to, a year or more "
                                                     "apart), prefix or format"}}},
    },
    "/api/v1/reports/districts/chart.svg": {
        "get": {"summary": "Person-times per district (bar chart) for the same query",
                "security": _bearer, "parameters": _district_params,
                "responses": {**_svg_response, "422": _error}},
    },
})


# ---------------------------------------------------------------------- room wall, metrics

_quality = {
    "type": ["object", "null"],
    "description": "how the site's viewer receives (null when not connected): from its "
                   "RTCP receiver reports and the bytes sent to it",
    "properties": {
        "bitrate": {"type": ["number", "null"],
                    "description": "bits/s sent, between two snapshots (null at first)"},
        "fraction_lost": {"type": ["number", "null"],
                          "description": "0 to 1, video, over the last report's interval"},
        "packets_lost": {"type": "integer", "description": "cumulative, all tracks"},
        "rtt": {"type": ["number", "null"], "description": "seconds"},
        "jitter": {"type": ["number", "null"], "description": "seconds, video"},
        "frames_sent": {"type": "integer", "description": "video frames"},
        "nacks": {"type": "integer"},
        "keyframe_requests": {"type": "integer"},
        "overflows": {"type": "integer"},
    },
}
OPENAPI["components"]["schemas"]["WallSnapshot"] = {
    "type": "object",
    "description": "监控墙: a session and every invited site, problems first",
    "properties": {
        "type": {"type": "string", "enum": ["snapshot"]},
        "at": {"type": "number", "description": "server time of the snapshot"},
        "session": {"type": "object", "properties": {
            "id": {"type": "string"}, "title": {"type": "string"},
            "state": {"type": "string", "enum": ["scheduled", "live", "ended"]},
            "scheduled_start": {"type": ["number", "null"]},
            "scheduled_end": {"type": ["number", "null"]},
            "started_at": {"type": ["number", "null"]},
            "on_air": {"type": "boolean"},
            "publisher_connected": {"type": "boolean"},
            "replay": {"type": ["string", "null"], "description": "a replay's state"},
            "recording": {"type": "boolean"},
            "ingress": {"type": "object", "description": "video and audio: frames, bytes, "
                                                         "keyframes, fps, bitrate (bits/s)"}}},
        "summary": {"type": "object", "properties": {
            "invited": {"type": "integer"}, "connected": {"type": "integer"},
            "problems": {"type": "integer", "description": "sites at level 2 or more"},
            "late": {"type": "integer"},
            "headcount": {"type": "integer", "description": "reported by connected sites"},
            "viewers": {"type": "integer", "description": "connected viewers"},
            "other_viewers": {"type": "integer",
                              "description": "connected viewers without an invitation "
                                             "(the session's view token)"},
            "hands": {"type": "integer", "description": "hands raised (举手)"},
            "open_questions": {"type": "integer", "description": "questions not yet answered"},
            "cameras": {"type": "integer", "description": "rooms sending their camera"}}},
        "discussion": {"type": "object", "description": "研讨 as an admin sees it (read-only "
                                                        "here: moderation is the presenter's)",
                       "properties": {
            "locked": {"type": "boolean", "description": "questions locked"},
            "stage": {"type": ["object", "null"], "description": "{invitation_id, name}"},
            "hands": {"type": "array", "description": "in the order raised",
                      "items": {"type": "object"}},
            "questions": {"type": "array", "items": {"type": "object"},
                          "description": "the latest 200, in the order asked; text verbatim"},
            "questions_total": {"type": "integer"},
            "open_questions": {"type": "integer"},
            "uplinks": {"type": "array", "items": {"type": "object"},
                        "description": "rooms' cameras: present, connected, muted, on_stage"}}},
        "sites": {"type": "array", "items": {"type": "object", "properties": {
            "invitation_id": {"type": "string"}, "site_id": {"type": "integer"},
            "name": {"type": "string"}, "org_path": {"type": "string"},
            "connected": {"type": "boolean"},
            "viewers": {"type": "integer", "description": "connections of this link"},
            "connected_since": {"type": ["number", "null"]},
            "disconnected_since": {"type": ["number", "null"]},
            "reconnects": {"type": "integer",
                           "description": "connects after the first, since the server "
                                          "started"},
            "headcount": {"type": ["integer", "null"]},
            "headcount_at": {"type": ["number", "null"]},
            "quality": _quality,
            "discussion": {"type": "object", "description": "this room in the discussion",
                           "properties": {
                "hand": {"type": ["object", "null"],
                         "description": "{position in the queue, raised_at}"},
                "on_stage": {"type": "boolean"},
                "uplink": {"type": ["object", "null"],
                           "description": "{present, connected, muted}"},
                "questions": {"type": "integer"},
                "open_questions": {"type": "integer"}}},
            "problem": {"type": "object", "properties": {
                "level": {"type": "integer", "minimum": 0, "maximum": 3,
                          "description": "3 late; 2 dropped, loss > 5 %, RTT > 400 ms, "
                                         "no media while on air; 1 not connected yet; 0 ok"},
                "reason": {"type": ["string", "null"], "enum": [
                    "late", "dropped", "loss", "rtt", "no_media", "offline", None]},
                "reasons": {"type": "array", "items": {"type": "string"}}}}}}},
    },
}
OPENAPI["paths"]["/api/v1/sessions/{session_id}/wall/ws"] = {
    "parameters": [_session_path_param],
    "get": {
        "summary": "The room wall's WebSocket: a WallSnapshot (JSON text message) at once "
                   "and every 2 s; closed with code 4000 when the session ends, 1001 when "
                   "the server stops. Admin only: the bearer admin token, or the login "
                   "cookie with this server's Origin. Without an Upgrade header: one "
                   "snapshot as JSON",
        "security": _bearer,
        "responses": {"101": {"description": "WebSocket upgrade"},
                      "200": {"description": "one snapshot (no Upgrade header)",
                              "content": _json(_schema("WallSnapshot"))},
                      "401": _error, "403": _error, "404": _error}},
}
OPENAPI["components"]["securitySchemes"]["metricsToken"] = {
    "type": "http", "scheme": "bearer",
    "description": "the --metrics-token (ZHIXING_METRICS_TOKEN), for /metrics only"}
OPENAPI["paths"]["/metrics"] = {"get": {
    "summary": "Prometheus metrics (text format 0.0.4; names in docs/metrics.md). With the "
               "bearer admin token or metrics token; --metrics-listen also serves it without "
               "authentication on a separate address",
    "security": [{"bearer": []}, {"metricsToken": []}],
    "responses": {"200": {"description": "the metrics", "content": {
        "text/plain": {"schema": {"type": "string"}}}},
        "401": _error, "403": _error}}}


# ---------------------------------------------------------------------- discussion (研讨)

_hand = {"type": "object", "properties": {
    "invitation_id": {"type": "string"}, "name": {"type": "string"},
    "raised_at": {"type": "number"}}}
_question = {"type": "object", "properties": {
    "id": {"type": "integer"}, "invitation_id": {"type": "string"},
    "name": {"type": "string"},
    "text": {"type": "string", "description": "plain text as typed (stripped), never HTML"},
    "asked_at": {"type": "number"},
    "status": {"type": "string", "enum": ["open", "answered", "dismissed"]},
    "answer": {"type": ["string", "null"]}, "answered_at": {"type": ["number", "null"]}}}
_uplink = {"type": "object", "properties": {
    "invitation_id": {"type": "string"}, "name": {"type": "string"},
    "present": {"type": "boolean", "description": "an uplink is published"},
    "connected": {"type": "boolean"}, "muted": {"type": "boolean"},
    "on_stage": {"type": "boolean"}}}
OPENAPI["components"]["schemas"]["DiscussionState"] = {
    "type": "object",
    "description": "研讨 as one participant may see it. The presenter and admins see every "
                   "hand (in the order raised), question and uplink; a room sees the same "
                   "shape holding only its own hand, questions (with answers) and uplink, "
                   "plus who is on stage and whether questions are locked",
    "properties": {
        "session_id": {"type": "string"},
        "you": {"type": "object", "properties": {
            "role": {"type": "string", "enum": ["room", "presenter", "admin"]},
            "invitation_id": {"type": ["string", "null"]},
            "name": {"type": ["string", "null"]}}},
        "locked": {"type": "boolean", "description": "questions are closed"},
        "stage": {"type": ["object", "null"],
                  "description": "who is on stage: a room's uplink, or in a replay a "
                                 "recorded turn (no invitation, replayed: true)",
                  "properties": {
            "invitation_id": {"type": ["string", "null"]}, "name": {"type": "string"},
            "replayed": {"type": "boolean"}}},
        "hands": {"type": "array", "items": _hand},
        "questions": {"type": "array", "items": _question},
        "uplinks": {"type": "array", "items": _uplink},
    },
}
OPENAPI["paths"]["/api/v1/sessions/{session_id}/events/ws"] = {
    "parameters": [_session_path_param],
    "get": {
        "summary": "The room-events WebSocket (研讨: hands, questions, the stage). "
                   "Authentication: a room's invitation token, the session's publish token "
                   "(presenter) or the admin token, sent by a browser as a subprotocol "
                   "(new WebSocket(url, ['zhixing.events.v1', 'bearer.' + token]); the server "
                   "answers zhixing.events.v1) or by a script as Authorization: Bearer; or "
                   "the admin login cookie with this server's Origin. The view token is "
                   "refused (403). Server → client JSON texts: {type: 'state', state} on "
                   "connect; {type: 'event', event, state} when the recipient's view "
                   "changed; {type: 'ack' | 'error', ref, request, code, message} for each "
                   "client message (ref = the client's id). Client → server, room: "
                   "{type: 'hand', raised: bool} (6 a minute), {type: 'question', text} "
                   "(≤ 500 characters, 3 a minute, refused while locked); presenter and "
                   "admin: {type: 'answer', question_id, text} (≤ 1000), {type: 'dismiss', "
                   "question_id}, {type: 'stage', invitation_id | null}, {type: 'mute', "
                   "invitation_id, muted}, {type: 'lower_hand', invitation_id}, "
                   "{type: 'lower_all_hands'}, {type: "
                   "'lock_questions', locked}. Error codes: bad_json, bad_message, "
                   "unknown_type, forbidden, empty, too_long, too_large, rate_limited, "
                   "locked, not_found, unavailable, full; after 20 errors the socket closes "
                   "(1008). Closed with 4000 when the session ends, 4003 when the room's "
                   "invitation is revoked, 1001 when the server stops. Without an Upgrade "
                   "header: the caller's state once, as JSON",
        "security": _bearer,
        "responses": {"101": {"description": "WebSocket upgrade"},
                      "200": {"description": "the caller's view (no Upgrade header)",
                              "content": _json({"type": "object", "properties": {
                                  "type": {"type": "string", "enum": ["state"]},
                                  "state": _schema("DiscussionState")}})},
                      "401": _error, "403": _error, "404": _error, "410": _error}},
}
