"""An MSE/PE initiator written from the spec on its own (plain-Python RC4), for tests of
the seeder's responder: unit tests drive both ends, interop tests speak it over TCP."""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass, field

from s3torrent.peer import wire
from s3torrent.peer.mse import CRYPTO_RC4, KEY_LENGTH, MAX_PAD, PRIME

INFO_HASH = hashlib.sha1(b"a published torrent").digest()
HANDSHAKE = wire.Handshake.build(
    INFO_HASH, b"-TT0001-" + bytes(12), fast=True, extensions=True, v2=False
).encode()


def sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


class PyRc4:
    """RC4 in plain Python, 1024 bytes discarded: the initiator's own cipher."""

    def __init__(self, key: bytes) -> None:
        s = list(range(256))
        j = 0
        for i in range(256):
            j = (j + s[i] + key[i % len(key)]) % 256
            s[i], s[j] = s[j], s[i]
        self.s, self.i, self.j = s, 0, 0
        self.apply(bytes(1024))

    def apply(self, data: bytes) -> bytes:
        s, i, j = self.s, self.i, self.j
        out = bytearray(len(data))
        for k, byte in enumerate(data):
            i = (i + 1) % 256
            j = (j + s[i]) % 256
            s[i], s[j] = s[j], s[i]
            out[k] = byte ^ s[(s[i] + s[j]) % 256]
        self.i, self.j = i, j
        return bytes(out)


@dataclass
class Initiator:
    """Peer A, step by step, with knobs for breaking each rule."""

    skey: bytes = INFO_HASH
    provide: int = CRYPTO_RC4
    initial_payload: bytes = HANDSHAKE
    pad_a: int = 17
    pad_c: int = 9
    vc: bytes = bytes(8)
    private: int = field(default_factory=lambda: int.from_bytes(os.urandom(20), "big"))
    out_cipher: PyRc4 | None = None
    in_cipher: PyRc4 | None = None
    selected: int = 0
    received: bytearray = field(default_factory=bytearray)
    secret: bytes = b""

    def opening(self) -> bytes:
        ya = pow(2, self.private, PRIME).to_bytes(KEY_LENGTH, "big")
        return ya + os.urandom(self.pad_a)

    def step3(self, responder_bytes: bytes) -> bytes:
        yb = int.from_bytes(responder_bytes[:KEY_LENGTH], "big")
        self.secret = pow(yb, self.private, PRIME).to_bytes(KEY_LENGTH, "big")
        self.received += responder_bytes[KEY_LENGTH:]  # PadB, then step 4
        self.out_cipher = PyRc4(sha1(b"keyA", self.secret, self.skey))
        self.in_cipher = PyRc4(sha1(b"keyB", self.secret, self.skey))
        masked = bytes(
            a ^ b for a, b in zip(sha1(b"req2", self.skey), sha1(b"req3", self.secret), strict=True)
        )
        fields = (
            self.vc
            + self.provide.to_bytes(4, "big")
            + self.pad_c.to_bytes(2, "big")
            + bytes(self.pad_c)
            + len(self.initial_payload).to_bytes(2, "big")
            + self.initial_payload
        )
        return sha1(b"req1", self.secret) + masked + self.out_cipher.apply(fields)

    def step4(self, responder_bytes: bytes) -> bytes:
        """Synchronise on ENCRYPT(VC) behind PadB; the payload after PadD."""
        assert self.in_cipher is not None
        self.received += responder_bytes
        probe = PyRc4(sha1(b"keyB", self.secret, self.skey)).apply(bytes(8))
        at = bytes(self.received).find(probe)
        assert 0 <= at <= MAX_PAD, "no VC within PadB's bound"
        rest = bytes(self.received[at:])
        # VC, crypto_select and len(PadD) read on a copy of the cipher: only once PadD is
        # all here does the stream advance (an AssertionError: more bytes to come).
        assert len(rest) >= 14, "step 4 not all here yet"
        fields = copy.deepcopy(self.in_cipher).apply(rest[:14])
        assert fields[:8] == bytes(8)
        pad_d = int.from_bytes(fields[12:14], "big")
        assert pad_d <= MAX_PAD
        assert len(rest) >= 14 + pad_d, "PadD not all here yet"
        self.in_cipher.apply(rest[:14])
        self.selected = int.from_bytes(fields[8:12], "big")
        self.in_cipher.apply(rest[14 : 14 + pad_d])
        return self.decrypt(rest[14 + pad_d :])

    def encrypt(self, data: bytes) -> bytes:
        assert self.out_cipher is not None
        return self.out_cipher.apply(data) if self.selected == CRYPTO_RC4 else data

    def decrypt(self, data: bytes) -> bytes:
        assert self.in_cipher is not None
        return self.in_cipher.apply(data) if self.selected == CRYPTO_RC4 else data
