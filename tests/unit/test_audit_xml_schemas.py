"""The schemas request bodies are checked against are S3's own (botocore's model of its API):
none refuses an element S3 defines, and an element S3 does not define is refused."""

from __future__ import annotations

from typing import Any

import pytest

from s3torrent.access.acl import ACL_SCHEMA
from s3torrent.s3 import xml as s3xml
from s3torrent.s3.cors import CORS_SCHEMA
from s3torrent.s3.errors import S3Error
from s3torrent.s3.lifecycle_xml import LIFECYCLE_SCHEMA
from s3torrent.s3.ops.deletes import DELETE_SCHEMA
from s3torrent.s3.ops.encryption import ENCRYPTION_SCHEMA
from s3torrent.s3.ops.lock import (
    LEGAL_HOLD_SCHEMA,
    LOCK_CONFIGURATION_SCHEMA,
    RETENTION_SCHEMA,
    VERSIONING_SCHEMA,
)
from s3torrent.s3.ops.logging import LOGGING_SCHEMA
from s3torrent.s3.ops.multipart import COMPLETE_SCHEMA
from s3torrent.s3.ops.ownership import OWNERSHIP_SCHEMA
from s3torrent.s3.tagging import TAGGING_SCHEMA

SCHEMAS: dict[str, tuple[str, s3xml.Schema]] = {
    "DeleteObjects": ("Delete", DELETE_SCHEMA),
    "CompleteMultipartUpload": ("CompleteMultipartUpload", COMPLETE_SCHEMA),
    "PutBucketVersioning": ("VersioningConfiguration", VERSIONING_SCHEMA),
    "PutObjectLockConfiguration": ("ObjectLockConfiguration", LOCK_CONFIGURATION_SCHEMA),
    "PutObjectRetention": ("Retention", RETENTION_SCHEMA),
    "PutObjectLegalHold": ("LegalHold", LEGAL_HOLD_SCHEMA),
    "PutObjectTagging": ("Tagging", TAGGING_SCHEMA),
    "PutBucketTagging": ("Tagging", TAGGING_SCHEMA),
    "PutBucketCors": ("CORSConfiguration", CORS_SCHEMA),
    "PutBucketEncryption": ("ServerSideEncryptionConfiguration", ENCRYPTION_SCHEMA),
    "PutBucketOwnershipControls": ("OwnershipControls", OWNERSHIP_SCHEMA),
    "PutBucketRequestPayment": ("RequestPaymentConfiguration", {"Payer": None}),
    "PutBucketLogging": ("BucketLoggingStatus", LOGGING_SCHEMA),
    "PutObjectAcl": ("AccessControlPolicy", ACL_SCHEMA),
    "PutBucketAcl": ("AccessControlPolicy", ACL_SCHEMA),
    "PutBucketLifecycleConfiguration": ("LifecycleConfiguration", LIFECYCLE_SCHEMA),
}


def _model_schema(shape: Any) -> s3xml.Schema | None:
    """The elements a shape of botocore's model holds, as a Schema."""
    if shape.type_name != "structure":
        return None
    out: dict[str, Any] = {}
    for name, member in shape.members.items():
        if member.serialization.get("location") or member.serialization.get("xmlAttribute"):
            continue  # a header, a query parameter or an attribute
        element = member.serialization.get("name", name)
        if member.type_name == "list":
            inner = _model_schema(member.member)
            if member.serialization.get("flattened"):
                out[element] = inner
            else:
                out[element] = {member.member.serialization.get("name", "member"): inner}
        else:
            out[element] = _model_schema(member)
    return out


@pytest.mark.parametrize("operation", sorted(SCHEMAS))
def test_each_schema_is_the_bodys_shape_in_s3s_model(operation: str) -> None:
    botocore_session = pytest.importorskip("botocore.session")
    model = botocore_session.get_session().get_service_model("s3")
    shape = model.operation_model(operation).input_shape
    payload = shape.members[shape.serialization["payload"]]
    root, schema = SCHEMAS[operation]
    assert payload.serialization.get("name") == root
    assert _model_schema(payload) == schema


def test_an_element_the_schema_does_not_name_is_malformed_at_any_depth() -> None:
    schema: s3xml.Schema = {"A": {"B": None}, "C": None}
    ok = s3xml.parse(b"<R><A><B>1</B></A><C>2</C><A/></R>")
    s3xml.check_document(ok, "R", schema)
    for body in (b"<R><D/></R>", b"<R><A><C/></A></R>", b"<R><C><B/></C></R>", b"<X/>"):
        with pytest.raises(S3Error) as exc:
            s3xml.check_document(s3xml.parse(body), "R", schema)
        assert exc.value.code == "MalformedXML"
