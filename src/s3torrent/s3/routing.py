"""Request → endpoint: a pure router over a closed set of S3 operations.

One table says which IAM action each endpoint is, so the access check happens before any
handler runs and a new endpoint cannot forget it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final
from urllib.parse import unquote

from s3torrent.s3.errors import S3Error


class Endpoint(Enum):
    # (value, IAM action, scope) — scope "service", "bucket" or "object".

    # Members are singletons, equal only to themselves: hash them by identity too. Enum's
    # own hash is a Python call (it hashes the name), and a request hashes its endpoint
    # several times (handlers, the sets of endpoints that read or refuse something).
    __hash__ = object.__hash__

    ListBuckets = ("ListBuckets", "s3:ListAllMyBuckets", "service")
    CreateBucket = ("CreateBucket", "s3:CreateBucket", "bucket")
    HeadBucket = ("HeadBucket", "s3:ListBucket", "bucket")
    DeleteBucket = ("DeleteBucket", "s3:DeleteBucket", "bucket")
    GetBucketLocation = ("GetBucketLocation", "s3:GetBucketLocation", "bucket")
    GetBucketVersioning = ("GetBucketVersioning", "s3:GetBucketVersioning", "bucket")
    PutBucketVersioning = ("PutBucketVersioning", "s3:PutBucketVersioning", "bucket")
    GetObjectLockConfiguration = (
        "GetObjectLockConfiguration",
        "s3:GetBucketObjectLockConfiguration",
        "bucket",
    )
    PutObjectLockConfiguration = (
        "PutObjectLockConfiguration",
        "s3:PutBucketObjectLockConfiguration",
        "bucket",
    )
    GetBucketLogging = ("GetBucketLogging", "s3:GetBucketLogging", "bucket")
    # Features never configurable here, read as never configured (ops/unconfigured.py).
    GetBucketWebsite = ("GetBucketWebsite", "s3:GetBucketWebsite", "bucket")
    DeleteBucketWebsite = ("DeleteBucketWebsite", "s3:DeleteBucketWebsite", "bucket")
    GetBucketReplication = ("GetBucketReplication", "s3:GetReplicationConfiguration", "bucket")
    # S3 has no action of its own for this: the Put action covers it.
    DeleteBucketReplication = (
        "DeleteBucketReplication",
        "s3:PutReplicationConfiguration",
        "bucket",
    )
    GetBucketNotificationConfiguration = (
        "GetBucketNotificationConfiguration",
        "s3:GetBucketNotification",
        "bucket",
    )
    PutBucketNotificationConfiguration = (
        "PutBucketNotificationConfiguration",
        "s3:PutBucketNotification",
        "bucket",
    )
    GetBucketRequestPayment = ("GetBucketRequestPayment", "s3:GetBucketRequestPayment", "bucket")
    PutBucketRequestPayment = ("PutBucketRequestPayment", "s3:PutBucketRequestPayment", "bucket")
    GetBucketAccelerateConfiguration = (
        "GetBucketAccelerateConfiguration",
        "s3:GetAccelerateConfiguration",
        "bucket",
    )
    # Configurations named by id, never configurable here, read as none (ops/unconfigured.py).
    # S3 has no Delete or List action of their own: the Put and Get actions cover them.
    GetBucketAnalyticsConfiguration = (
        "GetBucketAnalyticsConfiguration",
        "s3:GetAnalyticsConfiguration",
        "bucket",
    )
    ListBucketAnalyticsConfigurations = (
        "ListBucketAnalyticsConfigurations",
        "s3:GetAnalyticsConfiguration",
        "bucket",
    )
    DeleteBucketAnalyticsConfiguration = (
        "DeleteBucketAnalyticsConfiguration",
        "s3:PutAnalyticsConfiguration",
        "bucket",
    )
    GetBucketInventoryConfiguration = (
        "GetBucketInventoryConfiguration",
        "s3:GetInventoryConfiguration",
        "bucket",
    )
    ListBucketInventoryConfigurations = (
        "ListBucketInventoryConfigurations",
        "s3:GetInventoryConfiguration",
        "bucket",
    )
    DeleteBucketInventoryConfiguration = (
        "DeleteBucketInventoryConfiguration",
        "s3:PutInventoryConfiguration",
        "bucket",
    )
    GetBucketMetricsConfiguration = (
        "GetBucketMetricsConfiguration",
        "s3:GetMetricsConfiguration",
        "bucket",
    )
    ListBucketMetricsConfigurations = (
        "ListBucketMetricsConfigurations",
        "s3:GetMetricsConfiguration",
        "bucket",
    )
    DeleteBucketMetricsConfiguration = (
        "DeleteBucketMetricsConfiguration",
        "s3:PutMetricsConfiguration",
        "bucket",
    )
    GetBucketIntelligentTieringConfiguration = (
        "GetBucketIntelligentTieringConfiguration",
        "s3:GetIntelligentTieringConfiguration",
        "bucket",
    )
    ListBucketIntelligentTieringConfigurations = (
        "ListBucketIntelligentTieringConfigurations",
        "s3:GetIntelligentTieringConfiguration",
        "bucket",
    )
    DeleteBucketIntelligentTieringConfiguration = (
        "DeleteBucketIntelligentTieringConfiguration",
        "s3:PutIntelligentTieringConfiguration",
        "bucket",
    )
    PutBucketLogging = ("PutBucketLogging", "s3:PutBucketLogging", "bucket")
    ListObjects = ("ListObjects", "s3:ListBucket", "bucket")
    ListObjectsV2 = ("ListObjectsV2", "s3:ListBucket", "bucket")
    ListObjectVersions = ("ListObjectVersions", "s3:ListBucketVersions", "bucket")
    DeleteObjects = ("DeleteObjects", "s3:DeleteObject", "bucket")
    GetBucketAcl = ("GetBucketAcl", "s3:GetBucketAcl", "bucket")
    PutBucketAcl = ("PutBucketAcl", "s3:PutBucketAcl", "bucket")
    GetBucketPolicy = ("GetBucketPolicy", "s3:GetBucketPolicy", "bucket")
    PutBucketPolicy = ("PutBucketPolicy", "s3:PutBucketPolicy", "bucket")
    DeleteBucketPolicy = ("DeleteBucketPolicy", "s3:DeleteBucketPolicy", "bucket")
    GetPublicAccessBlock = ("GetPublicAccessBlock", "s3:GetBucketPublicAccessBlock", "bucket")
    PutPublicAccessBlock = ("PutPublicAccessBlock", "s3:PutBucketPublicAccessBlock", "bucket")
    DeletePublicAccessBlock = (
        "DeletePublicAccessBlock",
        "s3:PutBucketPublicAccessBlock",
        "bucket",
    )
    ListMultipartUploads = ("ListMultipartUploads", "s3:ListBucketMultipartUploads", "bucket")
    GetBucketTagging = ("GetBucketTagging", "s3:GetBucketTagging", "bucket")
    GetBucketPolicyStatus = ("GetBucketPolicyStatus", "s3:GetBucketPolicyStatus", "bucket")
    PutBucketTagging = ("PutBucketTagging", "s3:PutBucketTagging", "bucket")
    DeleteBucketTagging = ("DeleteBucketTagging", "s3:PutBucketTagging", "bucket")
    GetBucketOwnershipControls = (
        "GetBucketOwnershipControls",
        "s3:GetBucketOwnershipControls",
        "bucket",
    )
    PutBucketOwnershipControls = (
        "PutBucketOwnershipControls",
        "s3:PutBucketOwnershipControls",
        "bucket",
    )
    DeleteBucketOwnershipControls = (
        "DeleteBucketOwnershipControls",
        "s3:PutBucketOwnershipControls",
        "bucket",
    )
    GetBucketCors = ("GetBucketCors", "s3:GetBucketCORS", "bucket")
    PutBucketCors = ("PutBucketCors", "s3:PutBucketCORS", "bucket")
    DeleteBucketCors = ("DeleteBucketCors", "s3:PutBucketCORS", "bucket")
    # A browser form upload: its key and signer are in the form, so its PutObject decision
    # is asked by the handler once the fields before the file are read.
    PostObject = ("PostObject", "s3:PutObject", "bucket")
    GetBucketEncryption = ("GetBucketEncryption", "s3:GetEncryptionConfiguration", "bucket")
    PutBucketEncryption = ("PutBucketEncryption", "s3:PutEncryptionConfiguration", "bucket")
    DeleteBucketEncryption = (
        "DeleteBucketEncryption",
        "s3:PutEncryptionConfiguration",
        "bucket",
    )
    GetBucketLifecycleConfiguration = (
        "GetBucketLifecycleConfiguration",
        "s3:GetLifecycleConfiguration",
        "bucket",
    )
    PutBucketLifecycleConfiguration = (
        "PutBucketLifecycleConfiguration",
        "s3:PutLifecycleConfiguration",
        "bucket",
    )
    # S3 has no action of its own for this: the Put action covers it.
    DeleteBucketLifecycle = ("DeleteBucketLifecycle", "s3:PutLifecycleConfiguration", "bucket")
    PutObject = ("PutObject", "s3:PutObject", "object")
    CopyObject = ("CopyObject", "s3:PutObject", "object")
    GetObject = ("GetObject", "s3:GetObject", "object")
    HeadObject = ("HeadObject", "s3:GetObject", "object")
    DeleteObject = ("DeleteObject", "s3:DeleteObject", "object")
    GetObjectAcl = ("GetObjectAcl", "s3:GetObjectAcl", "object")
    PutObjectAcl = ("PutObjectAcl", "s3:PutObjectAcl", "object")
    GetObjectTorrent = ("GetObjectTorrent", "s3:GetObject", "object")
    CreateMultipartUpload = ("CreateMultipartUpload", "s3:PutObject", "object")
    UploadPart = ("UploadPart", "s3:PutObject", "object")
    UploadPartCopy = ("UploadPartCopy", "s3:PutObject", "object")
    CompleteMultipartUpload = ("CompleteMultipartUpload", "s3:PutObject", "object")
    AbortMultipartUpload = ("AbortMultipartUpload", "s3:AbortMultipartUpload", "object")
    ListParts = ("ListParts", "s3:ListMultipartUploadParts", "object")
    GetObjectTagging = ("GetObjectTagging", "s3:GetObjectTagging", "object")
    PutObjectTagging = ("PutObjectTagging", "s3:PutObjectTagging", "object")
    DeleteObjectTagging = ("DeleteObjectTagging", "s3:DeleteObjectTagging", "object")
    GetObjectAttributes = ("GetObjectAttributes", "s3:GetObjectAttributes", "object")
    GetObjectRetention = ("GetObjectRetention", "s3:GetObjectRetention", "object")
    PutObjectRetention = ("PutObjectRetention", "s3:PutObjectRetention", "object")
    GetObjectLegalHold = ("GetObjectLegalHold", "s3:GetObjectLegalHold", "object")
    PutObjectLegalHold = ("PutObjectLegalHold", "s3:PutObjectLegalHold", "object")

    def __init__(self, op: str, action: str, scope: str) -> None:
        self.op = op
        self.action = action
        self.scope = scope

    def action_for(self, query: Mapping[str, str]) -> str:
        """The IAM action of a request: an operation on a named version (?versionId=) is
        its own action (s3:GetObjectVersion, s3:DeleteObjectVersion, ...), as in S3."""
        if "versionId" in query:
            return VERSION_ACTIONS.get(self, self.action)
        return self.action


# The action of each operation when it names a version (S3's *Version actions; retention
# and legal hold keep theirs).
VERSION_ACTIONS: Mapping[Endpoint, str] = {
    Endpoint.GetObject: "s3:GetObjectVersion",
    Endpoint.HeadObject: "s3:GetObjectVersion",
    Endpoint.DeleteObject: "s3:DeleteObjectVersion",
    Endpoint.GetObjectAcl: "s3:GetObjectVersionAcl",
    Endpoint.PutObjectAcl: "s3:PutObjectVersionAcl",
    Endpoint.GetObjectTagging: "s3:GetObjectVersionTagging",
    Endpoint.PutObjectTagging: "s3:PutObjectVersionTagging",
    Endpoint.DeleteObjectTagging: "s3:DeleteObjectVersionTagging",
    Endpoint.GetObjectAttributes: "s3:GetObjectVersionAttributes",
}


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request points: bucket and key (both decoded), style of addressing."""

    bucket: str | None
    key: str | None
    virtual_host: bool


# Sub-resources that select another operation when present in the query: those of S3's API
# (botocore's model, 2026-12) that have no route here are refused as NotImplemented, never
# taken for the plain request (a PUT of `?renameObject` or `?encryption` as a PutObject
# would overwrite the object with the request's body). tests/unit/test_routing.py walks
# the model of the botocore installed.
_BUCKET_SUBRESOURCES = {
    "abac", "accelerate", "analytics", "cors", "encryption", "intelligent-tiering",
    "inventory", "lifecycle", "logging", "metadataConfiguration", "metadataInventoryTable",
    "metadataJournalTable", "metadataTable", "metrics", "notification", "replication",
    "requestPayment", "website", "session",
}  # fmt: skip
_OBJECT_SUBRESOURCES = {"encryption", "renameObject", "restore", "select"}
# Bucket features that cannot be configured here: read as never configured
# (ops/unconfigured.py), their PUT refused as not implemented.
NEVER_CONFIGURED = (
    "website",
    "replication",
    "notification",
    "accelerate",
    "analytics",
    "inventory",
    "metrics",
    "intelligent-tiering",
)
# Of those, the configurations a bucket holds by id: GET with an id reads one, GET without
# one lists them, DELETE deletes one.
BY_ID = {
    "analytics": (
        Endpoint.GetBucketAnalyticsConfiguration,
        Endpoint.ListBucketAnalyticsConfigurations,
        Endpoint.DeleteBucketAnalyticsConfiguration,
    ),
    "inventory": (
        Endpoint.GetBucketInventoryConfiguration,
        Endpoint.ListBucketInventoryConfigurations,
        Endpoint.DeleteBucketInventoryConfiguration,
    ),
    "metrics": (
        Endpoint.GetBucketMetricsConfiguration,
        Endpoint.ListBucketMetricsConfigurations,
        Endpoint.DeleteBucketMetricsConfiguration,
    ),
    "intelligent-tiering": (
        Endpoint.GetBucketIntelligentTieringConfiguration,
        Endpoint.ListBucketIntelligentTieringConfigurations,
        Endpoint.DeleteBucketIntelligentTieringConfiguration,
    ),
}
# A write (PUT, POST, DELETE) whose query names a parameter without a value that is none of
# the routed sub-resources is refused too: it asks for an operation this server does not
# know (one S3 added after this list), and must not be taken for a plain write.
_WRITE_METHODS = frozenset({"PUT", "POST", "DELETE"})
# Parameters that always carry a value: an empty one is the handler's to refuse, with its own
# error (as are X-Amz-* signature parameters).
_VALUED_PARAMETERS = frozenset({"versionId", "uploadId", "partNumber", "x-id"})


def _refuse_unknown_operation(q: Mapping[str, str], scope: str) -> None:
    for name, value in q.items():
        # A sub-resource is one by its name, whatever its value: `DELETE /bucket?location=1`
        # was taken for DeleteBucket, `PUT /bucket/key?torrent=1` for PutObject.
        if name not in _SELECTORS and (
            value or name in _VALUED_PARAMETERS or name.lower().startswith("x-amz-")
        ):
            continue
        raise S3Error("NotImplemented", f"The {scope} operation '?{name}' is not implemented.")


def parse_target(raw_path: str, host: str | None, domain: str | None) -> Target:
    """Split the request path (and Host, for virtual-hosted style) into bucket and key."""
    path = raw_path.split("?", 1)[0]
    try:
        decoded = unquote(path, errors="strict")
    except UnicodeDecodeError as exc:
        raise S3Error("InvalidURI", "Couldn't parse the specified URI.") from exc
    if not decoded.startswith("/"):
        raise S3Error("InvalidURI", "Couldn't parse the specified URI.")
    if domain and host:
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        hostname = hostname.lower()
        suffix = "." + domain.lower()
        if hostname.endswith(suffix) and len(hostname) > len(suffix):
            bucket = hostname[: -len(suffix)]
            key = decoded[1:]
            return Target(bucket=bucket, key=key or None, virtual_host=True)
    rest = decoded[1:]
    if not rest:
        return Target(bucket=None, key=None, virtual_host=False)
    bucket, sep, key = rest.partition("/")
    return Target(bucket=bucket, key=key if sep and key else None, virtual_host=False)


def route(
    method: str, target: Target, query: Mapping[str, str], headers: Mapping[str, str]
) -> Endpoint:
    """The endpoint a request asks for; NotImplemented / MethodNotAllowed otherwise."""
    m = method.upper()
    if target.bucket is None:
        if m in ("GET", "HEAD"):
            return Endpoint.ListBuckets
        raise S3Error("MethodNotAllowed", resource="/")
    if target.key is None:
        return _route_bucket(m, query)
    return _route_object(m, query, headers)


def _refuse_conflicts(q: Mapping[str, str], selectors: frozenset[str]) -> None:
    """Two sub-resources name two operations: S3 refuses the request (400 InvalidArgument,
    "Conflicting query string parameters: acl, versioning", the first named under
    ResourceType) rather than pick one; the router took the first in its table and dropped
    the other. partNumber beside any but uploadId conflicts too (it selects GetObject's
    part)."""
    named = [name for name in q if name in selectors]
    if "partNumber" in q and named and named != ["uploadId"]:
        named.append("partNumber")
    if len(named) > 1:
        named.sort()
        raise S3Error(
            "InvalidArgument",
            f"Conflicting query string parameters: {', '.join(named)}",
            extra={"ArgumentName": "ResourceType", "ArgumentValue": named[0]},
        )


def _refuse_object_parameters(q: Mapping[str, str]) -> None:
    """A part, an upload or a version belongs to an object, and a bucket's path names none: S3
    refuses `partNumber` there (InvalidRequest, whatever the method) and `versionId` (on its
    listings, DELETE and selectors alike). They were dropped, and the bucket operation left
    was not what was asked: `DELETE /bucket?versionId=v` (an empty key) deleted the bucket."""
    if "partNumber" in q or "uploadId" in q:
        raise S3Error("InvalidRequest", "Object must have a valid key name.")
    if "versionId" in q:
        raise S3Error(
            "InvalidArgument",
            "This operation does not accept a version-id.",
            extra={"ArgumentName": "versionId", "ArgumentValue": q["versionId"][:64]},
        )


def _route_bucket(m: str, q: Mapping[str, str]) -> Endpoint:
    _refuse_conflicts(q, _BUCKET_SELECTORS)
    _refuse_object_parameters(q)
    table: dict[tuple[str, str], Endpoint] = {
        ("GET", "location"): Endpoint.GetBucketLocation,
        ("GET", "versioning"): Endpoint.GetBucketVersioning,
        ("PUT", "versioning"): Endpoint.PutBucketVersioning,
        ("GET", "object-lock"): Endpoint.GetObjectLockConfiguration,
        ("PUT", "object-lock"): Endpoint.PutObjectLockConfiguration,
        ("GET", "versions"): Endpoint.ListObjectVersions,
        ("GET", "acl"): Endpoint.GetBucketAcl,
        ("PUT", "acl"): Endpoint.PutBucketAcl,
        ("GET", "policy"): Endpoint.GetBucketPolicy,
        ("PUT", "policy"): Endpoint.PutBucketPolicy,
        ("DELETE", "policy"): Endpoint.DeleteBucketPolicy,
        ("GET", "policyStatus"): Endpoint.GetBucketPolicyStatus,
        ("GET", "publicAccessBlock"): Endpoint.GetPublicAccessBlock,
        ("PUT", "publicAccessBlock"): Endpoint.PutPublicAccessBlock,
        ("DELETE", "publicAccessBlock"): Endpoint.DeletePublicAccessBlock,
        ("GET", "uploads"): Endpoint.ListMultipartUploads,
        ("GET", "tagging"): Endpoint.GetBucketTagging,
        ("PUT", "tagging"): Endpoint.PutBucketTagging,
        ("DELETE", "tagging"): Endpoint.DeleteBucketTagging,
        ("GET", "encryption"): Endpoint.GetBucketEncryption,
        ("PUT", "encryption"): Endpoint.PutBucketEncryption,
        ("DELETE", "encryption"): Endpoint.DeleteBucketEncryption,
        ("POST", "delete"): Endpoint.DeleteObjects,
        ("GET", "ownershipControls"): Endpoint.GetBucketOwnershipControls,
        ("PUT", "ownershipControls"): Endpoint.PutBucketOwnershipControls,
        ("DELETE", "ownershipControls"): Endpoint.DeleteBucketOwnershipControls,
        ("GET", "cors"): Endpoint.GetBucketCors,
        ("PUT", "cors"): Endpoint.PutBucketCors,
        ("DELETE", "cors"): Endpoint.DeleteBucketCors,
        ("GET", "lifecycle"): Endpoint.GetBucketLifecycleConfiguration,
        ("PUT", "lifecycle"): Endpoint.PutBucketLifecycleConfiguration,
        ("DELETE", "lifecycle"): Endpoint.DeleteBucketLifecycle,
        ("GET", "logging"): Endpoint.GetBucketLogging,
        ("PUT", "logging"): Endpoint.PutBucketLogging,
        ("GET", "website"): Endpoint.GetBucketWebsite,
        ("DELETE", "website"): Endpoint.DeleteBucketWebsite,
        ("GET", "replication"): Endpoint.GetBucketReplication,
        ("DELETE", "replication"): Endpoint.DeleteBucketReplication,
        ("GET", "notification"): Endpoint.GetBucketNotificationConfiguration,
        ("PUT", "notification"): Endpoint.PutBucketNotificationConfiguration,
        ("GET", "requestPayment"): Endpoint.GetBucketRequestPayment,
        ("PUT", "requestPayment"): Endpoint.PutBucketRequestPayment,
        ("GET", "accelerate"): Endpoint.GetBucketAccelerateConfiguration,
    }
    for (method, sub), endpoint in table.items():
        if m == method and sub in q:
            return endpoint
    if m in ("GET", "DELETE"):
        for sub, (get_one, list_all, delete) in BY_ID.items():
            if sub in q:
                if m == "DELETE":
                    return delete
                return get_one if "id" in q else list_all
    for sub in q:
        if sub in _BUCKET_SUBRESOURCES or sub in ("acl", "policy", "versioning", "uploads"):
            raise S3Error("NotImplemented", f"The bucket operation '?{sub}' is not implemented.")
    if m == "GET":
        return Endpoint.ListObjectsV2 if q.get("list-type") == "2" else Endpoint.ListObjects
    if m in _WRITE_METHODS:
        _refuse_unknown_operation(q, "bucket")
    simple = {
        "PUT": Endpoint.CreateBucket,
        "HEAD": Endpoint.HeadBucket,
        "DELETE": Endpoint.DeleteBucket,
        "POST": Endpoint.PostObject,
    }
    if m in simple:
        return simple[m]
    raise S3Error("MethodNotAllowed")


def _route_object(m: str, q: Mapping[str, str], h: Mapping[str, str]) -> Endpoint:
    _refuse_conflicts(q, _OBJECT_SELECTORS)
    if "uploadId" in q:
        if m == "PUT":
            return Endpoint.UploadPartCopy if "x-amz-copy-source" in h else Endpoint.UploadPart
        if m in _UPLOAD_BY_METHOD:
            return _UPLOAD_BY_METHOD[m]
        raise S3Error("MethodNotAllowed")
    if "partNumber" in q and m in _WRITE_METHODS:
        # A part of an upload whose uploadId went missing: S3 refuses it (it was taken for a
        # PutObject that overwrote the key with the part, or a DeleteObject).
        raise S3Error(
            "InvalidArgument",
            "This operation does not accept partNumber without uploadId",
            extra={"ArgumentName": "partNumber", "ArgumentValue": "partNumber"},
        )
    if "uploads" in q and m == "POST":
        return Endpoint.CreateMultipartUpload
    if "acl" in q:
        if m == "GET":
            return Endpoint.GetObjectAcl
        if m == "PUT":
            return Endpoint.PutObjectAcl
        raise S3Error("MethodNotAllowed")
    if "torrent" in q and m in ("GET", "HEAD"):
        return Endpoint.GetObjectTorrent
    if "attributes" in q:
        if m == "GET":
            return Endpoint.GetObjectAttributes
        raise S3Error("MethodNotAllowed")
    if "tagging" in q:
        if m in _TAGGING_BY_METHOD:
            return _TAGGING_BY_METHOD[m]
        raise S3Error("MethodNotAllowed")
    for (method, sub), endpoint in _OBJECT_LOCK.items():
        if sub in q:
            if m == method:
                return endpoint
            if m not in ("GET", "PUT"):
                raise S3Error("MethodNotAllowed")
    for sub in q:
        if sub in _OBJECT_SUBRESOURCES:
            raise S3Error("NotImplemented", f"The object operation '?{sub}' is not implemented.")
    if m in _WRITE_METHODS:
        _refuse_unknown_operation(q, "object")
    if m == "PUT":
        return Endpoint.CopyObject if "x-amz-copy-source" in h else Endpoint.PutObject
    if m in _OBJECT_BY_METHOD:
        return _OBJECT_BY_METHOD[m]
    raise S3Error("MethodNotAllowed")


# The query parameters that select an operation, at a bucket's path and at a key's.
_BUCKET_SELECTORS: Final = frozenset(
    {"location", "versioning", "object-lock", "versions", "acl", "policy", "policyStatus",
     "publicAccessBlock", "uploads", "tagging", "encryption", "delete", "ownershipControls",
     "cors", "lifecycle", "logging", "website", "replication", "notification",
     "requestPayment", "accelerate", *BY_ID, *_BUCKET_SUBRESOURCES}
)  # fmt: skip
_OBJECT_SELECTORS: Final = frozenset(
    {"uploadId", "uploads", "acl", "torrent", "attributes", "tagging", "retention",
     "legal-hold", *_OBJECT_SUBRESOURCES}
)  # fmt: skip


_SELECTORS: Final = _BUCKET_SELECTORS | _OBJECT_SELECTORS


# The tables _route_object picks from (built once, not per request).
_UPLOAD_BY_METHOD: Final = {
    "POST": Endpoint.CompleteMultipartUpload,
    "DELETE": Endpoint.AbortMultipartUpload,
    "GET": Endpoint.ListParts,
}
_TAGGING_BY_METHOD: Final = {
    "GET": Endpoint.GetObjectTagging,
    "PUT": Endpoint.PutObjectTagging,
    "DELETE": Endpoint.DeleteObjectTagging,
}
_OBJECT_LOCK: Final = {
    ("GET", "retention"): Endpoint.GetObjectRetention,
    ("PUT", "retention"): Endpoint.PutObjectRetention,
    ("GET", "legal-hold"): Endpoint.GetObjectLegalHold,
    ("PUT", "legal-hold"): Endpoint.PutObjectLegalHold,
}
_OBJECT_BY_METHOD: Final = {
    "GET": Endpoint.GetObject,
    "HEAD": Endpoint.HeadObject,
    "DELETE": Endpoint.DeleteObject,
}


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def check_bucket_name(name: str) -> None:
    """S3's general-purpose bucket naming rules; InvalidBucketName otherwise."""
    bad = (
        not _BUCKET_RE.match(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or _IP_RE.match(name) is not None
        or name.startswith(("xn--", "sthree-", "amzn-s3-demo-"))
        or name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"))
    )
    if bad:
        raise S3Error("InvalidBucketName", resource=name, extra={"BucketName": name})


def check_key(key: str) -> None:
    if len(key.encode("utf-8")) > 1024:
        raise S3Error(
            "KeyTooLongError", extra={"Size": str(len(key.encode())), "MaxSizeAllowed": "1024"}
        )
