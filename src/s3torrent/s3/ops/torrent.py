"""GetObjectTorrent: `GET /bucket/key?torrent` (and `&format=magnet`, `&magnet=btmh`,
`&format=html`: the WebTorrent download page)."""

from __future__ import annotations

import asyncio
import hashlib
from urllib.parse import quote

from aiohttp import web

from s3torrent.publication import Refusal, torrent_refusal
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.download_page import download_page_answer
from s3torrent.s3.params import ObjectReadParams
from s3torrent.s3.server import S3Request
from s3torrent.s3.validators import raise_failed_condition
from s3torrent.torrent.catalog import (
    MagnetForm,
    TorrentInfo,
    piece_hashes,
    stored_hashes,
    swarm_ids_stored,
)

EMPTY_OBJECT_MESSAGE = (
    "A zero-byte object has no torrent: there are no pieces to share, and most BitTorrent "
    "clients refuse or crash on a torrent of length 0. GET the object instead."
)
# How long `?torrent` waits for this process's decision on publishing the version (a few
# metadata reads and one commit); past it, the torrent file is served all the same.
PUBLICATION_WAIT = 5.0


# Not in a quoted `filename`: the quote and backslash (escapes), and `%`, which browsers
# percent-decode there (Chromium saved "100%41.bin.torrent" as "100A.bin.torrent"; RFC 6266
# appendix D). A name with any of them, or not ASCII, also gets the exact `filename*`.
_FALLBACK_UNSAFE = str.maketrans({c: "_" for c in '"\\%?'})


def content_disposition(name: str) -> str:
    """attachment; filename=NAME.torrent, with the RFC 6266/5987 `filename*` form as well
    whenever the plain one cannot carry the name exactly."""
    filename = name + ".torrent"
    ascii_name = filename.encode("ascii", "replace").decode("ascii").translate(_FALLBACK_UNSAFE)
    value = f'attachment; filename="{ascii_name}"'
    if ascii_name != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


async def torrent_info(svc: S3Context, req: S3Request) -> TorrentInfo:
    """The version's torrent info, waiting (bounded) for a background hashing job."""
    obj, bucket = req.obj, req.bucket
    assert obj is not None and bucket is not None
    refusal = torrent_refusal(svc.settings.torrent, bucket, obj, req.access_context())
    if refusal is Refusal.DISABLED:
        raise S3Error("NotImplemented", "BitTorrent is not enabled for this bucket.")
    if refusal is Refusal.TOO_LARGE:
        raise S3Error(
            "EntityTooLarge",
            f"Objects larger than {svc.settings.torrent.max_object_size} bytes have no torrent.",
            extra={"MaxSizeAllowed": str(svc.settings.torrent.max_object_size)},
        )
    if refusal is Refusal.NOT_PUBLIC:
        if req.principal.is_anonymous:
            raise S3Error("AccessDenied", resource=req.resource)
        raise S3Error(
            "NoSuchKey",
            "The object has no public torrent because it is not anonymously readable.",
            resource=req.resource,
            extra={"Key": req.key},
        )
    if obj.size == 0:
        raise S3Error("InvalidRequest", EMPTY_OBJECT_MESSAGE, resource=req.resource)
    stored = await svc.meta.torrent_hashes(obj.version_id)
    hashes = piece_hashes(obj, stored)
    if hashes is None or not svc.torrents.has_hashes_for_format(hashes):
        job = svc.hash_jobs.ensure(obj)
        try:
            hashes = await asyncio.wait_for(
                asyncio.shield(job), svc.settings.torrent.hash_wait_timeout
            )
        except TimeoutError:
            raise S3Error(
                "SlowDown",
                "The torrent of this object is still being computed; retry shortly.",
                headers={"Retry-After": "5"},
            ) from None
        info = svc.torrents.info_for(obj, hashes)
    else:
        info = svc.torrents.info_for(obj, hashes)
        if stored is not None and not swarm_ids_stored(stored, info):
            # Its info dictionary changed since the hashes were stored (another format, a
            # new rule for names): announces, handshakes and the web seed find a version by
            # the swarm ids stored, so they must be this torrent's (its record publishes).
            await svc.meta.record_hashes(obj, stored_hashes(info))
    if svc.publication_settled is not None:
        # Its swarm live before its torrent file is out (see PublicTorrents.settled).
        await svc.publication_settled(obj.version_id, obj.bucket, obj.key, PUBLICATION_WAIT)
    return info


def magnet_form(value: str | None, info: TorrentInfo) -> MagnetForm:
    """The `magnet=` parameter: `btih` (default, every client) or `btmh` (adds BEP 52's hash)."""
    if value is None or value == "btih":
        return "btih"
    if value == "btmh":
        if info.info_hash.v2 is None:
            raise S3Error(
                "InvalidArgument",
                "magnet=btmh needs a v2 or hybrid torrent; this one is v1 only.",
                extra={"ArgumentName": "magnet", "ArgumentValue": value},
            )
        return "btmh"
    raise S3Error(
        "InvalidArgument",
        "magnet must be btih or btmh.",
        extra={"ArgumentName": "magnet", "ArgumentValue": value[:64]},
    )


# The forms of `?torrent` besides the .torrent file (`format=`).
_FORMATS = (None, "magnet", "html")


def check_torrent_form(params: ObjectReadParams) -> None:
    """`format=` and `magnet=` name what is answered: another value, or `magnet=` without
    `format=magnet`, is refused rather than answered with the .torrent file."""
    if params.torrent_format not in _FORMATS:
        raise S3Error(
            "InvalidArgument",
            "format must be magnet or html (or absent, for the .torrent file).",
            extra={"ArgumentName": "format", "ArgumentValue": params.torrent_format[:64]},
        )
    if params.magnet_form is not None and params.torrent_format != "magnet":
        raise S3Error(
            "InvalidArgument",
            "magnet applies to format=magnet only.",
            extra={"ArgumentName": "magnet", "ArgumentValue": params.magnet_form[:64]},
        )


async def get_object_torrent(svc: S3Context, req: S3Request) -> web.StreamResponse:
    params = req.params
    assert isinstance(params, ObjectReadParams)
    check_torrent_form(params)
    info = await torrent_info(svc, req)
    assert req.bucket is not None
    base = svc.settings.base_url
    if params.torrent_format == "html":
        torrent = svc.settings.torrent
        body, headers = download_page_answer(
            info, torrent.webtorrent_script_url, torrent.webtorrent_ice_servers
        )
    elif params.torrent_format == "magnet":
        form = magnet_form(params.magnet_form, info)
        body = (svc.torrents.magnet(info, base, req.bucket.settings, form) + "\n").encode()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
    else:
        body = svc.torrents.torrent_file(info, base, req.bucket.settings)
        headers = {
            "Content-Type": "application/x-bittorrent",
            "Content-Disposition": content_disposition(info.name),
        }
    return conditional_answer(req, body, headers)


# What a 304 of a generated document carries of its 200 (RFC 9110 15.4.5).
_NOT_MODIFIED = ("ETag", "Cache-Control")


def conditional_answer(req: S3Request, body: bytes, headers: dict[str, str]) -> web.StreamResponse:
    """A generated document's answer (a .torrent, a magnet link, the download page) under
    the request's conditions: its ETag is its body's MD5, so a cache revalidating it with
    If-None-Match is told 304 while it is unchanged, and If-Match fails with 412 once it
    changed. It has no Last-Modified (it changes with the bucket's settings and the node's
    address as well as with the object), so the date conditions are ignored (RFC 9110
    13.1.3, 13.1.4)."""
    etag = '"' + hashlib.md5(body).hexdigest() + '"'
    headers["ETag"] = etag

    def not_modified() -> dict[str, str]:
        return {k: v for k in _NOT_MODIFIED if (v := headers.get(k)) is not None}

    raise_failed_condition(req.http.headers, etag, None, not_modified)
    if req.http.method == "HEAD":
        # A StreamResponse: web.Response refuses an explicit Content-Length without a body.
        resp = web.StreamResponse(status=200, headers=headers)
        resp.content_length = len(body)
        return resp
    return web.Response(status=200, body=body, headers=headers)
