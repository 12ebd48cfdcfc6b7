"""The one access decision: may this principal perform this S3 action on this resource?"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from s3torrent.access.acl import (
    ALL_USERS,
    AUTHENTICATED_USERS,
    PUBLIC_GROUPS,
    AccessControlList,
    CanonicalUser,
    Group,
    Owner,
    Permission,
)
from s3torrent.access.policy import BucketPolicy, policy_is_public, statement_applies
from s3torrent.access.principals import ACCOUNT_ID, Principal
from s3torrent.access.public_access import PublicAccessBlock


class Scope(enum.Enum):
    BUCKET = "bucket"
    OBJECT = "object"


# Which ACL (the bucket's or the object's) and which permission in it allows an action, after
# the S3 user guide's table of ACL permissions. Keys are lower case: IAM actions are
# case-insensitive. Actions missing here cannot be granted by an ACL at all.
ACL_PERMISSIONS: Mapping[str, tuple[Scope, Permission]] = {
    "s3:getobject": (Scope.OBJECT, Permission.READ),
    "s3:getobjectversion": (Scope.OBJECT, Permission.READ),
    "s3:getobjecttorrent": (Scope.OBJECT, Permission.READ),
    "s3:getobjectversiontorrent": (Scope.OBJECT, Permission.READ),
    "s3:getobjectattributes": (Scope.OBJECT, Permission.READ),
    "s3:getobjectversionattributes": (Scope.OBJECT, Permission.READ),
    "s3:getobjectacl": (Scope.OBJECT, Permission.READ_ACP),
    "s3:getobjectversionacl": (Scope.OBJECT, Permission.READ_ACP),
    "s3:putobjectacl": (Scope.OBJECT, Permission.WRITE_ACP),
    "s3:putobjectversionacl": (Scope.OBJECT, Permission.WRITE_ACP),
    "s3:putobject": (Scope.BUCKET, Permission.WRITE),
    "s3:deleteobject": (Scope.BUCKET, Permission.WRITE),
    "s3:deleteobjectversion": (Scope.BUCKET, Permission.WRITE),
    "s3:abortmultipartupload": (Scope.BUCKET, Permission.WRITE),
    "s3:listmultipartuploadparts": (Scope.BUCKET, Permission.WRITE),
    "s3:listbucket": (Scope.BUCKET, Permission.READ),
    "s3:listbucketversions": (Scope.BUCKET, Permission.READ),
    "s3:listbucketmultipartuploads": (Scope.BUCKET, Permission.READ),
    "s3:getbucketacl": (Scope.BUCKET, Permission.READ_ACP),
    "s3:putbucketacl": (Scope.BUCKET, Permission.WRITE_ACP),
}

# Object actions that are really about the bucket's contents: the bucket owner may do them on
# any object in its bucket, and a bucket policy may grant them whoever owns the object.
_BUCKET_CONTENT_ACTIONS = frozenset(
    {
        "s3:putobject",
        "s3:deleteobject",
        "s3:deleteobjectversion",
        "s3:abortmultipartupload",
        "s3:listmultipartuploadparts",
    }
)

# Only the bucket owner's account may run these, whatever a policy or ACL says; and the bucket
# owner may always run them, even against an explicit Deny, so a policy cannot lock it out.
OWNER_ONLY_ACTIONS = frozenset(
    {
        "s3:getbucketpolicy",
        "s3:putbucketpolicy",
        "s3:deletebucketpolicy",
        "s3:getbucketpolicystatus",
        "s3:getbucketpublicaccessblock",
        "s3:putbucketpublicaccessblock",
    }
)
_LOCKOUT_PROOF_ACTIONS = frozenset(
    {"s3:getbucketpolicy", "s3:putbucketpolicy", "s3:deletebucketpolicy"}
)

# What the initiator of a multipart upload may do to that upload without being granted it,
# as the bucket owner may (S3's "Multipart upload API and permissions"); a Deny still binds.
_INITIATOR_ACTIONS = frozenset({"s3:abortmultipartupload", "s3:listmultipartuploadparts"})

# What a write that a bucket ACL's WRITE grant allowed may also set of the object it creates
# (S3's older model knows no finer permission); a Deny still binds.
_WRITE_BY_ACL_EXTRAS = frozenset({"s3:putobjectacl", "s3:putobjecttagging"})

# The object owner's implicit rights on its own object (FULL_CONTROL comes only from a grant).
_OBJECT_OWNER_IMPLICIT = frozenset({Permission.READ_ACP, Permission.WRITE_ACP})


@dataclass(frozen=True, slots=True)
class Resource:
    bucket: str
    key: str | None = None

    @property
    def arn(self) -> str:
        if self.key is None:
            return f"arn:aws:s3:::{self.bucket}"
        return f"arn:aws:s3:::{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a request brings to condition keys; `values` holds the rest (s3:prefix, ...).

    `upload_initiator`: the canonical id of whoever started the multipart upload the request
    names (ListParts, AbortMultipartUpload), when that upload is of the request's bucket and
    key; None for any other request. `write_by_acl`: the request is a write that an ACL
    grant (not a policy, not ownership) allowed, asking whether it may also set its new
    object's ACL and tags."""

    now: datetime
    source_ip: str | None = None
    secure_transport: bool = False
    values: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    upload_initiator: str | None = None
    write_by_acl: bool = False

    def with_values(self, values: Mapping[str, str | Sequence[str]]) -> RequestContext:
        """This context with these condition values too (replacing any of the same name)."""
        return replace(self, values={**self.values, **values})


@dataclass(frozen=True, slots=True)
class AccessFacts:
    """What the store knows about the bucket and (for object actions) the object."""

    bucket_owner: Owner
    bucket_acl: AccessControlList
    object_acl: AccessControlList | None = None
    policy: BucketPolicy | None = None
    public_access_block: PublicAccessBlock | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    explicit_deny: bool = False
    """True when a policy statement denied it (not merely nothing allowed it)."""
    by_acl: bool = False
    """True when an ACL grant allowed it (no policy statement, no ownership)."""


def condition_keys(principal: Principal, ctx: RequestContext) -> dict[str, Sequence[str]]:
    """The request's condition keys, lower-cased, each with its list of values."""
    now = ctx.now if ctx.now.tzinfo is not None else ctx.now.replace(tzinfo=UTC)
    keys: dict[str, Sequence[str]] = {
        "aws:securetransport": ["true" if ctx.secure_transport else "false"],
        "aws:currenttime": [now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")],
        "aws:epochtime": [str(int(now.timestamp()))],
        "aws:principaltype": [principal.principal_type],
        # No AWS service calls here on anyone's behalf: always false, as S3 has it.
        "aws:viaawsservice": ["false"],
        # Every bucket here belongs to the one account (access.ACCOUNT_ID).
        "aws:resourceaccount": [ACCOUNT_ID],
        "s3:resourceaccount": [ACCOUNT_ID],
    }
    if ctx.source_ip is not None:
        keys["aws:sourceip"] = [ctx.source_ip]
    if not principal.is_anonymous:
        assert principal.canonical_id is not None
        keys["aws:userid"] = [principal.canonical_id]
        keys["aws:principalaccount"] = [ACCOUNT_ID]
        # In every signed request in S3; no caller here is an AWS service.
        keys["aws:principalisawsservice"] = ["false"]
        if principal.arn is not None:
            keys["aws:principalarn"] = [principal.arn]
        if principal.name is not None and not principal.is_root:
            keys["aws:username"] = [principal.name]
    given: dict[str, list[str]] = {}
    for name, value in ctx.values.items():
        # Names that differ only in case (tags Env and env: S3's tag keys are case-sensitive)
        # are one condition key with the values of both, never the last one alone.
        given.setdefault(name.lower(), []).extend([value] if isinstance(value, str) else value)
    keys.update(given)
    return keys


def _grant_matches(grantee: CanonicalUser | Group, principal: Principal) -> bool:
    if isinstance(grantee, CanonicalUser):
        return grantee.id == principal.canonical_id
    if grantee.uri == ALL_USERS:
        return True
    return grantee.uri == AUTHENTICATED_USERS and not principal.is_anonymous


def _acl_grant(
    acl: AccessControlList, principal: Principal, needed: Permission, ignore_public: bool
) -> str | None:
    """The grant that gives `principal` the `needed` permission, described; None if none."""
    for grant in acl.grants:
        if grant.permission not in (needed, Permission.FULL_CONTROL):
            continue
        grantee = grant.grantee
        if ignore_public and isinstance(grantee, Group) and grantee.uri in PUBLIC_GROUPS:
            continue
        if _grant_matches(grantee, principal):
            who = grantee.uri.rsplit("/", 1)[-1] if isinstance(grantee, Group) else grantee.id
            return f"acl grant {grant.permission.value} to {who}"
    return None


def _object_owner(facts: AccessFacts) -> str:
    """Who owns the object; a missing object counts as the bucket owner's."""
    return facts.object_acl.owner.id if facts.object_acl else facts.bucket_owner.id


def _touches_object_data(action_key: str, resource: Resource) -> bool:
    return resource.key is not None and action_key not in _BUCKET_CONTENT_ACTIONS


def decide(
    principal: Principal,
    action: str,
    resource: Resource,
    facts: AccessFacts,
    ctx: RequestContext,
) -> Decision:
    """Decide one request: explicit Deny, root, owners and an upload's initiator, policy
    Allow, ACL grants, else deny.

    The root user is the administrator: it is allowed everything and no policy binds it.
    """
    if principal.is_root:
        return Decision(True, "root user")
    action_key = action.lower()
    is_bucket_owner = (
        principal.canonical_id is not None and principal.canonical_id == facts.bucket_owner.id
    )
    policy = facts.policy
    # Only conditions read the request's keys: most policies have none to build them for.
    keys = condition_keys(principal, ctx) if policy is not None and policy.has_conditions else {}
    if policy is not None:
        for statement in policy.statements:
            if statement.effect != "Deny":
                continue
            if is_bucket_owner and action_key in _LOCKOUT_PROOF_ACTIONS:
                continue
            if statement_applies(statement, principal, action, resource.arn, keys):
                return Decision(False, f"explicit deny by {statement.label}", explicit_deny=True)

    owns_object = _object_owner(facts) == principal.canonical_id
    if is_bucket_owner and (owns_object or not _touches_object_data(action_key, resource)):
        return Decision(True, "bucket owner")
    if (
        action_key in _INITIATOR_ACTIONS
        and principal.canonical_id is not None
        and principal.canonical_id == ctx.upload_initiator
    ):
        return Decision(True, "upload initiator")
    if ctx.write_by_acl and action_key in _WRITE_BY_ACL_EXTRAS:
        return Decision(True, "with a write an ACL grant allowed")
    if action_key in OWNER_ONLY_ACTIONS:
        return Decision(False, "only the bucket owner may do this")

    scope_permission = ACL_PERMISSIONS.get(action_key)
    if (
        owns_object
        and resource.key is not None
        and scope_permission is not None
        and scope_permission[0] is Scope.OBJECT
        and scope_permission[1] in _OBJECT_OWNER_IMPLICIT
    ):
        return Decision(True, "object owner")

    pab = facts.public_access_block
    if policy is not None and not (
        # A bucket policy cannot reach objects its bucket's owner does not own.
        _touches_object_data(action_key, resource) and _object_owner(facts) != facts.bucket_owner.id
    ):
        restricted = pab is not None and pab.restrict_public_buckets and policy_is_public(policy)
        for statement in policy.statements:
            if statement.effect != "Allow":
                continue
            if statement_applies(statement, principal, action, resource.arn, keys):
                if restricted:
                    break
                return Decision(True, f"allow by {statement.label}")

    if scope_permission is None:
        return Decision(False, f"no grant: {action} cannot be granted by an ACL")
    scope, needed = scope_permission
    acl = facts.bucket_acl if scope is Scope.BUCKET else facts.object_acl
    if acl is None or (scope is Scope.OBJECT and resource.key is None):
        return Decision(False, f"no grant: no object ACL for {action}")
    ignore_public = pab is not None and pab.ignore_public_acls
    granted = _acl_grant(acl, principal, needed, ignore_public)
    if granted is not None:
        return Decision(True, granted, by_acl=True)
    return Decision(False, f"no grant: {needed.value} on the {scope.value} is not granted")
