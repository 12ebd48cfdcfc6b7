"""ACLs: canned ACLs, x-amz-grant-* headers, AccessControlPolicy XML, Block Public Access."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3torrent.access import (
    ALL_USERS,
    AUTHENTICATED_USERS,
    CANNED_ACLS,
    LOG_DELIVERY,
    AccessControlList,
    CanonicalUser,
    Grant,
    Group,
    Owner,
    Permission,
    PublicAccessBlock,
    acl_from_xml,
    acl_is_public,
    acl_to_xml,
    canned_acl,
    canonical_order,
    check_acl_allowed,
    grants_from_headers,
    public_access_block_from_xml,
    public_access_block_to_xml,
)
from s3torrent.access.errors import AccessError

ALICE = Owner("a" * 64, "alice")
BOB = Owner("b" * 64, "bob")
USERS = {ALICE.id: "alice", BOB.id: "bob"}


def known_user(canonical_id: str) -> str | None:
    return USERS.get(canonical_id)


def _pairs(acl: AccessControlList) -> set[tuple[str, Permission]]:
    return {
        (g.grantee.id if isinstance(g.grantee, CanonicalUser) else g.grantee.uri, g.permission)
        for g in acl.grants
    }


# --- canned ACLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("private", set()),
        ("aws-exec-read", set()),
        ("public-read", {(ALL_USERS, Permission.READ)}),
        ("public-read-write", {(ALL_USERS, Permission.READ), (ALL_USERS, Permission.WRITE)}),
        ("authenticated-read", {(AUTHENTICATED_USERS, Permission.READ)}),
        ("bucket-owner-read", {(ALICE.id, Permission.READ)}),
        ("bucket-owner-full-control", {(ALICE.id, Permission.FULL_CONTROL)}),
        (
            "log-delivery-write",
            {(LOG_DELIVERY, Permission.WRITE), (LOG_DELIVERY, Permission.READ_ACP)},
        ),
    ],
)
def test_canned_acl_grants_owner_full_control_plus_its_extras(
    name: str, extra: set[tuple[str, Permission]]
) -> None:
    acl = canned_acl(name, owner=BOB, bucket_owner=ALICE)
    assert acl.owner == BOB
    assert _pairs(acl) == {(BOB.id, Permission.FULL_CONTROL)} | extra
    assert name in CANNED_ACLS


def test_bucket_owner_canned_acls_add_nothing_when_owner_is_bucket_owner() -> None:
    for name in ("bucket-owner-read", "bucket-owner-full-control"):
        acl = canned_acl(name, owner=ALICE, bucket_owner=ALICE)
        assert acl.grants == (Grant(CanonicalUser(ALICE.id, "alice"), Permission.FULL_CONTROL),)


def test_unknown_canned_acl_is_invalid_argument() -> None:
    with pytest.raises(AccessError) as info:
        canned_acl("world-writable", owner=ALICE, bucket_owner=ALICE)
    assert info.value.code == "InvalidArgument"


def test_acl_is_public_for_all_and_authenticated_users_only() -> None:
    assert acl_is_public(canned_acl("public-read", owner=ALICE, bucket_owner=ALICE))
    assert acl_is_public(canned_acl("authenticated-read", owner=ALICE, bucket_owner=ALICE))
    assert not acl_is_public(canned_acl("private", owner=ALICE, bucket_owner=ALICE))
    assert not acl_is_public(canned_acl("log-delivery-write", owner=ALICE, bucket_owner=ALICE))


# --- header grants -------------------------------------------------------------------------------


def test_header_grants_parse_ids_and_uris() -> None:
    acl = grants_from_headers(
        {
            "X-Amz-Grant-Read": f'uri="{ALL_USERS}", id="{BOB.id}"',
            "x-amz-grant-full-control": f"id={ALICE.id}",
            "x-amz-grant-write-acp": f'id="{BOB.id}"',
            "Content-Type": "text/plain",
        },
        ALICE,
        known_user=known_user,
    )
    assert acl is not None
    assert acl.owner == ALICE
    assert _pairs(acl) == {
        (ALL_USERS, Permission.READ),
        (BOB.id, Permission.READ),
        (ALICE.id, Permission.FULL_CONTROL),
        (BOB.id, Permission.WRITE_ACP),
    }
    assert Grant(CanonicalUser(BOB.id, "bob"), Permission.READ) in acl.grants


def test_no_grant_headers_means_no_acl() -> None:
    assert grants_from_headers({"x-amz-acl": "public-read"}, ALICE) is None
    assert grants_from_headers({}, ALICE) is None


def test_canned_acl_and_header_grants_together_are_refused() -> None:
    with pytest.raises(AccessError) as info:
        grants_from_headers(
            {"x-amz-acl": "private", "x-amz-grant-read": f'uri="{ALL_USERS}"'}, ALICE
        )
    assert info.value.code == "InvalidRequest"
    assert "Specifying both Canned ACLs and Header Grants is not allowed" in info.value.message


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ('emailAddress="x@example.com"', "UnresolvableGrantByEmailAddress"),
        (f'id="{"9" * 64}"', "InvalidArgument"),
        ('uri="http://acs.amazonaws.com/groups/global/Nobody"', "InvalidArgument"),
        ('color="blue"', "InvalidArgument"),
        ("id=", "InvalidArgument"),
        ('id="unbalanced', "InvalidArgument"),
    ],
)
def test_bad_header_grantees_are_refused(value: str, code: str) -> None:
    with pytest.raises(AccessError) as info:
        grants_from_headers({"x-amz-grant-read": value}, ALICE, known_user=known_user)
    assert info.value.code == code


# --- XML -----------------------------------------------------------------------------------------

ACLS = [
    canned_acl("private", owner=ALICE, bucket_owner=ALICE),
    canned_acl("public-read-write", owner=ALICE, bucket_owner=ALICE),
    canned_acl("bucket-owner-full-control", owner=BOB, bucket_owner=ALICE),
    canned_acl("log-delivery-write", owner=ALICE, bucket_owner=ALICE),
    AccessControlList(ALICE, ()),
]


@pytest.mark.parametrize("acl", ACLS)
def test_acl_xml_round_trips(acl: AccessControlList) -> None:
    parsed = acl_from_xml(acl_to_xml(acl), expected_owner_id=acl.owner.id, known_user=known_user)
    # The same grants, listed in S3's order.
    assert parsed == AccessControlList(acl.owner, tuple(canonical_order(acl)))


_grantees = st.one_of(
    st.sampled_from([CanonicalUser(ALICE.id, "alice"), CanonicalUser(BOB.id, "bob")]),
    st.sampled_from([Group(ALL_USERS), Group(AUTHENTICATED_USERS), Group(LOG_DELIVERY)]),
)
_grants = st.builds(Grant, _grantees, st.sampled_from(list(Permission)))


@given(st.lists(_grants, max_size=10))
def test_any_acl_round_trips_through_xml(grants: list[Grant]) -> None:
    acl = AccessControlList(ALICE, tuple(grants))
    parsed = acl_from_xml(acl_to_xml(acl), expected_owner_id=ALICE.id, known_user=known_user)
    assert parsed == AccessControlList(ALICE, tuple(canonical_order(acl)))


def test_acl_xml_is_what_boto3_parses() -> None:
    botocore_session = pytest.importorskip("botocore.session")
    parsers = pytest.importorskip("botocore.parsers")
    model = botocore_session.get_session().get_service_model("s3")
    acl = canned_acl("public-read", owner=ALICE, bucket_owner=ALICE)
    for operation in ("GetBucketAcl", "GetObjectAcl"):
        shape = model.operation_model(operation).output_shape
        parsed = parsers.create_parser("rest-xml").parse(
            {"body": acl_to_xml(acl), "headers": {}, "status_code": 200}, shape
        )
        assert parsed["Owner"] == {"ID": ALICE.id, "DisplayName": "alice"}
        # Group grants first, then the owner (S3's order).
        assert parsed["Grants"] == [
            {"Grantee": {"URI": ALL_USERS, "Type": "Group"}, "Permission": "READ"},
            {
                "Grantee": {"ID": ALICE.id, "DisplayName": "alice", "Type": "CanonicalUser"},
                "Permission": "FULL_CONTROL",
            },
        ]


def _policy_xml(grants: str, owner: str = ALICE.id) -> bytes:
    return (
        '<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<Owner><ID>{owner}</ID></Owner><AccessControlList>{grants}</AccessControlList>"
        "</AccessControlPolicy>"
    ).encode()


def test_acl_xml_without_owner_keeps_the_owner() -> None:
    body = (
        b'<AccessControlPolicy xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        b'<AccessControlList><Grant><Grantee xsi:type="Group">'
        b"<URI>http://acs.amazonaws.com/groups/global/AllUsers</URI></Grantee>"
        b"<Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>"
    )
    acl = acl_from_xml(body, expected_owner_id=ALICE.id, known_user=known_user)
    assert acl == AccessControlList(ALICE, (Grant(Group(ALL_USERS), Permission.READ),))


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"<AccessControlPolicy>", "MalformedACLError"),
        (b"not xml", "MalformedACLError"),
        (b"<Other/>", "MalformedACLError"),
        (
            _policy_xml("").replace(b"<AccessControlList></AccessControlList>", b""),
            "MalformedACLError",
        ),
        (
            _policy_xml(
                '<Grant><Grantee xsi:type="Group"><URI>' + ALL_USERS + "</URI></Grantee>"
                "<Permission>EVERYTHING</Permission></Grant>"
            ),
            "MalformedACLError",
        ),
        (_policy_xml("<Grant><Permission>READ</Permission></Grant>"), "MalformedACLError"),
        (
            _policy_xml(
                '<Grant><Grantee xsi:type="Robot"><ID>x</ID></Grantee>'
                "<Permission>READ</Permission></Grant>"
            ),
            "MalformedACLError",
        ),
        (
            _policy_xml(
                '<Grant><Grantee xsi:type="CanonicalUser"><ID>' + "9" * 64 + "</ID>"
                "</Grantee><Permission>READ</Permission></Grant>"
            ),
            "InvalidArgument",
        ),
        (
            _policy_xml(
                '<Grant><Grantee xsi:type="AmazonCustomerByEmail"><EmailAddress>'
                "x@example.com</EmailAddress></Grantee><Permission>READ</Permission>"
                "</Grant>"
            ),
            "UnresolvableGrantByEmailAddress",
        ),
        (_policy_xml("", owner=BOB.id), "AccessDenied"),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>'
            b"<AccessControlPolicy>&e;</AccessControlPolicy>",
            "MalformedACLError",
        ),
    ],
)
def test_bad_acl_xml_is_refused(body: bytes, code: str) -> None:
    with pytest.raises(AccessError) as info:
        acl_from_xml(body, expected_owner_id=ALICE.id, known_user=known_user)
    assert info.value.code == code


# --- Block Public Access -------------------------------------------------------------------------


@given(st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_public_access_block_xml_round_trips(a: bool, b: bool, c: bool, d: bool) -> None:
    pab = PublicAccessBlock(a, b, c, d)
    assert public_access_block_from_xml(public_access_block_to_xml(pab)) == pab


def test_public_access_block_missing_fields_are_false() -> None:
    body = (
        b'<PublicAccessBlockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<BlockPublicAcls>TRUE</BlockPublicAcls></PublicAccessBlockConfiguration>"
    )
    assert public_access_block_from_xml(body) == PublicAccessBlock(block_public_acls=True)


@pytest.mark.parametrize(
    "body",
    [
        b"<PublicAccessBlockConfiguration><BlockPublicAcls>yes</BlockPublicAcls>"
        b"</PublicAccessBlockConfiguration>",
        b"<PublicAccessBlockConfiguration><Nope>true</Nope></PublicAccessBlockConfiguration>",
        b"<Other/>",
        b"<<<",
    ],
)
def test_bad_public_access_block_xml_is_malformed(body: bytes) -> None:
    with pytest.raises(AccessError) as info:
        public_access_block_from_xml(body)
    assert info.value.code == "MalformedXML"


def test_public_access_block_xml_is_what_boto3_parses() -> None:
    botocore_session = pytest.importorskip("botocore.session")
    parsers = pytest.importorskip("botocore.parsers")
    shape = (
        botocore_session.get_session()
        .get_service_model("s3")
        .operation_model("GetPublicAccessBlock")
        .output_shape
    )
    body = public_access_block_to_xml(PublicAccessBlock(True, False, True, False))
    parsed = parsers.create_parser("rest-xml").parse(
        {"body": body, "headers": {}, "status_code": 200}, shape
    )
    assert parsed["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": False,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": False,
    }


def test_block_public_acls_refuses_public_acls_only() -> None:
    public = canned_acl("public-read", owner=ALICE, bucket_owner=ALICE)
    private = canned_acl("private", owner=ALICE, bucket_owner=ALICE)
    blocked = PublicAccessBlock(block_public_acls=True)
    with pytest.raises(AccessError) as info:
        check_acl_allowed(public, blocked)
    assert info.value.code == "AccessDenied"
    check_acl_allowed(private, blocked)
    check_acl_allowed(public, None)
    check_acl_allowed(public, PublicAccessBlock(ignore_public_acls=True))
