"""What the server refuses rather than ignores: one table, checked once before any handler.

A request header or query parameter that changes what S3 does (object lock, encryption,
tagging, versions, storage classes, ...) and that this server does not act on is refused
with S3's error, never accepted and silently ignored: a client that asked for a retention
date or for encryption must learn that it did not get it. The README's "What is refused"
section is this table, rendered by `markdown_table` (a unit test keeps the two equal).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from s3torrent.access.ownership import BUCKET_OWNER_FULL_CONTROL, acls_disabled
from s3torrent.access.principals import ACCOUNT_ID
from s3torrent.s3.errors import S3Error
from s3torrent.s3.routing import Endpoint

E = Endpoint


@dataclass(frozen=True, slots=True)
class Refusal:
    """A header (or, with `in_query`, a query parameter) refused on `endpoints` (empty:
    on every request) unless its value is one of `accepted` (compared case-insensitively,
    or exactly with `exact_case`, where S3 refuses another spelling)."""

    name: str
    endpoints: frozenset[Endpoint]
    code: str
    message: str
    accepted: tuple[str, ...] = ()
    in_query: bool = False
    exact_case: bool = False

    def applies_to(self, endpoint: Endpoint) -> bool:
        return not self.endpoints or endpoint in self.endpoints

    def refuses(self, value: str) -> bool:
        if self.exact_case:
            return value.strip() not in self.accepted
        folded = value.strip().lower()
        return all(folded != ok.lower() for ok in self.accepted)


_OBJECT_WRITES = frozenset({E.PutObject, E.CopyObject, E.CreateMultipartUpload})
_NO_WRITE_CONDITIONS = frozenset(
    {E.CreateMultipartUpload, E.UploadPart, E.UploadPartCopy, E.AbortMultipartUpload}
)
# Writes S3 takes no condition on (it takes them on PutObject, CopyObject,
# CompleteMultipartUpload and DeleteObject): an object's sub-resources, and DeleteObjects,
# whose entries name their own <ETag>. One here was skipped (tags, a retention or a legal
# hold set on an object the client had not seen, keys deleted).
_UNCONDITIONAL_WRITES = frozenset(
    {E.PutObjectAcl, E.PutObjectTagging, E.DeleteObjectTagging, E.PutObjectRetention,
     E.PutObjectLegalHold, E.DeleteObjects}
)  # fmt: skip
_DATE_CONDITIONS_REFUSED = (
    frozenset({E.PutObject, E.CopyObject, E.CompleteMultipartUpload, E.DeleteObject})
    | _UNCONDITIONAL_WRITES
)
_NO_SSE = "SSE-KMS is not implemented; use SSE-S3 (AES256) or SSE-C."
_NO_DATE_CONDITION = "Date conditions on writes and deletes are not implemented."


def _sse(name: str) -> Refusal:
    return Refusal(name, frozenset(), "NotImplemented", _NO_SSE)


REFUSALS: tuple[Refusal, ...] = (
    Refusal(
        "x-amz-mfa",
        frozenset({E.DeleteObject, E.DeleteObjects}),
        "NotImplemented",
        "MFA delete is not implemented.",
    ),
    # A torrent belongs to a key's current version (S3's GetObjectTorrent names none); a
    # write makes a new version and names none (S3 refuses the parameter on those, UploadPart
    # too, whatever the value: it was taken for a plain write of a new version), and so does
    # the upload that will make one.
    Refusal(
        "versionId",
        frozenset(
            {
                E.GetObjectTorrent,
                E.PutObject,
                E.CopyObject,
                E.CreateMultipartUpload,
                E.CompleteMultipartUpload,
                E.UploadPart,
            }
        ),
        "InvalidArgument",
        "This operation does not accept a version-id.",
        in_query=True,
    ),
    Refusal(
        "x-amz-storage-class",
        _OBJECT_WRITES,
        "InvalidStorageClass",
        "The storage class you specified is not valid",
        accepted=("STANDARD", "REDUCED_REDUNDANCY"),
        # S3's names are upper case: `standard` is InvalidStorageClass there, and was stored
        # here as sent (and shown so by HEAD and listings).
        exact_case=True,
    ),
    Refusal(
        "x-amz-write-offset-bytes",
        frozenset({E.PutObject}),
        "NotImplemented",
        "Appending to an object is not implemented.",
    ),
    # A range of the source is UploadPartCopy's alone: a CopyObject carrying it copied the
    # whole object, which is not what its sender asked for.
    Refusal(
        "x-amz-copy-source-range",
        frozenset({E.CopyObject}),
        "InvalidArgument",
        "x-amz-copy-source-range is for UploadPartCopy; CopyObject copies the whole object.",
    ),
    # Every bucket is in the one namespace of this server, which is what "global" asks for.
    Refusal(
        "x-amz-bucket-namespace",
        frozenset({E.CreateBucket}),
        "NotImplemented",
        "Account regional bucket namespaces are not implemented; buckets are global.",
        accepted=("global",),
    ),
    # Encryption: SSE-S3 and SSE-C are implemented (s3/sse.py); SSE-KMS is not.
    _sse("x-amz-server-side-encryption-aws-kms-key-id"),
    _sse("x-amz-server-side-encryption-context"),
    # Conditions where S3 takes none, or of kinds not implemented: refused, never skipped.
    Refusal(
        "If-Match",
        _NO_WRITE_CONDITIONS | _UNCONDITIONAL_WRITES,
        "NotImplemented",
        "This operation takes no If-Match condition.",
    ),
    Refusal(
        "If-None-Match",
        _NO_WRITE_CONDITIONS | _UNCONDITIONAL_WRITES | {E.DeleteObject},
        "NotImplemented",
        "This operation takes no If-None-Match condition.",
    ),
    Refusal(
        "If-Modified-Since",
        _DATE_CONDITIONS_REFUSED,
        "NotImplemented",
        _NO_DATE_CONDITION,
    ),
    Refusal(
        "If-Unmodified-Since",
        _DATE_CONDITIONS_REFUSED,
        "NotImplemented",
        _NO_DATE_CONDITION,
    ),
    Refusal(
        "x-amz-if-match-last-modified-time",
        frozenset({E.DeleteObject}),
        "NotImplemented",
        _NO_DATE_CONDITION,
    ),
    Refusal(
        "x-amz-if-match-size",
        frozenset({E.DeleteObject}),
        "NotImplemented",
        "Size conditions on deletes are not implemented.",
    ),
    Refusal(
        "x-amz-if-match-initiated-time",
        frozenset({E.AbortMultipartUpload}),
        "NotImplemented",
        _NO_DATE_CONDITION,
    ),
)


def refuse_unsupported(
    endpoint: Endpoint,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    bucket_owner_id: str | None,
) -> None:
    """Raise S3's error for the first header or parameter of REFUSALS this request carries
    with a value that is not acted on; check `x-amz-expected-bucket-owner`."""
    for refusal in _refusals_of(endpoint):
        value = query.get(refusal.name) if refusal.in_query else headers.get(refusal.name)
        if value is not None and refusal.refuses(value):
            extra = {"ArgumentName": refusal.name, "ArgumentValue": value[:64]}
            raise S3Error(refusal.code, refusal.message, extra=extra)
    expected = headers.get("x-amz-expected-bucket-owner")
    if expected is not None and bucket_owner_id is not None:
        check_expected_owner(expected, bucket_owner_id)


@functools.cache
def _refusals_of(endpoint: Endpoint) -> tuple[Refusal, ...]:
    """The refusals that apply to `endpoint`, in table order (one entry per endpoint)."""
    return tuple(r for r in REFUSALS if r.applies_to(endpoint))


def check_expected_owner(expected: str, bucket_owner_id: str) -> None:
    """x-amz-expected-bucket-owner (or -source-): the bucket's owner, named by its canonical
    id or by the one account every user lives in; anything else is 403, as in S3."""
    if expected.strip() not in (bucket_owner_id, ACCOUNT_ID):
        raise S3Error("AccessDenied")


_GRANT_HEADERS = (
    "x-amz-grant-read",
    "x-amz-grant-write",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
    "x-amz-grant-full-control",
)
# Writes may still name the one canned ACL that says "the bucket owner controls it".
_SETS_ACL = frozenset(
    {E.PutObject, E.CopyObject, E.CreateMultipartUpload, E.PutObjectAcl, E.PutBucketAcl}
)


def refuse_acls(
    endpoint: Endpoint, headers: Mapping[str, str], bucket_settings: Mapping[str, Any] | None
) -> None:
    """With ACLs disabled (BucketOwnerEnforced), a request that would set an ACL is refused
    with AccessControlListNotSupported, as in S3; reading ACLs still works."""
    if endpoint not in _SETS_ACL or bucket_settings is None or not acls_disabled(bucket_settings):
        return
    canned = headers.get("x-amz-acl")
    if any(h in headers for h in _GRANT_HEADERS) or (
        canned is not None and canned.strip().lower() != BUCKET_OWNER_FULL_CONTROL
    ):
        # (An AccessControlPolicy body is checked by its handler, once parsed.)
        raise S3Error("AccessControlListNotSupported", "The bucket does not allow ACLs")


def _requests(refusal: Refusal) -> str:
    if not refusal.endpoints:
        return "every request"
    return ", ".join(sorted(e.op for e in refusal.endpoints))


def markdown_table() -> str:
    """REFUSALS as the README's table (one row each)."""
    lines = [
        "| Header or parameter | On | Answer | Accepted values |",
        "| --- | --- | --- | --- |",
    ]
    for r in REFUSALS:
        name = f"`?{r.name}=`" if r.in_query else f"`{r.name}`"
        status = S3Error(r.code).status
        accepted = ", ".join(f"`{v}`" for v in r.accepted) or "none"
        lines.append(f"| {name} | {_requests(r)} | {status} {r.code} | {accepted} |")
    return "\n".join(lines) + "\n"
