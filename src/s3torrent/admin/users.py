"""Admin API: users and their keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from s3torrent.admin.call import AdminCall
from s3torrent.s3.errors import S3Error
from s3torrent.store.rows import User
from s3torrent.store.users import UserError

# IAM's statuses for its error codes (the closest AWS has to a user API).
_STATUS = {"NoSuchEntity": 404, "EntityAlreadyExists": 409}


def user_json(user: User, *, secret: bool = False) -> dict[str, Any]:
    """A user as the API shows it; the secret key only when it was just made."""
    out: dict[str, Any] = {
        "name": user.name,
        "access_key": user.access_key,
        "canonical_id": user.canonical_id,
        "root": user.is_root,
        "admin": user.is_admin or user.is_root,
        "disabled": user.disabled,
        "created": datetime.fromtimestamp(user.created_at, UTC).isoformat(timespec="seconds"),
    }
    if secret:
        out["secret_key"] = user.secret_key
    return out


def user_failure(exc: UserError) -> S3Error:
    return S3Error(exc.code, str(exc), status=_STATUS.get(exc.code, 400))


async def list_users(call: AdminCall) -> web.StreamResponse:
    return web.json_response({"users": [user_json(u) for u in call.svc.users.all()]})


async def add_user(call: AdminCall) -> web.StreamResponse:
    body = call.json_body()
    name, admin = body.get("name"), body.get("admin", False)
    if not isinstance(name, str):
        raise S3Error("InvalidArgument", 'the body needs "name": a user name')
    if not isinstance(admin, bool):
        raise S3Error("InvalidArgument", '"admin" must be true or false')
    unknown = sorted(set(body) - {"name", "admin"})
    if unknown:
        raise S3Error("InvalidArgument", f"unknown fields: {', '.join(unknown)}")
    try:
        user = await call.svc.users.add(name, admin=admin)
    except UserError as exc:
        raise user_failure(exc) from None
    return web.json_response(user_json(user, secret=True), status=201)


def _named(call: AdminCall) -> User:
    user = call.svc.users.by_name(call.params["name"])
    if user is None:
        raise S3Error("NoSuchEntity", f"no user named {call.params['name']!r}", status=404)
    return user


async def get_user(call: AdminCall) -> web.StreamResponse:
    return web.json_response(user_json(_named(call)))


async def remove_user(call: AdminCall) -> web.StreamResponse:
    name = call.params["name"]
    try:
        await call.svc.users.remove(name)
    except UserError as exc:
        raise user_failure(exc) from None
    return web.json_response({"removed": name})


async def rotate_keys(call: AdminCall) -> web.StreamResponse:
    try:
        user = await call.svc.users.rotate(call.params["name"])
    except UserError as exc:
        raise user_failure(exc) from None
    return web.json_response(user_json(user, secret=True))


async def disable_user(call: AdminCall) -> web.StreamResponse:
    return await _set_disabled(call, True)


async def enable_user(call: AdminCall) -> web.StreamResponse:
    return await _set_disabled(call, False)


async def _set_disabled(call: AdminCall, disabled: bool) -> web.StreamResponse:
    try:
        user = await call.svc.users.set_disabled(call.params["name"], disabled)
    except UserError as exc:
        raise user_failure(exc) from None
    return web.json_response(user_json(user))
