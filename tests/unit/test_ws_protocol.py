"""The WebTorrent tracker core: messages in, actions out, no sockets."""

from __future__ import annotations

import contextlib
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.config import TorrentSettings
from s3torrent.torrent.catalog import TorrentCatalog, websocket_url
from s3torrent.tracker.ws_protocol import (
    Close,
    Send,
    WsAnnounce,
    WsAnswer,
    WsLimits,
    WsProtocolError,
    WsScrape,
    WsTracker,
    binary_string,
    parse_message,
)

H = bytes(range(200, 220))  # binary, not ASCII: code points above 127 must survive
H2 = b"\x00" * 19 + b"\x01"
A, B, C = (bytes([n]) * 20 for n in (0xA1, 0xB2, 0xC3))
LIMITS = WsLimits()


def offers(n: int) -> list[dict[str, Any]]:
    return [
        {"offer_id": binary_string(bytes([i]) * 20), "offer": {"type": "offer", "sdp": f"v={i}"}}
        for i in range(n)
    ]


def announce(peer: bytes, n_offers: int = 0, **extra: Any) -> WsAnnounce:
    msg: dict[str, Any] = {
        "action": "announce",
        "info_hash": binary_string(extra.pop("info_hash", H)),
        "peer_id": binary_string(peer),
        "numwant": n_offers,
        "left": extra.pop("left", 100),
        "offers": offers(n_offers),
        **extra,
    }
    request = parse_message(json.dumps(msg), LIMITS)
    assert isinstance(request, WsAnnounce)
    return request


def sent(actions: list[Send | Close]) -> list[tuple[int, dict[str, Any]]]:
    return [(a.conn, json.loads(a.text)) for a in actions if isinstance(a, Send)]


def joined(tracker: WsTracker, *peers: bytes) -> None:
    for conn, peer in enumerate(peers, start=1):
        assert tracker.connect(conn, "10.0.0.1")
        tracker.announce(conn, announce(peer))


def test_binary_ids_round_trip_through_json() -> None:
    request = announce(A, info_hash=H)
    assert request.info_hash == H and request.peer_id == A
    assert json.loads(json.dumps(binary_string(H))).encode("latin-1") == H


def test_announce_is_answered_with_interval_and_counts() -> None:
    tracker = WsTracker()
    tracker.connect(1, "10.0.0.1")
    [(conn, body)] = sent(tracker.announce(1, announce(A)))
    assert conn == 1
    assert body["action"] == "announce" and body["interval"] == LIMITS.interval
    assert body["info_hash"].encode("latin-1") == H
    assert (body["complete"], body["incomplete"]) == (0, 1)


def test_offers_go_to_other_peers_never_back_to_the_offerer() -> None:
    tracker = WsTracker(rng=random.Random(1))
    joined(tracker, A, B, C)
    assert tracker.connect(4, "10.0.0.2")
    actions = sent(tracker.announce(4, announce(bytes([0xD4]) * 20, n_offers=5)))
    relayed = actions[1:]
    # Five offers, three other peers: one offer each, the other two are not relayed.
    assert sorted(conn for conn, _ in relayed) == [1, 2, 3]
    for _, body in relayed:
        assert body["peer_id"].encode("latin-1") == bytes([0xD4]) * 20
        assert body["offer"]["type"] == "offer"
    # Each peer got a different offer.
    assert len({body["offer_id"] for _, body in relayed}) == 3


def test_numwant_bounds_the_offers_relayed() -> None:
    tracker = WsTracker(rng=random.Random(2))
    joined(tracker, A, B, C)
    request = announce(bytes([9]) * 20, n_offers=3, numwant=1, info_hash=H)
    tracker.connect(9, "10.0.0.9")
    assert len(sent(tracker.announce(9, request))) == 1 + 1


def test_answer_is_relayed_to_the_offerer_by_peer_id() -> None:
    tracker = WsTracker()
    joined(tracker, A, B)
    tracker.announce(1, announce(A, 1))  # A's offer (id 00...) goes to B, who answers it
    msg = {
        "action": "announce",
        "info_hash": binary_string(H),
        "peer_id": binary_string(B),
        "to_peer_id": binary_string(A),
        "offer_id": binary_string(b"\x00" * 20),
        "answer": {"type": "answer", "sdp": "v=0"},
    }
    request = parse_message(json.dumps(msg), LIMITS)
    assert isinstance(request, WsAnswer)
    [(conn, body)] = sent(tracker.answer(2, request))
    assert conn == 1
    assert body["answer"] == {"type": "answer", "sdp": "v=0"}
    assert body["peer_id"].encode("latin-1") == B
    assert body["offer_id"].encode("latin-1") == b"\x00" * 20


def test_answer_from_a_socket_outside_the_swarm_is_refused() -> None:
    tracker = WsTracker()
    joined(tracker, A)
    tracker.connect(5, "10.0.0.5")
    request = WsAnswer(H, B, A, b"\x07" * 20, {"type": "answer", "sdp": ""})
    [(conn, body)] = sent(tracker.answer(5, request))
    assert conn == 5 and "failure reason" in body


def test_a_peer_id_belongs_to_its_socket() -> None:
    tracker = WsTracker()
    joined(tracker, A)
    tracker.connect(2, "10.0.0.2")
    [(_, body)] = sent(tracker.announce(2, announce(A)))
    assert body["failure reason"] == "peer id in use"


def test_stopped_and_disconnect_leave_the_swarm() -> None:
    tracker = WsTracker()
    joined(tracker, A, B)
    assert tracker.peers(H) == 2
    assert tracker.announce(1, announce(A, event="stopped")) == []
    assert tracker.peers(H) == 1
    tracker.disconnect(2)
    assert tracker.peers(H) == 0


def test_completed_counts_once_and_seeds_are_complete() -> None:
    tracker = WsTracker()
    joined(tracker, A)
    tracker.announce(1, announce(A, event="completed", left=0))
    tracker.announce(1, announce(A, event="completed", left=0))
    stats = tracker.stats(H)
    assert (stats.complete, stats.incomplete, stats.completed) == (1, 0, 1)


def test_transferred_bytes_add_up_from_each_browsers_increases() -> None:
    tracker = WsTracker()
    joined(tracker, A, B)
    tracker.announce(1, announce(A, uploaded=100, downloaded=1000))
    tracker.announce(1, announce(A, uploaded=150, downloaded=1500))
    tracker.announce(2, announce(B, uploaded=0, downloaded=700))
    tracker.announce(2, announce(B, uploaded=0, downloaded=200))  # B restarted
    stats = tracker.stats(H)
    assert (stats.uploaded, stats.downloaded) == (150, 1500 + 700 + 200)
    tracker.revoke(H)
    assert tracker.stats(H).downloaded == 0


def test_scrape_reports_admitted_hashes_only() -> None:
    tracker = WsTracker()
    joined(tracker, A, B)
    request = parse_message(
        json.dumps({"action": "scrape", "info_hash": [binary_string(H), binary_string(H2)]}),
        LIMITS,
    )
    assert isinstance(request, WsScrape) and request.info_hashes == (H, H2)
    [(_, body)] = sent(tracker.scrape(1, (H,)))
    assert body["action"] == "scrape"
    assert body["files"] == {binary_string(H): {"complete": 0, "incomplete": 2, "downloaded": 0}}


def test_refusal_names_the_torrent() -> None:
    tracker = WsTracker()
    tracker.connect(1, "10.0.0.1")
    [(_, body)] = sent(tracker.refuse(1, announce(A), "unregistered torrent"))
    assert body == {
        "failure reason": "unregistered torrent",
        "action": "announce",
        "info_hash": binary_string(H),
    }
    assert tracker.peers(H) == 0


def test_revoke_tells_every_peer_and_closes_sockets_left_without_a_swarm() -> None:
    tracker = WsTracker()
    joined(tracker, A, B)
    tracker.announce(2, announce(B, info_hash=H2))  # socket 2 is in another swarm too
    actions = tracker.revoke(H)
    failures = sent(actions)
    assert sorted(conn for conn, _ in failures) == [1, 2]
    assert all("failure reason" in body for _, body in failures)
    assert [a.conn for a in actions if isinstance(a, Close)] == [1]
    assert tracker.peers(H) == 0 and tracker.peers(H2) == 1


def test_bounds() -> None:
    limits = WsLimits(max_peers_per_swarm=2, max_connections_per_ip=2, max_offers=3)
    tracker = WsTracker(limits)
    assert tracker.connect(1, "10.0.0.1") and tracker.connect(2, "10.0.0.1")
    assert not tracker.connect(3, "10.0.0.1")
    tracker.disconnect(2)
    assert tracker.connect(3, "10.0.0.1")
    assert tracker.connect(4, "10.0.0.4")
    tracker.announce(1, announce(A))
    tracker.announce(3, announce(B))
    [(_, body)] = sent(tracker.announce(4, announce(C)))
    assert body["failure reason"] == "swarm full"
    ids = {"info_hash": binary_string(H), "peer_id": binary_string(A)}
    too_many = json.dumps({"action": "announce", **ids, "offers": offers(4)})
    with pytest.raises(WsProtocolError, match="too many offers"):
        parse_message(too_many, limits)
    with pytest.raises(WsProtocolError, match="too large"):
        parse_message("x" * (limits.max_message_bytes + 1), limits)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"action": "connect"}',
        '{"action": "announce", "info_hash": "short", "peer_id": "x"}',
        json.dumps({"action": "announce", "info_hash": "\u0100" * 20, "peer_id": "a" * 20}),
        json.dumps({"action": "announce", "info_hash": "a" * 20, "peer_id": "a" * 20, "left": "1"}),
        json.dumps({"action": "announce", "info_hash": "a" * 20, "peer_id": "a" * 20, "offers": 3}),
        '{"action": "announce", "info_hash": "aaaaaaaaaaaaaaaaaaaa", "peer_id": '
        '"aaaaaaaaaaaaaaaaaaaa", "uploaded": Infinity}',
        json.dumps({"action": "scrape"}),
        json.dumps({"action": "scrape", "info_hash": ["a" * 20] * 65}),
    ],
)
def test_bad_messages_are_protocol_errors(text: str) -> None:
    with pytest.raises(WsProtocolError):
        parse_message(text, LIMITS)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_any_input_is_a_request_or_a_protocol_error(data: str | bytes) -> None:
    with contextlib.suppress(WsProtocolError):
        parse_message(data, LIMITS)


def test_websocket_url_follows_the_public_scheme() -> None:
    assert websocket_url("http://127.0.0.1:9000") == "ws://127.0.0.1:9000"
    assert websocket_url("https://files.example.com") == "wss://files.example.com"
    catalog = TorrentCatalog(TorrentSettings())
    assert not any(u.startswith("ws") for u in catalog.own_trackers("https://x.example"))
    catalog.ws_tracker_path = "/_tracker/ws"
    assert catalog.own_trackers("https://x.example")[-1] == "wss://x.example/_tracker/ws"
