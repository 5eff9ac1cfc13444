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

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Zhixing Classroom API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "responses": {"Error": {"description": "error with a short text",
                                "content": {"application/json": {"schema": {
                                    "type": "object",
                                    "properties": {"error": {"type": "string"}}}}}}},
        "schemas": {
            "Session": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "title": {"type": "string"},
                    "video_codec": {"type": "string", "enum": ["H264", "VP8"]},
                    "state": {"type": "string", "enum": ["scheduled", "live", "ended"]},
                    "created_at": {"type": "number"},
                    "ended_at": {"type": ["number", "null"]},
                    "publish_token": {"type": "string"},
                    "view_token": {"type": "string"},
                    "whip_url": {"type": "string"},
                    "whep_url": {"type": "string"},
                    "stats": {"type": ["object", "null"]},
                },
            },
        },
    },
    "paths": {
        "/api/v1/openapi.json": {"get": {"summary": "This document",
                                         "responses": {"200": {"description": "OpenAPI"}}}},
        "/api/v1/rtc-config": {"get": {
            "summary": "ICE servers for pages (the deployment's own STUN/TURN)",
            "responses": {"200": {"description": "{iceServers: [...]}"}}}},
        "/api/v1/sessions": {
            "post": {
                "summary": "Create a session",
                "security": _bearer,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["title"],
                    "properties": {"title": {"type": "string", "maxLength": 200},
                                   "video_codec": {"type": "string", "enum": ["H264", "VP8"],
                                                   "default": "H264"}}}}}},
                "responses": {"201": {"description": "created", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Session"}}}},
                    "400": _error, "401": _error, "403": _error, "413": _error,
                    "415": _error, "422": _error},
            },
            "get": {"summary": "List sessions", "security": _bearer,
                    "responses": {"200": {"description": "{sessions: [Session]}"},
                                  "401": _error, "403": _error}},
        },
        "/api/v1/sessions/{session_id}": {
            "parameters": [_session_path_param],
            "get": {"summary": "A session with live stats", "security": _bearer,
                    "responses": {"200": {"description": "Session with stats", "content": {
                        "application/json": {"schema": {
                            "$ref": "#/components/schemas/Session"}}}},
                        "401": _error, "403": _error, "404": _error}},
            "delete": {"summary": "End a session and disconnect everyone", "security": _bearer,
                       "responses": {"204": {"description": "ended"}, "401": _error,
                                     "403": _error, "404": _error}},
        },
        "/whip/{session_id}": {"parameters": [_session_path_param],
                               **_sdp_endpoint("whip", "Publish (WHIP, RFC 9725)")},
        "/whip/{session_id}/{resource_id}": {"parameters": _resource_path_params,
                                             **_resource_endpoint("WHIP")},
        "/whep/{session_id}": {"parameters": [_session_path_param],
                               **_sdp_endpoint("whep", "View (WHEP)")},
        "/whep/{session_id}/{resource_id}": {"parameters": _resource_path_params,
                                             **_resource_endpoint("WHEP")},
    },
}
