"""The admin API's OpenAPI 3 description, written as data (tests match it to routes.py)."""

from __future__ import annotations

from typing import Any

from s3torrent.admin.routes import PREFIX


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_ERRORS = {
    "400": _json(_ref("Error"), "Invalid input"),
    "403": _json(_ref("Error"), "Unsigned, badly signed, replayed, disabled or not allowed"),
    "404": _json(_ref("Error"), "No such user or object"),
}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_BUCKET = {"name": "bucket", "in": "query", "schema": {"type": "string"}}
_FORMAT = {
    "name": "format",
    "in": "query",
    "schema": {"type": "string", "enum": ["json", "csv", "table"], "default": "json"},
}


def _op(operation: str, summary: str, ok: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"operationId": operation, "summary": summary, "responses": {**ok, **_ERRORS}, **more}


_USER_WITH_SECRET = {"allOf": [_ref("User"), _ref("Secret")]}

PATHS: dict[str, dict[str, Any]] = {
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This description (unsigned requests welcome)",
            "security": [],
            "responses": {"200": _json({"type": "object"})},
        }
    },
    "/info": {
        "get": _op(
            "info", "Version, uptime, settings summary, engines", {"200": _json(_ref("Info"))}
        )
    },
    "/users": {
        "get": _op(
            "listUsers",
            "Every user, without secrets",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"users": {"type": "array", "items": _ref("User")}},
                    }
                )
            },
        ),
        "post": _op(
            "addUser",
            "Create a user with new keys (the secret is shown this once)",
            {
                "201": _json(_USER_WITH_SECRET, "Created"),
                "409": _json(_ref("Error"), "The name is taken"),
            },
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": _ref("NewUser")}},
            },
        ),
    },
    "/users/{name}": {
        "parameters": [_NAME],
        "get": _op("getUser", "One user, without the secret", {"200": _json(_ref("User"))}),
        "delete": _op(
            "removeUser",
            "Remove a user; their keys stop working",
            {"200": _json({"type": "object", "properties": {"removed": {"type": "string"}}})},
        ),
    },
    "/users/{name}/rotate": {
        "parameters": [_NAME],
        "post": _op(
            "rotateKeys", "New keys; the old ones stop working", {"200": _json(_USER_WITH_SECRET)}
        ),
    },
    "/users/{name}/disable": {
        "parameters": [_NAME],
        "post": _op(
            "disableUser",
            "Refuse the user's keys (InvalidAccessKeyId)",
            {"200": _json(_ref("User"))},
        ),
    },
    "/users/{name}/enable": {
        "parameters": [_NAME],
        "post": _op("enableUser", "Accept the user's keys again", {"200": _json(_ref("User"))}),
    },
    "/usage": {
        "get": _op(
            "usage",
            "Usage per bucket and operation (AWS usage-report columns), of the buckets the "
            "caller may report on",
            {"200": _json({"type": "object"})},
            parameters=[
                {
                    "name": "from",
                    "in": "query",
                    "schema": {"type": "string", "example": "2024-05-01"},
                },
                {"name": "to", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "by",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["hour", "day"]},
                },
                _BUCKET,
                _FORMAT,
            ],
        )
    },
    "/savings": {
        "get": _op(
            "savings",
            "Per object: origin bytes by channel, swarm deliveries, offload, cost avoided",
            {"200": _json({"type": "object"})},
            parameters=[
                _BUCKET,
                {"name": "key", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "price-per-gb",
                    "in": "query",
                    "schema": {"type": "number", "default": 0.09},
                },
                _FORMAT,
            ],
        )
    },
    "/savings/history": {
        "get": _op(
            "savingsHistory",
            "Per period and bucket: bytes the origin sent torrent clients (web seed, seeder), "
            "plain GETs beside them, what the swarms' peers reported downloading, offload",
            {"200": _json({"type": "object"})},
            parameters=[
                {
                    "name": "from",
                    "in": "query",
                    "schema": {"type": "string", "example": "2024-05-01"},
                },
                {"name": "to", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "by",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["hour", "day"]},
                },
                _BUCKET,
                {
                    "name": "price-per-gb",
                    "in": "query",
                    "schema": {"type": "number", "default": 0.09},
                },
            ],
        )
    },
    "/torrent": {
        "get": _op(
            "showTorrent",
            "An object's torrent: state, info-hashes, pieces, magnet",
            {"200": _json(_ref("Torrent"))},
            parameters=[
                {**_BUCKET, "required": True},
                {"name": "key", "in": "query", "required": True, "schema": {"type": "string"}},
            ],
        )
    },
    "/torrent/swarm": {
        "get": _op(
            "showSwarm",
            "An object's live swarm: tracker peers, origin seeder, origin and peer bytes",
            {"200": _json(_ref("Swarm"))},
            parameters=[
                {**_BUCKET, "required": True},
                {"name": "key", "in": "query", "required": True, "schema": {"type": "string"}},
            ],
        )
    },
    "/torrent/rehash": {
        "post": _op(
            "rehash",
            "Queue hash jobs for current objects lacking piece hashes in the configured format",
            {
                "202": _json(
                    {
                        "type": "object",
                        "properties": {"queued": {"type": "integer"}, "bytes": {"type": "integer"}},
                    },
                    "Queued",
                )
            },
            parameters=[_BUCKET],
        )
    },
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "example": "AccessDenied"},
                    "message": {"type": "string"},
                    "request_id": {"type": "string"},
                },
            }
        },
    },
    "User": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "access_key": {"type": "string"},
            "canonical_id": {"type": "string"},
            "root": {"type": "boolean"},
            "admin": {"type": "boolean"},
            "disabled": {"type": "boolean"},
            "created": {"type": "string", "format": "date-time"},
        },
    },
    "Secret": {"type": "object", "properties": {"secret_key": {"type": "string"}}},
    "NewUser": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_.@+=,-]{1,64}$"},
            "admin": {"type": "boolean", "default": False},
        },
    },
    "Info": {
        "type": "object",
        "properties": {
            "version": {"type": "string"},
            "started": {"type": "string", "format": "date-time"},
            "uptime_seconds": {"type": "number"},
            "engines": {"type": "object", "additionalProperties": {"type": "string"}},
            "settings": {"type": "object"},
        },
    },
    "Torrent": {
        "type": "object",
        "properties": {
            "bucket": {"type": "string"},
            "key": {"type": "string"},
            "version": {"type": "string"},
            "size": {"type": "integer"},
            "state": {"type": "string", "example": "ready"},
            "format": {"type": "string", "enum": ["v1", "hybrid", "v2"]},
            "piece_length": {"type": "integer"},
            "piece_count": {"type": "integer"},
            "info_hash_v1": {"type": "string"},
            "info_hash_v2": {"type": "string"},
            "magnet": {"type": "string"},
        },
    },
    "Swarm": {
        "type": "object",
        "properties": {
            "bucket": {"type": "string"},
            "key": {"type": "string"},
            "state": {"type": "string", "example": "ready"},
            "tracker": {
                "type": "object",
                "description": "Peers announcing now (origins not counted); for a hybrid "
                "torrent the larger of its v1 and v2 swarms",
                "properties": {
                    "seeders": {"type": "integer"},
                    "leechers": {"type": "integer"},
                    "completed": {"type": "integer"},
                },
            },
            "seeder": {
                "type": "object",
                "description": "This node's origin seeder: open peer links and bytes sent",
                "properties": {
                    "connections": {"type": "integer"},
                    "bytes_sent": {"type": "integer"},
                },
            },
            "origin_bytes": {
                "type": "integer",
                "description": "Metered: GET, web seed, seeder (the bucket that has the name)",
            },
            "peer_bytes": {"type": "integer", "description": "Metered: what peers delivered"},
            "swarm_downloaded": {"type": "integer"},
            "name_history": {
                "type": "object",
                "description": "The same metered counts over every bucket the name had",
                "properties": {
                    "origin_bytes": {"type": "integer"},
                    "peer_bytes": {"type": "integer"},
                    "swarm_downloaded": {"type": "integer"},
                },
            },
        },
    },
}


def openapi_document(server_url: str, version: str) -> dict[str, Any]:
    """The description, with this server's URL."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "s3torrent admin API",
            "version": version,
            "description": "JSON in and out. Every request but this description is signed with "
            "AWS Signature Version 4 (service s3) by root or a user flagged admin; usage and "
            "savings answer any user for the buckets they may report on. A request that "
            "changes something is accepted once per signature. Errors are "
            '{"error": {"code", "message", "request_id"}} with the HTTP status S3 gives the code.',
        },
        "servers": [{"url": server_url.rstrip("/") + PREFIX}],
        "security": [{"sigv4": []}],
        "paths": PATHS,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "sigv4": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/s3/aws4_request",
                }
            },
        },
    }
