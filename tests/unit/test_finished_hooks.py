"""The S3 application's one finished hook, made of the node's hooks (startup.finished_hooks)."""

from __future__ import annotations

from typing import Any

import pytest

from s3torrent.startup import finished_hooks


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4, 6])
def test_every_hook_is_called_once_in_order_with_the_request(count: int) -> None:
    calls: list[tuple[int, tuple[Any, ...]]] = []

    def hook_n(n: int) -> Any:
        def hook(*args: Any) -> None:
            calls.append((n, args))

        return hook

    combined = finished_hooks([hook_n(n) for n in range(count)])
    if count == 0:
        assert combined is None
        return
    assert combined is not None
    request, response = object(), object()
    combined(request, response, 200, 0.25)  # type: ignore[arg-type]
    assert calls == [(n, (request, response, 200, 0.25)) for n in range(count)]


def test_a_failing_hook_stops_the_ones_after_it_as_before() -> None:
    """A hook's exception goes to the S3 application, which logs it: the combined hook adds
    no handling of its own, whatever the number of hooks."""
    seen: list[str] = []

    def ok(*_: Any) -> None:
        seen.append("ok")

    def boom(*_: Any) -> None:
        raise RuntimeError("hook failed")

    for hooks in ([boom, ok], [ok, boom, ok], [ok, ok, boom, ok]):
        seen.clear()
        combined = finished_hooks(hooks)
        assert combined is not None
        with pytest.raises(RuntimeError):
            combined(object(), None, 500, 0.0)  # type: ignore[arg-type]
        assert seen == ["ok"] * hooks.index(boom)
