"""S3 errors as values: a code, a message, and the HTTP status S3 gives that code."""

from __future__ import annotations

from collections.abc import Mapping

from s3torrent.access.errors import AccessError
from s3torrent.access.principals import user_arn
from s3torrent.store import errors as store_errors
from s3torrent.store.errors import StoreError

# code -> (HTTP status, default message), after the AWS S3 API reference's error table.
ERROR_TABLE: dict[str, tuple[int, str]] = {
    "AccessControlListNotSupported": (400, "The bucket does not allow ACLs"),
    "AccessDenied": (403, "Access Denied"),
    "AccountProblem": (403, "There is a problem with your account."),
    "AuthorizationHeaderMalformed": (400, "The authorization header is malformed."),
    "AuthorizationQueryParametersError": (400, "Error parsing the X-Amz-Credential parameter."),
    "BadDigest": (
        400,
        "The Content-MD5 or checksum you specified did not match what was received.",
    ),
    "BucketAlreadyExists": (409, "The requested bucket name is not available."),
    "BucketAlreadyOwnedByYou": (
        409,
        "Your previous request to create the named bucket succeeded and you already own it.",
    ),
    "BucketNotEmpty": (409, "The bucket you tried to delete is not empty."),
    "ObjectLockConfigurationNotFoundError": (
        404,
        "Object Lock configuration does not exist for this bucket",
    ),
    "NoSuchObjectLockConfiguration": (
        404,
        "The specified object does not have a ObjectLock configuration",
    ),
    "InvalidRetentionPeriod": (400, "The retention period is not valid."),
    "IllegalVersioningConfigurationException": (
        400,
        "The Versioning element must be specified",
    ),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed size."),
    "EntityTooSmall": (400, "Your proposed upload is smaller than the minimum allowed size."),
    "ConditionalRequestConflict": (
        409,
        "A conflicting operation occurred. If using PutObject you can retry the request. If "
        "using multipart upload you should initiate another CreateMultipartUpload request and "
        "re-upload each part.",
    ),
    "ExpiredToken": (400, "The provided token has expired."),
    "InvalidToken": (400, "The provided token is malformed or otherwise invalid."),
    "IncompleteBody": (
        400,
        "You did not provide the number of bytes specified by the Content-Length HTTP header.",
    ),
    # WebDAV's 507, as MinIO answers a full disk: SDKs do not retry it blindly as they would
    # a 503 SlowDown, so the client learns at once that space must be freed.
    "InsufficientStorage": (507, "The server's storage is full; delete objects to free space."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "InvalidEncryptionAlgorithmError": (
        400,
        "The encryption request you specified is not valid. The valid value is AES256.",
    ),
    "InvalidAccessKeyId": (
        403,
        "The AWS access key ID you provided does not exist in our records.",
    ),
    "InvalidArgument": (400, "Invalid Argument"),
    "InvalidBucketName": (400, "The specified bucket is not valid."),
    "InvalidBucketState": (409, "The request is not valid with the current state of the bucket."),
    "InvalidChunkSizeError": (
        400,
        "Only the last chunk is allowed to have a size less than 8192 bytes",
    ),
    "IllegalLocationConstraintException": (
        400,
        "The specified location constraint is incompatible with this endpoint.",
    ),
    "UnresolvableGrantByEmailAddress": (
        400,
        "The email address you provided does not match any account on record.",
    ),
    "InvalidDigest": (400, "The Content-MD5 or checksum you specified is not valid."),
    "InvalidLocationConstraint": (400, "The specified location constraint is not valid."),
    "InvalidObjectState": (403, "The operation is not valid for the current state of the object."),
    "InvalidPart": (
        400,
        "One or more of the specified parts could not be found. The part may not have been "
        "uploaded, or the specified entity tag may not match the part's entity tag.",
    ),
    "InvalidPartOrder": (
        400,
        "The list of parts was not in ascending order. Parts must be ordered by part number.",
    ),
    "InvalidPolicyDocument": (400, "The content of the form does not meet the conditions."),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "InvalidRequest": (400, "Invalid Request"),
    "InvalidStorageClass": (400, "The storage class you specified is not valid"),
    "InvalidRedirectLocation": (
        400,
        "The website redirect location must have a prefix of 'http://' or 'https://' or '/'.",
    ),
    "InvalidURI": (400, "Couldn't parse the specified URI."),
    "KeyTooLongError": (400, "Your key is too long."),
    "MalformedACLError": (
        400,
        "The XML you provided was not well-formed or did not validate against our published "
        "schema.",
    ),
    "MalformedPolicy": (400, "Policies must be valid JSON and the first byte must be '{'."),
    "MalformedXML": (
        400,
        "The XML you provided was not well-formed or did not validate against our published "
        "schema.",
    ),
    "MaxMessageLengthExceeded": (400, "Your request was too big."),
    "MetadataTooLarge": (400, "Your metadata headers exceed the maximum allowed metadata size."),
    "MethodNotAllowed": (405, "The specified method is not allowed against this resource."),
    "MissingContentLength": (411, "You must provide the Content-Length HTTP header."),
    "MissingSecurityHeader": (400, "Your request is missing a required header."),
    "NoSuchBucket": (404, "The specified bucket does not exist."),
    "NoSuchBucketPolicy": (404, "The bucket policy does not exist."),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchUpload": (
        404,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may "
        "have been aborted or completed.",
    ),
    "NoSuchVersion": (404, "The specified version does not exist."),
    "NoSuchPublicAccessBlockConfiguration": (
        404,
        "The public access block configuration was not found.",
    ),
    "NoSuchTagSet": (404, "The TagSet does not exist."),
    "NoSuchConfiguration": (404, "The specified configuration does not exist."),
    "NoSuchWebsiteConfiguration": (
        404,
        "The specified bucket does not have a website configuration",
    ),
    "ReplicationConfigurationNotFoundError": (404, "The replication configuration was not found"),
    "NotImplemented": (501, "A header you provided implies functionality that is not implemented."),
    "NotModified": (304, "Not Modified"),
    "PreconditionFailed": (412, "At least one of the preconditions you specified did not hold."),
    "RequestHeaderSectionTooLarge": (400, "Your request header section exceeds the maximum size."),
    "RequestTimeTooSkewed": (
        403,
        "The difference between the request time and the server's time is too large.",
    ),
    "RequestTimeout": (
        400,
        "Your socket connection to the server was not read from or written to within the "
        "timeout period.",
    ),
    "ServerSideEncryptionConfigurationNotFoundError": (
        404,
        "The server side encryption configuration was not found",
    ),
    "ServiceUnavailable": (503, "Please reduce your request rate."),
    "SignatureDoesNotMatch": (
        403,
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    ),
    "SlowDown": (503, "Please reduce your request rate."),
    "TooManyBuckets": (400, "You have attempted to create more buckets than allowed."),
    "UnexpectedContent": (400, "This request does not support content."),
    "XAmzContentSHA256Mismatch": (
        400,
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    ),
}


class S3Error(Exception):
    """An S3 error response: rendered once, by the server's error middleware."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        status: int | None = None,
        resource: str | None = None,
        extra: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        default_status, default_message = ERROR_TABLE.get(code, (400, code))
        self.code = code
        self.message = message if message is not None else default_message
        self.status = status if status is not None else default_status
        self.resource = resource
        self.extra: dict[str, str] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(f"{code}: {self.message}")


def s3_error_of(exc: StoreError | AccessError) -> S3Error:
    """The S3 error an access or metadata store error means to a client."""
    if isinstance(exc, AccessError):
        return S3Error(exc.code, exc.message or None, extra=exc.extra)
    if isinstance(exc, store_errors.NoSuchBucket):
        return S3Error("NoSuchBucket", resource=f"/{exc.name}", extra={"BucketName": exc.name})
    if isinstance(exc, store_errors.StorageFull):
        return S3Error("InsufficientStorage")
    if isinstance(exc, store_errors.NoSuchUpload):
        return S3Error("NoSuchUpload", extra={"UploadId": exc.upload_id})
    if isinstance(exc, store_errors.PartChanged):
        # Uploaded again while the parts were joined: the ETag asked for is gone.
        return S3Error("InvalidPart", extra={"PartNumber": str(exc.part_number)})
    if isinstance(exc, store_errors.PreconditionFailed):
        return S3Error("PreconditionFailed", extra={"Condition": exc.condition})
    if isinstance(exc, store_errors.ConditionalConflict):
        return S3Error("ConditionalRequestConflict", resource=f"/{exc.bucket}/{exc.key}")
    if isinstance(exc, store_errors.ObjectMissing):
        return S3Error("NoSuchKey", resource=f"/{exc.bucket}/{exc.key}", extra={"Key": exc.key})
    if isinstance(exc, store_errors.ObjectLocked):
        # S3's answer to removing a locked version, whoever asks.
        return S3Error("AccessDenied", "Access Denied because object protected by object lock.")
    if isinstance(exc, store_errors.BucketNotEmpty):
        return S3Error("BucketNotEmpty", resource=f"/{exc.name}", extra={"BucketName": exc.name})
    if isinstance(exc, store_errors.NoSuchUser):
        # IAM binds a principal to an existing user; S3 refuses a name with none.
        return S3Error("MalformedPolicy", f"Invalid principal in policy: {user_arn(exc.name)}")
    if isinstance(exc, store_errors.BucketAlreadyExists):
        return S3Error(
            "BucketAlreadyExists", resource=f"/{exc.name}", extra={"BucketName": exc.name}
        )
    return S3Error("InternalError")
