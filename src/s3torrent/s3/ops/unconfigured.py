"""Bucket features this server does not offer, read as what they are: never configured.

A website, replication, event notifications, requester pays, transfer acceleration, and the
analytics, inventory, metrics and Intelligent-Tiering configurations cannot be set here
(their PUTs are refused with NotImplemented), so reading one answers as S3 does for a bucket
that never had it: the "no such configuration" error, or the empty or default document (an
empty list for the configurations a bucket holds by id). Tools that read every setting of a
bucket (s3cmd `info` and `ws-info`, Terraform's bucket resource, file browsers) then get a
true answer instead of a 501. Deleting a website or replication configuration that does not
exist succeeds, as on S3; deleting an analytics, inventory, metrics or Intelligent-Tiering
configuration names one by id, and there is none (NoSuchConfiguration, as on S3). Setting
the payer to the bucket owner, which it always is, succeeds (Requester Pays is refused), and
so does setting an empty notification configuration, the one a bucket always has: it is how
tools remove a bucket's notifications (Terraform's bucket notification resource on destroy,
`aws s3api put-bucket-notification-configuration` with `{}`); one that names a destination
is refused.
"""

from __future__ import annotations

from aiohttp import web

from s3torrent.s3 import xml as s3xml
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.buckets import xml_response
from s3torrent.s3.ops.tagging import read_xml_body
from s3torrent.s3.server import S3Request


async def get_bucket_website(svc: S3Context, req: S3Request) -> web.StreamResponse:
    raise S3Error(
        "NoSuchWebsiteConfiguration",
        resource=req.resource,
        extra={"BucketName": req.bucket_name},
    )


async def get_bucket_replication(svc: S3Context, req: S3Request) -> web.StreamResponse:
    raise S3Error(
        "ReplicationConfigurationNotFoundError",
        resource=req.resource,
        extra={"BucketName": req.bucket_name},
    )


async def delete_nothing(svc: S3Context, req: S3Request) -> web.StreamResponse:
    """DeleteBucketWebsite, DeleteBucketReplication: there is nothing to delete."""
    return web.Response(status=204)


async def get_bucket_notification_configuration(
    svc: S3Context, req: S3Request
) -> web.StreamResponse:
    return xml_response(s3xml.render("NotificationConfiguration", {}))


# What a notification configuration may hold (S3's API, 2026-12): each one a destination.
_NOTIFICATION_KINDS = frozenset(
    {
        "TopicConfiguration",
        "QueueConfiguration",
        "CloudFunctionConfiguration",
        "EventBridgeConfiguration",
    }
)


async def put_bucket_notification_configuration(
    svc: S3Context, req: S3Request
) -> web.StreamResponse:
    """No notifications, which the bucket never has: saying so changes nothing. Any
    destination (a topic, queue, function or EventBridge) is refused as not implemented."""
    root = s3xml.parse(await read_xml_body(svc, req))
    if s3xml.local(root.tag) != "NotificationConfiguration":
        raise S3Error("MalformedXML")
    kinds = {s3xml.local(child.tag) for child in root}
    if not kinds <= _NOTIFICATION_KINDS:
        raise S3Error("MalformedXML")
    if kinds:
        raise S3Error(
            "NotImplemented", "Event notifications are not implemented: none can be configured."
        )
    return web.Response(status=200)


async def get_bucket_request_payment(svc: S3Context, req: S3Request) -> web.StreamResponse:
    return xml_response(s3xml.render("RequestPaymentConfiguration", {"Payer": "BucketOwner"}))


async def get_bucket_accelerate_configuration(svc: S3Context, req: S3Request) -> web.StreamResponse:
    return xml_response(s3xml.render("AccelerateConfiguration", {}))


# The root element of each list, as S3 names it.
_LIST_ROOTS = {
    "analytics": "ListBucketAnalyticsConfigurationResult",
    "inventory": "ListInventoryConfigurationsResult",
    "metrics": "ListMetricsConfigurationsResult",
    "intelligent-tiering": "ListBucketIntelligentTieringConfigurationsOutput",
}


def _feature(req: S3Request) -> str:
    return next(sub for sub in _LIST_ROOTS if sub in req.query)


async def no_such_configuration(svc: S3Context, req: S3Request) -> web.StreamResponse:
    """GET or DELETE of one analytics, inventory, metrics or Intelligent-Tiering
    configuration: the bucket has none, whatever the id."""
    if not req.query.get("id"):
        # S3 needs the id to name the configuration (GET without one lists them).
        raise S3Error(
            "InvalidArgument", "Missing required parameter id.", extra={"ArgumentName": "id"}
        )
    raise S3Error("NoSuchConfiguration", resource=req.resource)


async def list_no_configurations(svc: S3Context, req: S3Request) -> web.StreamResponse:
    """The empty list; a continuation token cannot come from an earlier page of it."""
    if "continuation-token" in req.query:
        raise S3Error(
            "InvalidArgument",
            "The continuation token provided is incorrect",
            extra={"ArgumentName": "continuation-token"},
        )
    return xml_response(s3xml.render(_LIST_ROOTS[_feature(req)], {"IsTruncated": "false"}))


async def put_bucket_request_payment(svc: S3Context, req: S3Request) -> web.StreamResponse:
    """The payer is the bucket owner, always: saying so changes nothing; Requester is refused."""
    root = s3xml.parse(await read_xml_body(svc, req))
    s3xml.check_document(root, "RequestPaymentConfiguration", {"Payer": None})
    payer = s3xml.text(root, "Payer")
    if payer == "Requester":
        raise S3Error("NotImplemented", "Requester Pays is not implemented: the owner pays.")
    if payer != "BucketOwner":
        raise S3Error("MalformedXML")
    return web.Response(status=200)
