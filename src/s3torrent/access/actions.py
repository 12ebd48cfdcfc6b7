"""The actions and condition keys Amazon S3 defines for policies (the `s3:` service prefix),
as listed in AWS's Service Authorization Reference ("Actions, resources, and condition keys
for Amazon S3"), December 2026.

PutBucketPolicy refuses a statement naming an action or an `s3:` condition key that is not
one of these, as S3 does (MalformedPolicy, "Policy has invalid action" / "Policy has an
invalid condition key"): a misspelt name would otherwise match nothing, and a Deny the user
believes in would never apply (or, under a negated operator, always would). Names compare
case-insensitively, as they do in policies. A wildcard action (`s3:Get*`) is not checked: it
matches what it matches. Global `aws:` keys are checked the same way against IAM's list of
global condition context keys ("AWS global condition context keys", IAM User Guide): a Deny
on `aws:SourceIP4` (a typo) would otherwise never apply. Keys of other services (`ec2:`,
`kms:`, ...) pass: some are cross-service keys S3 requests can carry.
"""

from __future__ import annotations

S3_ACTION_NAMES: frozenset[str] = frozenset(
    {
        "AbortMultipartUpload",
        "AllowVendedLogDeliveryForResource",
        "AssociateAccessGrantsIdentityCenter",
        "BypassGovernanceRetention",
        "CreateAccessGrant",
        "CreateAccessGrantsInstance",
        "CreateAccessGrantsLocation",
        "CreateAccessPoint",
        "CreateAccessPointForObjectLambda",
        "CreateBucket",
        "CreateBucketMetadataTableConfiguration",
        "CreateJob",
        "CreateMultiRegionAccessPoint",
        "CreateStorageLensGroup",
        "DeleteAccessGrant",
        "DeleteAccessGrantsInstance",
        "DeleteAccessGrantsInstanceResourcePolicy",
        "DeleteAccessGrantsLocation",
        "DeleteAccessPoint",
        "DeleteAccessPointForObjectLambda",
        "DeleteAccessPointPolicy",
        "DeleteAccessPointPolicyForObjectLambda",
        "DeleteBucket",
        "DeleteBucketMetadataTableConfiguration",
        "DeleteBucketPolicy",
        "DeleteBucketWebsite",
        "DeleteJobTagging",
        "DeleteMultiRegionAccessPoint",
        "DeleteObject",
        "DeleteObjectAnnotation",
        "DeleteObjectTagging",
        "DeleteObjectVersion",
        "DeleteObjectVersionAnnotation",
        "DeleteObjectVersionTagging",
        "DeleteStorageLensConfiguration",
        "DeleteStorageLensConfigurationTagging",
        "DeleteStorageLensGroup",
        "DescribeJob",
        "DescribeMultiRegionAccessPointOperation",
        "DissociateAccessGrantsIdentityCenter",
        "GetAccelerateConfiguration",
        "GetAccessGrant",
        "GetAccessGrantsInstance",
        "GetAccessGrantsInstanceForPrefix",
        "GetAccessGrantsInstanceResourcePolicy",
        "GetAccessGrantsLocation",
        "GetAccessPoint",
        "GetAccessPointConfigurationForObjectLambda",
        "GetAccessPointForObjectLambda",
        "GetAccessPointPolicy",
        "GetAccessPointPolicyForObjectLambda",
        "GetAccessPointPolicyStatus",
        "GetAccessPointPolicyStatusForObjectLambda",
        "GetAccountPublicAccessBlock",
        "GetAnalyticsConfiguration",
        "GetBucketAbac",
        "GetBucketAcl",
        "GetBucketCORS",
        "GetBucketLocation",
        "GetBucketLogging",
        "GetBucketMetadataTableConfiguration",
        "GetBucketNotification",
        "GetBucketObjectLockConfiguration",
        "GetBucketOwnershipControls",
        "GetBucketPolicy",
        "GetBucketPolicyStatus",
        "GetBucketPublicAccessBlock",
        "GetBucketRequestPayment",
        "GetBucketTagging",
        "GetBucketVersioning",
        "GetBucketWebsite",
        "GetDataAccess",
        "GetEncryptionConfiguration",
        "GetIntelligentTieringConfiguration",
        "GetInventoryConfiguration",
        "GetJobTagging",
        "GetLifecycleConfiguration",
        "GetMetricsConfiguration",
        "GetMultiRegionAccessPoint",
        "GetMultiRegionAccessPointPolicy",
        "GetMultiRegionAccessPointPolicyStatus",
        "GetMultiRegionAccessPointRoutes",
        "GetObject",
        "GetObjectAcl",
        "GetObjectAnnotation",
        "GetObjectAttributes",
        "GetObjectLegalHold",
        "GetObjectRetention",
        "GetObjectTagging",
        "GetObjectTorrent",
        "GetObjectVersion",
        "GetObjectVersionAcl",
        "GetObjectVersionAnnotation",
        "GetObjectVersionAnnotationForReplication",
        "GetObjectVersionAttributes",
        "GetObjectVersionForReplication",
        "GetObjectVersionTagging",
        "GetObjectVersionTorrent",
        "GetReplicationConfiguration",
        "GetStorageLensConfiguration",
        "GetStorageLensConfigurationTagging",
        "GetStorageLensDashboard",
        "GetStorageLensGroup",
        "InitiateReplication",
        "ListAccessGrants",
        "ListAccessGrantsInstances",
        "ListAccessGrantsLocations",
        "ListAccessPoints",
        "ListAccessPointsForObjectLambda",
        "ListAllMyBuckets",
        "ListBucket",
        "ListBucketMultipartUploads",
        "ListBucketVersions",
        "ListCallerAccessGrants",
        "ListJobs",
        "ListMultiRegionAccessPoints",
        "ListMultipartUploadParts",
        "ListObjectAnnotations",
        "ListObjectVersionAnnotations",
        "ListStorageLensConfigurations",
        "ListStorageLensGroups",
        "ListTagsForResource",
        "ObjectOwnerOverrideToBucketOwner",
        "PauseReplication",
        "PutAccelerateConfiguration",
        "PutAccessGrantsInstanceResourcePolicy",
        "PutAccessPointConfigurationForObjectLambda",
        "PutAccessPointPolicy",
        "PutAccessPointPolicyForObjectLambda",
        "PutAccessPointPublicAccessBlock",
        "PutAccountPublicAccessBlock",
        "PutAnalyticsConfiguration",
        "PutBucketAbac",
        "PutBucketAcl",
        "PutBucketCORS",
        "PutBucketLogging",
        "PutBucketNotification",
        "PutBucketObjectLockConfiguration",
        "PutBucketOwnershipControls",
        "PutBucketPolicy",
        "PutBucketPublicAccessBlock",
        "PutBucketRequestPayment",
        "PutBucketTagging",
        "PutBucketVersioning",
        "PutBucketWebsite",
        "PutEncryptionConfiguration",
        "PutIntelligentTieringConfiguration",
        "PutInventoryConfiguration",
        "PutJobTagging",
        "PutLifecycleConfiguration",
        "PutMetricsConfiguration",
        "PutMultiRegionAccessPointPolicy",
        "PutObject",
        "PutObjectAcl",
        "PutObjectAnnotation",
        "PutObjectLegalHold",
        "PutObjectRetention",
        "PutObjectTagging",
        "PutObjectVersionAcl",
        "PutObjectVersionAnnotation",
        "PutObjectVersionTagging",
        "PutReplicationConfiguration",
        "PutStorageLensConfiguration",
        "PutStorageLensConfigurationTagging",
        "ReplicateDelete",
        "ReplicateObject",
        "ReplicateObjectAnnotation",
        "ReplicateTags",
        "RestoreObject",
        "SubmitMultiRegionAccessPointRoutes",
        "TagResource",
        "UntagResource",
        "UpdateAccessGrantsLocation",
        "UpdateBucketMetadataAnnotationTableConfiguration",
        "UpdateBucketMetadataInventoryTableConfiguration",
        "UpdateBucketMetadataJournalTableConfiguration",
        "UpdateJobPriority",
        "UpdateJobStatus",
        "UpdateObjectEncryption",
        "UpdateStorageLensGroup",
    }
)

_LOWERED = frozenset(name.lower() for name in S3_ACTION_NAMES)


def is_s3_action(name: str) -> bool:
    """Whether `name` (after `s3:`, any case) is an action S3 defines."""
    return name.lower() in _LOWERED


S3_CONDITION_KEYS: frozenset[str] = frozenset(
    {
        "AccessGrantScope",
        "AccessGrantsInstanceArn",
        "AccessGrantsLocationScope",
        "AccessPointNetworkOrigin",
        "DataAccessPointAccount",
        "DataAccessPointArn",
        "ExistingJobOperation",
        "ExistingJobPriority",
        "InventoryAccessibleOptionalFields",
        "JobSuspendedCause",
        "ObjectCreationOperation",
        "RequestJobOperation",
        "RequestJobPriority",
        "RequestObjectTagKeys",
        "ResourceAccount",
        "TlsVersion",
        "annotation-prefix",
        "authType",
        "delimiter",
        "deliverySourceArn",
        "destinationRegion",
        "if-match",
        "if-none-match",
        "isReplicationPauseRequest",
        "locationconstraint",
        "logType",
        "max-annotation-results",
        "max-keys",
        "object-lock-event-hold",
        "object-lock-event-hold-duration-days",
        "object-lock-legal-hold",
        "object-lock-mode",
        "object-lock-remaining-retention-days",
        "object-lock-retain-until-date",
        "prefix",
        "resourceArnBeingAuthorized",
        "signatureAge",
        "signatureversion",
        "versionid",
        "x-amz-acl",
        "x-amz-bucket-namespace",
        "x-amz-content-sha256",
        "x-amz-copy-source",
        "x-amz-grant-full-control",
        "x-amz-grant-read",
        "x-amz-grant-read-acp",
        "x-amz-grant-write",
        "x-amz-grant-write-acp",
        "x-amz-metadata-directive",
        "x-amz-object-annotation-directive",
        "x-amz-object-if-match",
        "x-amz-object-ownership",
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-aws-kms-key-id",
        "x-amz-server-side-encryption-customer-algorithm",
        "x-amz-storage-class",
        "x-amz-website-redirect-location",
    }
)
# Keys with a name of the caller's choosing after a slash (s3:ExistingObjectTag/<tag key>).
S3_CONDITION_KEY_FAMILIES: frozenset[str] = frozenset(
    {
        "AccessPointTag",
        "BucketTag",
        "ExistingObjectTag",
        "RequestObjectTag",
    }
)

_KEYS_LOWERED = frozenset(key.lower() for key in S3_CONDITION_KEYS)
_FAMILIES_LOWERED = frozenset(family.lower() for family in S3_CONDITION_KEY_FAMILIES)


def _named_key(name: str, keys: frozenset[str], families: frozenset[str]) -> bool:
    """Whether `name` (lower case) is one of `keys`, or a family's name, a slash and more."""
    family, slash, suffix = name.partition("/")
    if slash:
        return family in families and bool(suffix)
    return name in keys


def is_s3_condition_key(name: str) -> bool:
    """Whether `name` (after `s3:`, any case) is a condition key S3 defines."""
    return _named_key(name.lower(), _KEYS_LOWERED, _FAMILIES_LOWERED)


# IAM's global condition context keys (the `aws:` prefix), December 2026.
AWS_GLOBAL_CONDITION_KEYS: frozenset[str] = frozenset(
    {
        "AssumedRoot",
        "CalledVia",
        "CalledViaFirst",
        "CalledViaLast",
        "ChatbotSourceArn",
        "CurrentTime",
        "Ec2InstanceSourcePrivateIPv4",
        "Ec2InstanceSourceVpc",
        "EpochTime",
        "FederatedProvider",
        "MultiFactorAuthAge",
        "MultiFactorAuthPresent",
        "PrincipalAccount",
        "PrincipalArn",
        "PrincipalIsAWSService",
        "PrincipalOrgID",
        "PrincipalOrgPaths",
        "PrincipalServiceName",
        "PrincipalServiceNamesList",
        "PrincipalType",
        "referer",
        "RequestedRegion",
        "ResourceAccount",
        "ResourceOrgID",
        "ResourceOrgPaths",
        "SecureTransport",
        "SourceAccount",
        "SourceArn",
        "SourceIdentity",
        "SourceIp",
        "SourceOrgID",
        "SourceOrgPaths",
        "SourceOwner",  # older than the list; S3's Block Public Access docs still name it
        "SourceVpc",
        "SourceVpcArn",
        "SourceVpce",
        "TagKeys",
        "TokenIssueTime",
        "UserAgent",
        "userid",
        "username",
        "ViaAWSService",
        "VpcSourceIp",
        "VpceAccount",
        "VpceOrgID",
        "VpceOrgPaths",
    }
)
# Global keys with a tag key of the caller's choosing after a slash (aws:PrincipalTag/team).
AWS_GLOBAL_CONDITION_KEY_FAMILIES: frozenset[str] = frozenset(
    {"PrincipalTag", "RequestTag", "ResourceTag"}
)

_GLOBAL_LOWERED = frozenset(key.lower() for key in AWS_GLOBAL_CONDITION_KEYS)
_GLOBAL_FAMILIES_LOWERED = frozenset(f.lower() for f in AWS_GLOBAL_CONDITION_KEY_FAMILIES)


def is_global_condition_key(name: str) -> bool:
    """Whether `name` (after `aws:`, any case) is one of IAM's global condition keys."""
    return _named_key(name.lower(), _GLOBAL_LOWERED, _GLOBAL_FAMILIES_LOWERED)
