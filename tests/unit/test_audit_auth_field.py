"""Audit of request authentication (session 49): a presigned URL's own parameters given
twice, the second accepted and ignored."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from s3torrent.s3 import sigv2
from s3torrent.s3.errors import S3Error
from tests.unit.test_sigv4 import ACCESS_KEY, SECRET, expect_error, lookup, presign, verify

NOW = datetime(2026, 12, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    "name", ["X-Amz-Signature", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires"]
)
def test_a_sigv4_presigned_parameter_given_twice_is_refused(name: str) -> None:
    """A presigned URL with X-Amz-Signature appended a second time (any value) verified:
    the second was read by nobody (the signature is left out of what is signed, and the
    first was taken). Each of SigV4's own parameters given twice is refused, never one
    picked: AuthorizationQueryParametersError."""
    method, path, query, headers = presign("GET", "k")
    verify((method, path, query, headers))  # as signed
    value = dict(query)[name]
    twice = [*query, (name, "0" * 64 if name == "X-Amz-Signature" else value)]
    error = expect_error("AuthorizationQueryParametersError", (method, path, twice, headers))
    assert name in error.message


def _v2_query(expires: str) -> list[tuple[str, str]]:
    signature = sigv2.sign(SECRET, sigv2.string_to_sign("GET", "", "", expires, [], "/b/k"))
    return [("AWSAccessKeyId", ACCESS_KEY), ("Expires", expires), ("Signature", signature)]


@pytest.mark.parametrize("name", ["AWSAccessKeyId", "Expires", "Signature"])
def test_a_sigv2_presigned_parameter_given_twice_is_refused(name: str) -> None:
    """A SigV2 presigned URL with its Signature, Expires or AWSAccessKeyId given a second
    time verified with the first and ignored the second: refused now, as SigV4's are."""
    query = _v2_query(str(int(NOW.timestamp()) + 300))

    def check(pairs: list[tuple[str, str]]) -> None:
        sigv2.verify_request(
            method="GET", raw_path="/b/k", query_pairs=pairs, headers=[("Host", "h")],
            now=NOW, lookup_secret=lookup,
        )  # fmt: skip

    check(query)
    with pytest.raises(S3Error) as info:
        check([*query, (name, dict(query)[name])])
    assert info.value.code == "InvalidArgument" and name in info.value.message


def _policy(*conditions: object) -> str:
    import base64
    import json

    document = {"expiration": "2030-01-01T00:00:00.000Z", "conditions": list(conditions)}
    return base64.b64encode(json.dumps(document).encode()).decode()


def test_every_content_length_range_of_a_policy_holds() -> None:
    """A policy naming content-length-range twice was held to the last one only (a file of
    1 MB passed [0, 10] and [0, 1000000]): each condition of a policy must hold, so the
    file's size is held to both, the range they share."""
    from s3torrent.s3 import post_policy as pp

    policy = pp.decode_policy(
        _policy(["content-length-range", 0, 10], ["content-length-range", 5, 1000000])
    )
    assert policy.length_range == (5, 10)
    pp.check_length(policy, 10)
    for size, code in ((1000000, "EntityTooLarge"), (4, "EntityTooSmall")):
        with pytest.raises(S3Error) as info:
            pp.check_length(policy, size)
        assert info.value.code == code


@pytest.mark.parametrize("component", ["Credential", "SignedHeaders", "Signature"])
def test_an_authorization_component_given_twice_is_refused(component: str) -> None:
    """An Authorization header naming a component twice verified with the last and ignored
    the first (a captured request with a `Signature=0...` put before its own was served):
    AuthorizationHeaderMalformed, neither is picked."""
    from tests.unit.test_sigv4 import sign_header

    method, path, query, headers = sign_header("GET", "k")
    verify((method, path, query, headers))
    auth = dict(headers)["Authorization"]
    scheme, _, rest = auth.partition(" ")
    first = next(p for p in rest.split(", ") if p.startswith(component + "="))
    doubled = [(n, f"{scheme} {first}, {rest}" if n == "Authorization" else v) for n, v in headers]
    expect_error("AuthorizationHeaderMalformed", (method, path, query, doubled))
