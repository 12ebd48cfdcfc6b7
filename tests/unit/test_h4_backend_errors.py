"""Audit h4: which blob-backend errors are the service being away (503 to the client)."""

from __future__ import annotations

from botocore.exceptions import ClientError

from s3torrent.store.errors import engine_unreachable


def _answer(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


def test_a_backend_5xx_after_its_retries_is_the_service_away() -> None:
    assert engine_unreachable(_answer("SlowDown", 503))
    assert engine_unreachable(_answer("ServiceUnavailable", 503))
    assert engine_unreachable(_answer("InternalError", 500))


def test_a_backend_refusal_is_not() -> None:
    assert not engine_unreachable(_answer("AccessDenied", 403))
    assert not engine_unreachable(_answer("NoSuchKey", 404))
    assert not engine_unreachable(ClientError({"Error": {"Code": "X"}}, "GetObject"))
