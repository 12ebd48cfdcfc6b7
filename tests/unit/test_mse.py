"""MSE/PE responder: both ends of the handshake driven against each other, and hostile input.

The initiator (tests/mse_initiator.py) is written from the spec on its own (its RC4 is plain
Python), so the responder is checked against an independent implementation, not itself.
"""

from __future__ import annotations

import hashlib
import random
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.peer import wire
from s3torrent.peer.mse import (
    CRYPTO_PLAINTEXT,
    CRYPTO_RC4,
    KEY_LENGTH,
    MAX_PAD,
    PRIME,
    MseResponder,
    classify_opening,
    obfuscated_swarm_id,
)
from s3torrent.peer.mse_stream import MseStream
from tests.mse_initiator import HANDSHAKE, INFO_HASH, Initiator

OTHER_HASH = hashlib.sha1(b"another published torrent").digest()
PUBLISHED = {obfuscated_swarm_id(h): h for h in (INFO_HASH, OTHER_HASH)}


def lookup(obfuscated: bytes) -> bytes | None:
    return PUBLISHED.get(obfuscated)


def handshake(a: Initiator, b: MseResponder | None = None) -> tuple[MseResponder, bytes]:
    """Both ends through steps 1-4; (responder, the clear payload it got)."""
    b = b or MseResponder(lookup)
    assert b.receive_data(a.opening()) == b""
    payload = b.receive_data(a.step3(b.data_to_send()))
    a.step4(b.data_to_send())
    return b, payload


# ---------------------------------------------------------------- both ends


def test_initiator_requiring_rc4_gets_rc4_both_ways() -> None:
    a = Initiator(provide=CRYPTO_RC4)
    b, payload = handshake(a)
    assert payload == HANDSHAKE  # IA, decrypted
    assert a.selected == CRYPTO_RC4
    assert b.established is not None and b.established.rc4 and b.established.skey == INFO_HASH
    message = wire.encode_message(wire.Request(0, 0, 16384))
    on_wire = a.encrypt(message)
    assert on_wire != message
    assert b.receive_data(on_wire) == message
    reply = b"\x00\x00\x00\x01\x01" * 100
    sealed = b.encrypt(reply)
    assert sealed != reply and a.decrypt(sealed) == reply


def test_plaintext_is_selected_when_offered_and_the_payload_goes_clear() -> None:
    a = Initiator(provide=CRYPTO_PLAINTEXT | CRYPTO_RC4)
    b, payload = handshake(a)
    assert payload == HANDSHAKE  # IA is encrypted whatever is selected
    assert a.selected == CRYPTO_PLAINTEXT
    assert b.established is not None and not b.established.rc4
    assert b.receive_data(b"clear bytes") == b"clear bytes"
    assert b.encrypt(b"ours") == b"ours"


def test_plaintext_only_initiator_is_served() -> None:
    a = Initiator(provide=CRYPTO_PLAINTEXT)
    b, _ = handshake(a)
    assert a.selected == CRYPTO_PLAINTEXT
    assert b.established is not None and not b.established.rc4


def test_empty_initial_payload_lets_the_handshake_follow_in_the_stream() -> None:
    a = Initiator(initial_payload=b"")
    b, payload = handshake(a)
    assert payload == b"" and b.established is not None
    assert b.receive_data(a.encrypt(HANDSHAKE)) == HANDSHAKE


def test_the_skey_picks_which_published_torrent() -> None:
    a = Initiator(skey=OTHER_HASH, initial_payload=b"")
    b, _ = handshake(a)
    assert b.established is not None and b.established.skey == OTHER_HASH


@pytest.mark.parametrize("pad", [0, 1, MAX_PAD])
def test_byte_at_a_time_with_any_padding(pad: int) -> None:
    a = Initiator(pad_a=pad, pad_c=pad, provide=CRYPTO_RC4)
    b = MseResponder(lookup)
    for byte in a.opening():
        assert b.receive_data(bytes([byte])) == b""
    step3 = a.step3(b.data_to_send())
    a.selected = CRYPTO_RC4
    step3 += a.encrypt(b"after")
    got = b"".join(b.receive_data(step3[i : i + 1]) for i in range(len(step3)))
    assert got == HANDSHAKE + b"after"
    assert a.step4(b.data_to_send()) == b""


def test_pipelined_payload_behind_the_initial_payload_is_decrypted_in_order() -> None:
    a = Initiator(provide=CRYPTO_RC4)
    b = MseResponder(lookup)
    b.receive_data(a.opening())
    step3 = a.step3(b.data_to_send())
    a.selected = CRYPTO_RC4  # A may pipeline only what it requires
    assert b.receive_data(step3 + a.encrypt(b"more")) == HANDSHAKE + b"more"


def test_responder_paddings_stay_within_bounds() -> None:
    for _ in range(20):
        a = Initiator()
        b = MseResponder(lookup)
        b.receive_data(a.opening())
        first = b.data_to_send()
        assert KEY_LENGTH <= len(first) <= KEY_LENGTH + MAX_PAD
        b.receive_data(a.step3(first))
        assert len(b.data_to_send()) <= 14 + MAX_PAD


# ---------------------------------------------------------------- hostile input


def closes(b: MseResponder, data: bytes) -> bool:
    try:
        b.receive_data(data)
    except wire.ProtocolError:
        return True
    return False


def test_garbage_closes_within_the_sync_window() -> None:
    b = MseResponder(lookup)
    garbage = random.Random(1).randbytes(4000)
    fed = 0
    with pytest.raises(wire.ProtocolError, match="synchronisation"):
        for i in range(0, len(garbage), 7):
            b.receive_data(garbage[i : i + 7])
            fed = i + 7
    assert fed <= KEY_LENGTH + MAX_PAD + 20


def test_pad_a_over_512_closes() -> None:
    a = Initiator(pad_a=MAX_PAD + 1)
    b = MseResponder(lookup)
    b.receive_data(a.opening())
    assert closes(b, a.step3(b.data_to_send()))


def test_pad_c_over_512_closes() -> None:
    a = Initiator(pad_c=MAX_PAD + 1)
    b = MseResponder(lookup)
    b.receive_data(a.opening())
    assert closes(b, a.step3(b.data_to_send()))


def test_wrong_verification_constant_closes() -> None:
    a = Initiator(vc=b"\x00" * 7 + b"\x01")
    b = MseResponder(lookup)
    b.receive_data(a.opening())
    assert closes(b, a.step3(b.data_to_send()))


def test_unknown_skey_closes() -> None:
    a = Initiator(skey=hashlib.sha1(b"not published").digest())
    b = MseResponder(lookup)
    b.receive_data(a.opening())
    with pytest.raises(wire.ProtocolError, match="do not publish"):
        b.receive_data(a.step3(b.data_to_send()))


def test_no_crypto_method_in_common_closes() -> None:
    a = Initiator(provide=0x04)
    b = MseResponder(lookup)
    b.receive_data(a.opening())
    assert closes(b, a.step3(b.data_to_send()))


@pytest.mark.parametrize("y", [0, 1, PRIME - 1, PRIME, 2**768 - 1])
def test_degenerate_public_keys_close(y: int) -> None:
    assert closes(MseResponder(lookup), y.to_bytes(KEY_LENGTH, "big"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=12))
def test_bytes_in_raise_only_the_protocol_error_and_buffer_boundedly(chunks: list[bytes]) -> None:
    b = MseResponder(lookup)
    for chunk in chunks:
        try:
            b.receive_data(chunk)
        except wire.ProtocolError:
            return
        assert len(b._raw) < MAX_PAD + 20


# ---------------------------------------------------------------- detection, the stream


@pytest.mark.parametrize(
    ("opening", "kind"),
    [
        (b"", None),
        (b"\x13", None),
        (b"\x13BitTorrent protoco", None),
        (wire.Handshake(INFO_HASH, bytes(20)).encode(), "plaintext"),
        (b"\x13BitTorrent protocoX", "mse"),
        (b"\x12", "mse"),
        (bytes(96), "mse"),
    ],
)
def test_openings_are_classified_by_the_protocol_prefix(opening: bytes, kind: str | None) -> None:
    assert classify_opening(opening) == kind


def test_plain_opening_passes_through_and_the_stream_can_be_dropped() -> None:
    s = MseStream(lookup)
    assert s.receive(HANDSHAKE[:5]) == b""
    assert s.receive(HANDSHAKE[5:]) == HANDSHAKE
    assert s.droppable and s.responder is None


def test_stream_owes_handshake_bytes_then_encrypts_in_wire_order(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"0123456789" * 10)
    left, right = socket.socketpair()
    try:
        seen: list[bool] = []
        s = MseStream(lookup, lambda est: seen.append(est.rc4))
        a = Initiator(provide=CRYPTO_RC4)
        assert s.receive(a.opening()) == b""
        assert not s.idle and s.flush(left) and s.idle
        step2 = right.recv(4096)
        assert s.receive(a.step3(step2)) == HANDSHAKE
        assert seen == [True] and not s.droppable
        first, second = b"A" * 70_000, b"B" * 10
        assert s.send(left, first) == 64 * 1024  # one sealed chunk per call
        assert s.send(left, first[64 * 1024 :]) == len(first) - 64 * 1024
        assert s.send(left, second) == len(second)
        with blob.open("rb") as f:
            assert s.send_file(left, f.fileno(), 5, 20) == 20
        assert s.flush(left)
        left.shutdown(socket.SHUT_WR)
        wire_bytes = b""
        while chunk := right.recv(1 << 20):
            wire_bytes += chunk
        assert a.step4(wire_bytes) == first + second + b"56789012345678901234"
    finally:
        left.close()
        right.close()


def test_stream_with_plaintext_selected_is_droppable_once_its_bytes_are_sent() -> None:
    left, right = socket.socketpair()
    try:
        s = MseStream(lookup)
        a = Initiator(provide=CRYPTO_PLAINTEXT | CRYPTO_RC4)
        s.receive(a.opening())
        s.flush(left)
        s.receive(a.step3(right.recv(4096)))
        assert not s.droppable  # step 4 still owed
        assert s.flush(left) and s.droppable
        assert a.step4(right.recv(4096)) == b"" and a.selected == CRYPTO_PLAINTEXT
    finally:
        left.close()
        right.close()
