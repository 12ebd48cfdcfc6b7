"""S3 Block Public Access: the four switches, their XML, and the checks on PUTs."""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from s3torrent.access.acl import S3_XMLNS, AccessControlList, acl_is_public
from s3torrent.access.errors import AccessError
from s3torrent.access.policy import BucketPolicy, policy_is_public

# S3's own text for MalformedXML.
_NOT_VALID = (
    "The XML you provided was not well-formed or did not validate against our published schema."
)
_FIELDS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


@dataclass(frozen=True, slots=True)
class PublicAccessBlock:
    block_public_acls: bool = False
    ignore_public_acls: bool = False
    block_public_policy: bool = False
    restrict_public_buckets: bool = False


def public_access_block_from_xml(body: bytes) -> PublicAccessBlock:
    """Parse a PutPublicAccessBlock body; missing switches are false, as S3 treats them."""
    try:
        root = SafeET.fromstring(body)
    except (ParseError, DefusedXmlException, ValueError, LookupError) as exc:
        raise AccessError("MalformedXML", _NOT_VALID) from exc
    if root.tag.rsplit("}", 1)[-1] != "PublicAccessBlockConfiguration":
        raise AccessError("MalformedXML", _NOT_VALID)
    values = dict.fromkeys(_FIELDS, False)
    for child in root:
        name = child.tag.rsplit("}", 1)[-1]
        text = (child.text or "").strip().lower()
        if name not in values or text not in ("true", "false"):
            raise AccessError("MalformedXML", _NOT_VALID)
        values[name] = text == "true"
    return PublicAccessBlock(
        block_public_acls=values["BlockPublicAcls"],
        ignore_public_acls=values["IgnorePublicAcls"],
        block_public_policy=values["BlockPublicPolicy"],
        restrict_public_buckets=values["RestrictPublicBuckets"],
    )


def public_access_block_to_xml(pab: PublicAccessBlock) -> bytes:
    """The GetPublicAccessBlock response body."""
    flags = (
        pab.block_public_acls,
        pab.ignore_public_acls,
        pab.block_public_policy,
        pab.restrict_public_buckets,
    )
    inner = "".join(
        f"<{name}>{'true' if flag else 'false'}</{name}>"
        for name, flag in zip(_FIELDS, flags, strict=True)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<PublicAccessBlockConfiguration xmlns="{S3_XMLNS}">{inner}'
        "</PublicAccessBlockConfiguration>"
    ).encode()


def check_acl_allowed(acl: AccessControlList, pab: PublicAccessBlock | None) -> None:
    """Refuse to store a public ACL (bucket/object ACL or PUT with one) under BlockPublicAcls."""
    if pab is not None and pab.block_public_acls and acl_is_public(acl):
        raise AccessError("AccessDenied", "Access Denied (BlockPublicAcls forbids a public ACL)")


def check_policy_allowed(policy: BucketPolicy, pab: PublicAccessBlock | None) -> None:
    """Refuse to store a public bucket policy under BlockPublicPolicy."""
    if pab is not None and pab.block_public_policy and policy_is_public(policy):
        raise AccessError(
            "AccessDenied", "Access Denied (BlockPublicPolicy forbids a public policy)"
        )
