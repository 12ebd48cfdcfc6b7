"""Access control lists: grants, canned ACLs, x-amz-grant-* headers and the XML S3 speaks."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from s3torrent.access.errors import AccessError
from s3torrent.xml_shapes import Schema, unknown_element

S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
KNOWN_GROUPS = frozenset({ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY})
PUBLIC_GROUPS = frozenset({ALL_USERS, AUTHENTICATED_USERS})

# S3 refuses ACLs with more grants than this.
MAX_GRANTS = 100


class Permission(enum.Enum):
    READ = "READ"
    WRITE = "WRITE"
    READ_ACP = "READ_ACP"
    WRITE_ACP = "WRITE_ACP"
    FULL_CONTROL = "FULL_CONTROL"


@dataclass(frozen=True, slots=True)
class Owner:
    id: str
    display_name: str


@dataclass(frozen=True, slots=True)
class CanonicalUser:
    id: str
    display_name: str = ""


@dataclass(frozen=True, slots=True)
class Group:
    uri: str


Grantee = CanonicalUser | Group


@dataclass(frozen=True, slots=True)
class Grant:
    grantee: Grantee
    permission: Permission


@dataclass(frozen=True, slots=True)
class AccessControlList:
    owner: Owner
    grants: tuple[Grant, ...]


def _owner_grant(owner: Owner) -> Grant:
    return Grant(CanonicalUser(owner.id, owner.display_name), Permission.FULL_CONTROL)


def _email_unresolvable() -> AccessError:
    return AccessError(
        "UnresolvableGrantByEmailAddress",
        "The e-mail address you provided does not match any account on record.",
    )


CANNED_ACLS = frozenset(
    {
        "private",
        "public-read",
        "public-read-write",
        "aws-exec-read",
        "authenticated-read",
        "bucket-owner-read",
        "bucket-owner-full-control",
        "log-delivery-write",
    }
)


def canned_acl(name: str, *, owner: Owner, bucket_owner: Owner) -> AccessControlList:
    """The ACL S3 builds for an x-amz-acl value; for a bucket pass owner == bucket_owner."""
    grants = [_owner_grant(owner)]
    if name in ("private", "aws-exec-read"):
        # aws-exec-read's extra grant goes to EC2, which does not exist here.
        pass
    elif name == "public-read":
        grants.append(Grant(Group(ALL_USERS), Permission.READ))
    elif name == "public-read-write":
        grants.append(Grant(Group(ALL_USERS), Permission.READ))
        grants.append(Grant(Group(ALL_USERS), Permission.WRITE))
    elif name == "authenticated-read":
        grants.append(Grant(Group(AUTHENTICATED_USERS), Permission.READ))
    elif name in ("bucket-owner-read", "bucket-owner-full-control"):
        if bucket_owner.id != owner.id:
            permission = Permission.READ if name == "bucket-owner-read" else Permission.FULL_CONTROL
            grants.append(
                Grant(CanonicalUser(bucket_owner.id, bucket_owner.display_name), permission)
            )
    elif name == "log-delivery-write":
        grants.append(Grant(Group(LOG_DELIVERY), Permission.WRITE))
        grants.append(Grant(Group(LOG_DELIVERY), Permission.READ_ACP))
    else:
        raise AccessError(
            "InvalidArgument",
            f"Invalid canned ACL: {name}",
            extra={"ArgumentName": "x-amz-acl", "ArgumentValue": name},
        )
    return AccessControlList(owner, tuple(grants))


def acl_is_public(acl: AccessControlList) -> bool:
    """True when any grant goes to AllUsers or AuthenticatedUsers (S3's BlockPublicAcls test)."""
    return any(
        isinstance(grant.grantee, Group) and grant.grantee.uri in PUBLIC_GROUPS
        for grant in acl.grants
    )


# --- x-amz-grant-* headers -------------------------------------------------------------------

GRANT_HEADERS: Mapping[str, Permission] = {
    "x-amz-grant-read": Permission.READ,
    "x-amz-grant-write": Permission.WRITE,
    "x-amz-grant-read-acp": Permission.READ_ACP,
    "x-amz-grant-write-acp": Permission.WRITE_ACP,
    "x-amz-grant-full-control": Permission.FULL_CONTROL,
}


def _split_grantee_list(value: str) -> Iterator[tuple[str, str]]:
    """Split `id="a", uri="b"` into (key, value) pairs; commas inside quotes are kept."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted:
        raise AccessError("InvalidArgument", f"Unbalanced quotes in grant header: {value}")
    items.append("".join(current))
    for item in items:
        item = item.strip()
        if not item:
            continue
        key, sep, raw = item.partition("=")
        raw = raw.strip()
        if not sep or not raw:
            raise AccessError("InvalidArgument", f"Invalid grantee in grant header: {item}")
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1]
        yield key.strip().lower(), raw


def _grantee_from_header(
    key: str, value: str, known_user: Callable[[str], str | None] | None
) -> Grantee:
    if key == "id":
        display_name = known_user(value) if known_user is not None else ""
        if display_name is None:
            raise AccessError(
                "InvalidArgument",
                "Invalid id",
                extra={"ArgumentName": "CanonicalUser/ID", "ArgumentValue": value},
            )
        return CanonicalUser(value, display_name)
    if key == "uri":
        if value not in KNOWN_GROUPS:
            raise AccessError(
                "InvalidArgument",
                "Invalid group uri",
                extra={"ArgumentName": "Group/URI", "ArgumentValue": value},
            )
        return Group(value)
    if key == "emailaddress":
        raise _email_unresolvable()
    raise AccessError("InvalidArgument", f"Argument format not recognized: {key}")


def grants_from_headers(
    headers: Mapping[str, str],
    owner: Owner,
    *,
    known_user: Callable[[str], str | None] | None = None,
) -> AccessControlList | None:
    """The ACL named by x-amz-grant-* headers, or None when the request has none.

    `known_user(canonical_id)` returns the display name, or None for an unknown id; without
    it ids are taken as given with an empty display name.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    if not any(header in lowered for header in GRANT_HEADERS):
        return None
    if "x-amz-acl" in lowered:
        raise AccessError(
            "InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed"
        )
    grants: list[Grant] = []
    for header, permission in GRANT_HEADERS.items():
        value = lowered.get(header)
        if value is None:
            continue
        for key, raw in _split_grantee_list(value):
            grants.append(Grant(_grantee_from_header(key, raw, known_user), permission))
    if len(grants) > MAX_GRANTS:
        raise AccessError("InvalidArgument", f"An ACL may hold at most {MAX_GRANTS} grants")
    return AccessControlList(owner, tuple(grants))


# --- AccessControlPolicy XML -----------------------------------------------------------------


def _malformed(detail: str) -> AccessError:
    return AccessError(
        "MalformedACLError",
        "The XML you provided was not well-formed or did not validate against our published "
        f"schema ({detail}).",
    )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: Element, name: str) -> Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _text(element: Element, name: str) -> str | None:
    child = _child(element, name)
    if child is None:
        return None
    return (child.text or "").strip()


def _grantee_from_xml(element: Element, known_user: Callable[[str], str | None]) -> Grantee:
    kind = element.get(f"{{{XSI_NS}}}type") or element.get("type")
    if kind == "CanonicalUser":
        user_id = _text(element, "ID")
        if not user_id:
            raise _malformed("CanonicalUser grantee without ID")
        display_name = known_user(user_id)
        if display_name is None:
            raise AccessError(
                "InvalidArgument",
                "Invalid id",
                extra={"ArgumentName": "CanonicalUser/ID", "ArgumentValue": user_id},
            )
        return CanonicalUser(user_id, display_name)
    if kind == "Group":
        uri = _text(element, "URI")
        if not uri:
            raise _malformed("Group grantee without URI")
        if uri not in KNOWN_GROUPS:
            raise AccessError(
                "InvalidArgument",
                "Invalid group uri",
                extra={"ArgumentName": "Group/URI", "ArgumentValue": uri},
            )
        return Group(uri)
    if kind == "AmazonCustomerByEmail":
        raise _email_unresolvable()
    raise _malformed(f"unknown grantee type {kind!r}")


# What an AccessControlPolicy body may hold (S3's API model, 2026-12; a grantee's xsi:type
# is an attribute).
ACL_SCHEMA: Schema = {
    "Owner": {"DisplayName": None, "ID": None},
    "AccessControlList": {
        "Grant": {
            "Grantee": dict.fromkeys(("DisplayName", "EmailAddress", "ID", "URI")),
            "Permission": None,
        }
    },
}


def acl_from_xml(
    body: bytes, *, expected_owner_id: str, known_user: Callable[[str], str | None]
) -> AccessControlList:
    """Parse a PutBucketAcl/PutObjectAcl AccessControlPolicy body.

    The Owner element may be omitted (the current owner is kept); when present its ID must be
    the resource's owner, since an ACL cannot transfer ownership.
    """
    try:
        root = SafeET.fromstring(body)
    except (ParseError, DefusedXmlException, ValueError, LookupError) as exc:
        raise _malformed("not well-formed XML") from exc
    if _local(root.tag) != "AccessControlPolicy":
        raise _malformed(f"root element is {_local(root.tag)}, not AccessControlPolicy")
    unknown = unknown_element(root, ACL_SCHEMA)
    if unknown is not None:
        # S3 validates the body against its schema; an element it does not define was
        # dropped here and the rest of the ACL applied.
        raise _malformed(f"unexpected element {unknown}")
    owner_element = _child(root, "Owner")
    owner_name = known_user(expected_owner_id) or ""
    if owner_element is not None:
        owner_id = _text(owner_element, "ID")
        if not owner_id:
            raise _malformed("Owner without ID")
        if owner_id != expected_owner_id:
            raise AccessError("AccessDenied", "The Owner ID in the ACL is not the resource's owner")
    acl_element = _child(root, "AccessControlList")
    if acl_element is None:
        raise _malformed("missing AccessControlList")
    grants: list[Grant] = []
    for grant_element in acl_element:
        if _local(grant_element.tag) != "Grant":
            raise _malformed(f"unexpected element {_local(grant_element.tag)}")
        grantee_element = _child(grant_element, "Grantee")
        permission_text = _text(grant_element, "Permission")
        if grantee_element is None or permission_text is None:
            raise _malformed("Grant needs a Grantee and a Permission")
        try:
            permission = Permission(permission_text)
        except ValueError as exc:
            raise _malformed(f"unknown permission {permission_text!r}") from exc
        grants.append(Grant(_grantee_from_xml(grantee_element, known_user), permission))
    if len(grants) > MAX_GRANTS:
        raise _malformed(f"more than {MAX_GRANTS} grants")
    return AccessControlList(Owner(expected_owner_id, owner_name), tuple(grants))


def _grantee_xml(grantee: Grantee) -> str:
    if isinstance(grantee, CanonicalUser):
        kind = "CanonicalUser"
        name = escape(grantee.display_name)
        inner = f"<ID>{escape(grantee.id)}</ID><DisplayName>{name}</DisplayName>"
    else:
        kind = "Group"
        inner = f"<URI>{escape(grantee.uri)}</URI>"
    return f'<Grantee xmlns:xsi="{XSI_NS}" xsi:type="{kind}">{inner}</Grantee>'


def canonical_order(acl: AccessControlList) -> list[Grant]:
    """Grants as S3 lists them: group grants first, then the owner, then other users."""

    def rank(grant: Grant) -> int:
        if isinstance(grant.grantee, Group):
            return 0
        return 1 if grant.grantee.id == acl.owner.id else 2

    return sorted(acl.grants, key=rank)


def acl_to_xml(acl: AccessControlList) -> bytes:
    """The GetBucketAcl/GetObjectAcl response body."""
    grants = "".join(
        f"<Grant>{_grantee_xml(grant.grantee)}<Permission>{grant.permission.value}</Permission></Grant>"
        for grant in canonical_order(acl)
    )
    owner = (
        f"<Owner><ID>{escape(acl.owner.id)}</ID>"
        f"<DisplayName>{escape(acl.owner.display_name)}</DisplayName></Owner>"
    )
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<AccessControlPolicy xmlns="{S3_XMLNS}">{owner}'
        f"<AccessControlList>{grants}</AccessControlList></AccessControlPolicy>"
    )
    return text.encode("utf-8")
