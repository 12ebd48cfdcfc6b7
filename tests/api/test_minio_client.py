"""minio-py (another SDK with its own signer and XML) on object and bucket tags."""

from __future__ import annotations

import io
from typing import Any

import pytest

from tests.conftest import ROOT_AK, ROOT_SK, LiveServer

minio = pytest.importorskip("minio")
from minio.commonconfig import Tags  # noqa: E402


@pytest.fixture(scope="module")
def mc(server: LiveServer) -> Any:
    return minio.Minio(
        f"127.0.0.1:{server.port}",
        access_key=ROOT_AK,
        secret_key=ROOT_SK,
        secure=False,
        region="us-east-1",
    )


def test_minio_object_tags_round_trip(mc: Any, s3: Any, bucket: str) -> None:
    tags = Tags.new_object_tags()
    tags["project"] = "alpha"
    tags["team"] = "web ops"
    mc.put_object(bucket, "k", io.BytesIO(b"data"), 4, tags=tags)
    assert dict(mc.get_object_tags(bucket, "k")) == {"project": "alpha", "team": "web ops"}
    replaced = Tags.new_object_tags()
    replaced["stage"] = "prod"
    mc.set_object_tags(bucket, "k", replaced)
    assert dict(mc.get_object_tags(bucket, "k")) == {"stage": "prod"}
    assert (
        s3.head_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPHeaders"][
            "x-amz-tagging-count"
        ]
        == "1"
    )
    mc.delete_object_tags(bucket, "k")
    assert not mc.get_object_tags(bucket, "k")


def test_minio_bucket_tags_round_trip(mc: Any, bucket: str) -> None:
    tags = Tags.new_bucket_tags()
    tags["cost-centre"] = "42"
    mc.set_bucket_tags(bucket, tags)
    assert dict(mc.get_bucket_tags(bucket)) == {"cost-centre": "42"}
    mc.delete_bucket_tags(bucket)
    assert not mc.get_bucket_tags(bucket)


def test_minio_stat_and_get_after_tagged_put(mc: Any, bucket: str) -> None:
    tags = Tags.new_object_tags()
    tags["a"] = "1"
    mc.put_object(
        bucket, "obj", io.BytesIO(b"hello"), 5, tags=tags, metadata={"x-amz-meta-who": "me"}
    )
    stat = mc.stat_object(bucket, "obj")
    assert stat.size == 5
    assert stat.metadata["x-amz-meta-who"] == "me"
    assert mc.get_object(bucket, "obj").read() == b"hello"
