"""Audit of S3 semantics carried over from earlier audits, against S3's API reference:
query parameters that are not UTF-8, object lock (legal hold's three states, default
retention in years, locked versions against every way of removing them), and the integrity
headers S3 requires on some requests."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.conftest import sign_request

# ---- query parameters that are not UTF-8 ----

_LISTINGS = ("", "&list-type=2", "&versions", "&uploads")
_PARAMETERS = {
    "": ("prefix", "delimiter", "marker"),
    "&list-type=2": ("prefix", "delimiter", "start-after", "continuation-token"),
    "&versions": ("prefix", "delimiter", "key-marker"),
    "&uploads": ("prefix", "delimiter", "key-marker"),
}


@pytest.mark.parametrize("encoding", ["", "&encoding-type=url"])
@pytest.mark.parametrize("listing", _LISTINGS)
def test_a_listing_parameter_that_is_not_utf8_is_invalid_uri(
    s3: Any, bucket: str, server: Any, listing: str, encoding: str
) -> None:
    """%FF decodes to no UTF-8 string: S3 answers 400 InvalidURI, as for such a key in the
    path. The byte was replaced by U+FFFD, so a signed request failed its signature
    (SignatureDoesNotMatch: the canonical query differed from the client's) and an anonymous
    one listed from another prefix or marker than the one sent."""
    s3.put_object(Bucket=bucket, Key="a\ufffdb", Body=b"x")
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    for name in _PARAMETERS[listing]:
        url = f"{server.endpoint}/{bucket}?{name}=a%FFb{listing}{encoding}"
        for headers in (sign_request("GET", url), {}):
            resp = requests.get(url, headers=headers, timeout=5)
            assert resp.status_code == 400, (name, resp.content)
            assert b"<Code>InvalidURI</Code>" in resp.content, (name, resp.content)


def test_a_listing_parameter_of_utf8_bytes_still_lists(s3: Any, bucket: str, server: Any) -> None:
    s3.put_object(Bucket=bucket, Key="a\u00e9b", Body=b"x")
    url = f"{server.endpoint}/{bucket}?list-type=2&prefix=a%C3%A9&encoding-type=url"
    resp = requests.get(url, headers=sign_request("GET", url), timeout=5)
    assert resp.status_code == 200
    assert b"<Key>a%C3%A9b</Key>" in resp.content
