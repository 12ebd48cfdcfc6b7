"""ListMultipartUploads: a bucket's uploads in progress, paged by key and upload id."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from s3torrent.s3 import xml as s3xml
from s3torrent.s3.context import S3Context
from s3torrent.s3.ops.buckets import owner_xml, xml_response
from s3torrent.s3.params import UploadListParams
from s3torrent.s3.server import S3Request
from s3torrent.store import rows as md


async def list_multipart_uploads(svc: S3Context, req: S3Request) -> web.StreamResponse:
    params = req.params
    assert isinstance(params, UploadListParams)
    prefix, delimiter = params.prefix, params.delimiter
    key_marker, upload_id_marker = params.key_marker, params.upload_id_marker
    max_uploads, url = params.max_uploads, params.url_encode

    def enc(value: str) -> str:
        return quote(value, safe="/") if url else value

    entries, truncated = await svc.meta.scan_uploads(
        req.bucket_name, prefix, delimiter, key_marker, upload_id_marker, max_uploads
    )
    uploads = [e for e in entries if isinstance(e, md.Upload)]
    prefixes = [e for e in entries if isinstance(e, str)]
    next_key = next_uid = None
    if truncated and entries:
        last = entries[-1]
        next_key = last.key if isinstance(last, md.Upload) else last
        next_uid = last.upload_id if isinstance(last, md.Upload) else ""
    result: dict[str, Any] = {
        "Bucket": req.bucket_name,
        "KeyMarker": enc(key_marker),
        "UploadIdMarker": upload_id_marker,
        "NextKeyMarker": enc(next_key) if next_key is not None else None,
        "NextUploadIdMarker": next_uid,
        "Delimiter": enc(delimiter) if delimiter else None,
        "Prefix": enc(prefix),
        "MaxUploads": max_uploads,
        "IsTruncated": truncated,
        "Upload": [
            {
                "Key": enc(up.key),
                "UploadId": up.upload_id,
                "Initiator": owner_xml(svc, up.initiator_id),
                "Owner": owner_xml(svc, up.owner_id),
                "StorageClass": up.headers.get("x-amz-storage-class", "STANDARD"),
                "Initiated": s3xml.iso8601(up.initiated),
                "ChecksumAlgorithm": up.checksum_algorithm,
                "ChecksumType": up.checksum_type,
            }
            for up in uploads
        ],
        "CommonPrefixes": [{"Prefix": enc(p)} for p in prefixes],
        "EncodingType": "url" if url else None,
    }
    return xml_response(s3xml.render("ListMultipartUploadsResult", result))
