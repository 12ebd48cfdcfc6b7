"""Routing: request target parsing (path and virtual-host style), endpoints, bucket names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3torrent.s3.errors import S3Error
from s3torrent.s3.routing import (
    Endpoint,
    Target,
    check_bucket_name,
    check_key,
    parse_target,
    route,
)


@pytest.mark.parametrize(
    ("raw", "bucket", "key"),
    [
        ("/", None, None),
        ("/bucket", "bucket", None),
        ("/bucket/", "bucket", None),
        ("/bucket/key", "bucket", "key"),
        ("/bucket/a/b/c", "bucket", "a/b/c"),
        ("/bucket//double", "bucket", "/double"),
        ("/bucket/trailing/", "bucket", "trailing/"),
        ("/bucket/with%20space", "bucket", "with space"),
        ("/bucket/plus+stays", "bucket", "plus+stays"),
        ("/bucket/pct%2520", "bucket", "pct%20"),
        ("/bucket/..%2F..%2Fetc", "bucket", "../../etc"),
        ("/bucket/../x", "bucket", "../x"),
        ("/bucket/%E6%97%A5%E6%9C%AC", "bucket", "日本"),
        ("/bucket/q?acl", "bucket", "q"),
    ],
)
def test_path_style_targets(raw: str, bucket: str | None, key: str | None) -> None:
    assert parse_target(raw, "127.0.0.1:9000", None) == Target(bucket, key, False)


@pytest.mark.parametrize(
    ("host", "raw", "bucket", "key"),
    [
        ("photos.s3.example.com", "/", "photos", None),
        ("photos.s3.example.com:9000", "/a/b.jpg", "photos", "a/b.jpg"),
        ("PHOTOS.S3.EXAMPLE.COM", "/k", "photos", "k"),
        ("my.dotted.bucket.s3.example.com", "/k", "my.dotted.bucket", "k"),
    ],
)
def test_virtual_host_targets(host: str, raw: str, bucket: str, key: str | None) -> None:
    assert parse_target(raw, host, "s3.example.com") == Target(bucket, key, True)


@pytest.mark.parametrize("host", ["s3.example.com", "s3.example.com:9000", "127.0.0.1:9000",
                                  "other.org", None])  # fmt: skip
def test_hosts_outside_the_domain_are_path_style(host: str | None) -> None:
    assert parse_target("/b/k", host, "s3.example.com") == Target("b", "k", False)


@pytest.mark.parametrize("raw", ["/b/%C3%28", "/b/%FF", "nopath"])
def test_undecodable_paths_are_invalid_uri(raw: str) -> None:
    with pytest.raises(S3Error) as exc:
        parse_target(raw, None, None)
    assert exc.value.code == "InvalidURI"


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=50))
def test_any_percent_encoded_key_round_trips(key: str) -> None:
    from urllib.parse import quote

    t = parse_target("/bucket/" + quote(key, safe=""), None, None)
    assert t.key == key


B = Target("b", None, False)
O = Target("b", "k", False)  # noqa: E741
S = Target(None, None, False)


@pytest.mark.parametrize(
    ("method", "target", "query", "headers", "expected"),
    [
        ("GET", S, {}, {}, Endpoint.ListBuckets),
        ("HEAD", S, {}, {}, Endpoint.ListBuckets),
        ("PUT", B, {}, {}, Endpoint.CreateBucket),
        ("HEAD", B, {}, {}, Endpoint.HeadBucket),
        ("DELETE", B, {}, {}, Endpoint.DeleteBucket),
        ("GET", B, {}, {}, Endpoint.ListObjects),
        ("GET", B, {"list-type": "2"}, {}, Endpoint.ListObjectsV2),
        ("GET", B, {"versions": ""}, {}, Endpoint.ListObjectVersions),
        ("GET", B, {"location": ""}, {}, Endpoint.GetBucketLocation),
        ("POST", B, {"delete": ""}, {}, Endpoint.DeleteObjects),
        ("POST", B, {}, {}, Endpoint.PostObject),
        ("GET", B, {"cors": ""}, {}, Endpoint.GetBucketCors),
        ("PUT", B, {"cors": ""}, {}, Endpoint.PutBucketCors),
        ("DELETE", B, {"cors": ""}, {}, Endpoint.DeleteBucketCors),
        ("GET", B, {"uploads": ""}, {}, Endpoint.ListMultipartUploads),
        ("PUT", O, {}, {}, Endpoint.PutObject),
        ("PUT", O, {}, {"x-amz-copy-source": "/a/b"}, Endpoint.CopyObject),
        ("GET", O, {}, {}, Endpoint.GetObject),
        ("GET", O, {"response-content-type": "x"}, {}, Endpoint.GetObject),
        ("HEAD", O, {}, {}, Endpoint.HeadObject),
        ("DELETE", O, {}, {}, Endpoint.DeleteObject),
        ("POST", O, {"uploads": ""}, {}, Endpoint.CreateMultipartUpload),
        ("PUT", O, {"uploadId": "u", "partNumber": "1"}, {}, Endpoint.UploadPart),
        ("POST", O, {"uploadId": "u"}, {}, Endpoint.CompleteMultipartUpload),
        ("DELETE", O, {"uploadId": "u"}, {}, Endpoint.AbortMultipartUpload),
        ("GET", O, {"uploadId": "u"}, {}, Endpoint.ListParts),
        ("GET", O, {"torrent": ""}, {}, Endpoint.GetObjectTorrent),
        ("GET", O, {"acl": ""}, {}, Endpoint.GetObjectAcl),
        ("GET", B, {"lifecycle": ""}, {}, Endpoint.GetBucketLifecycleConfiguration),
        ("PUT", B, {"lifecycle": ""}, {}, Endpoint.PutBucketLifecycleConfiguration),
        ("DELETE", B, {"lifecycle": ""}, {}, Endpoint.DeleteBucketLifecycle),
        ("GET", B, {"website": ""}, {}, Endpoint.GetBucketWebsite),
        ("DELETE", B, {"website": ""}, {}, Endpoint.DeleteBucketWebsite),
        ("GET", B, {"replication": ""}, {}, Endpoint.GetBucketReplication),
        ("DELETE", B, {"replication": ""}, {}, Endpoint.DeleteBucketReplication),
        ("GET", B, {"notification": ""}, {}, Endpoint.GetBucketNotificationConfiguration),
        ("GET", B, {"requestPayment": ""}, {}, Endpoint.GetBucketRequestPayment),
        ("PUT", B, {"requestPayment": ""}, {}, Endpoint.PutBucketRequestPayment),
        ("GET", B, {"accelerate": ""}, {}, Endpoint.GetBucketAccelerateConfiguration),
    ],
)
def test_route_table(
    method: str, target: Target, query: dict[str, str], headers: dict[str, str], expected: Endpoint
) -> None:
    assert route(method, target, query, headers) is expected


@pytest.mark.parametrize(
    ("method", "target", "query"),
    [("PUT", B, {"analytics": "", "id": "a"}), ("PUT", B, {"inventory": ""}),
     ("GET", O, {"select": ""}), ("POST", O, {"restore": ""}), ("PUT", B, {"website": ""}),
     ("PUT", B, {"replication": ""}), ("PUT", B, {"accelerate": ""})],
)  # fmt: skip
def test_unsupported_subresources_are_not_implemented(
    method: str, target: Target, query: dict[str, str]
) -> None:
    with pytest.raises(S3Error) as exc:
        route(method, target, query, {})
    assert (exc.value.code, exc.value.status) == ("NotImplemented", 501)


@pytest.mark.parametrize(
    ("method", "target"), [("POST", S), ("DELETE", S), ("PATCH", O), ("PATCH", B)]
)
def test_wrong_methods_are_method_not_allowed(method: str, target: Target) -> None:
    with pytest.raises(S3Error) as exc:
        route(method, target, {}, {})
    assert exc.value.status == 405


@pytest.mark.parametrize(
    "name",
    ["abc", "a" * 63, "my-bucket", "my.bucket", "1bucket", "b-1.2-3", "bucket9"],
)
def test_valid_bucket_names(name: str) -> None:
    check_bucket_name(name)


@pytest.mark.parametrize(
    "name",
    ["ab", "a" * 64, "Bucket", "bucket_", "-bucket", "bucket-", ".bucket", "bucket.",
     "a..b", "a.-b", "a-.b", "192.168.1.1", "xn--abc", "sthree-x", "x-s3alias", "x--ol-s3",
     "my bucket", "bücket", ""],
)  # fmt: skip
def test_invalid_bucket_names(name: str) -> None:
    with pytest.raises(S3Error) as exc:
        check_bucket_name(name)
    assert exc.value.code == "InvalidBucketName"


def test_key_length_limit_is_1024_utf8_bytes() -> None:
    check_key("k" * 1024)
    check_key("é" * 512)
    for key in ("k" * 1025, "é" * 512 + "k"):
        with pytest.raises(S3Error) as exc:
            check_key(key)
        assert exc.value.code == "KeyTooLongError"


def _botocore_subresource_operations() -> list[tuple[str, str, str, str]]:
    """(operation, method, scope, query) of every S3 operation botocore knows that selects
    itself by its query string."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("s3")
    found = []
    for name in model.operation_names:
        http = model.operation_model(name).http
        uri = http["requestUri"]
        path, _, query = uri.partition("?")
        if not query or "{Bucket}" not in path:
            continue
        scope = "object" if "{Key+}" in path else "bucket"
        # The query parameters a client must send as well (such as the `id` that tells
        # GetBucketAnalyticsConfiguration from ListBucketAnalyticsConfigurations).
        shape = model.operation_model(name).input_shape
        for member in shape.required_members if shape is not None else ():
            where = shape.members[member].serialization
            if where.get("location") == "querystring":
                query += f"&{where['name']}=1"
        found.append((name, http["method"], scope, query))
    return sorted(found)


# Operations botocore names by another name than ours (the same request).
_SYNONYMS = {
    "GetBucketLifecycle": "GetBucketLifecycleConfiguration",
    "PutBucketLifecycle": "PutBucketLifecycleConfiguration",
    # The legacy GET ?notification: the same request, answered with the same document.
    "GetBucketNotification": "GetBucketNotificationConfiguration",
    # The legacy PUT ?notification: its empty document is accepted and anything else refused
    # alike (its Topic, Queue and CloudFunction configurations name destinations).
    "PutBucketNotification": "PutBucketNotificationConfiguration",
}


@pytest.mark.parametrize(
    ("operation", "method", "scope", "query"),
    _botocore_subresource_operations(),
    ids=lambda v: str(v),
)
def test_every_s3_operation_by_sub_resource_is_routed_to_itself_or_refused(
    operation: str, method: str, scope: str, query: str
) -> None:
    params = {}
    for field in query.split("&"):
        name, _, value = field.partition("=")
        params[name] = value
    target = Target("bucket", "key" if scope == "object" else None, False)
    try:
        endpoint = route(method, target, params, {})
    except S3Error as exc:
        assert exc.code == "NotImplemented", (operation, exc.code)
        return
    assert endpoint.name == _SYNONYMS.get(operation, operation)


def test_the_walk_covers_the_operations_that_once_overwrote_an_object() -> None:
    names = {op for op, *_ in _botocore_subresource_operations()}
    assert {"PutObjectTagging", "GetObjectTorrent", "SelectObjectContent"} <= names


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
@pytest.mark.parametrize("key", ["key", None])
def test_a_write_with_an_unknown_valueless_parameter_is_refused(
    method: str, key: str | None
) -> None:
    with pytest.raises(S3Error) as exc:
        route(method, Target("bucket", key, False), {"newOperation": ""}, {})
    assert exc.value.code == "NotImplemented"


def test_valued_parameters_and_reads_are_not_taken_for_operations() -> None:
    obj = Target("bucket", "key", False)
    assert route("PUT", obj, {"x-id": "PutObject"}, {}) is Endpoint.PutObject
    assert route("DELETE", obj, {"versionId": ""}, {}) is Endpoint.DeleteObject
    assert route("GET", obj, {"cachebust": ""}, {}) is Endpoint.GetObject
    assert route("HEAD", obj, {"x-amz-anything": ""}, {}) is Endpoint.HeadObject
