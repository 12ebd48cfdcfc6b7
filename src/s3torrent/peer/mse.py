"""Message Stream Encryption (MSE/PE), the receiving side. Pure: bytes in, bytes out.

The origin seeder never dials out, so only the responder ("B") is here. The handshake:

1. A->B  Ya (96 bytes), PadA
2. B->A  Yb, PadB
3. A->B  HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
         ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
4. B->A  ENCRYPT(VC, crypto_select, len(PadD), PadD), then the payload stream

S is the Diffie-Hellman secret, SKEY the info-hash the initiator wants (we only learn it
by matching step 3's second hash against the swarm ids we publish: ``lookup``). ENCRYPT
is RC4 keyed per direction with HASH('keyA'|'keyB', S, SKEY), its first 1024 bytes
discarded; everything up to the end of IA is encrypted whatever is selected, and the
payload afterwards is RC4 only when crypto_select says so.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from typing import Final, Literal

from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext

from s3torrent.peer.handshake import PROTOCOL_PREFIX
from s3torrent.peer.messages import ProtocolError

__all__ = [
    "CRYPTO_PLAINTEXT",
    "CRYPTO_RC4",
    "GENERATOR",
    "KEY_LENGTH",
    "MAX_PAD",
    "PRIME",
    "VC",
    "Established",
    "MseResponder",
    "Rc4",
    "SwarmLookup",
    "classify_opening",
    "obfuscated_swarm_id",
    "public_key",
    "shared_secret",
    "stream_keys",
]

PRIME: Final = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A087"
    "98E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A3"
    "6210000000000090563",
    16,
)
GENERATOR: Final = 2
KEY_LENGTH: Final = 96  # bytes of a public key or of S, big-endian
MAX_PAD: Final = 512  # PadA..PadD
VC: Final = bytes(8)
CRYPTO_PLAINTEXT: Final = 0x01
CRYPTO_RC4: Final = 0x02
_HASH_LENGTH: Final = 20
_DISCARD: Final = 1024
_PRIVATE_KEY_BITS: Final = 160
# Step 3's fixed part after the two hashes: VC, crypto_provide, len(PadC).
_PROVIDE_LENGTH: Final = 8 + 4 + 2

SwarmLookup = Callable[[bytes], bytes | None]
"""HASH('req2', SKEY) -> SKEY (a swarm id we publish), or None when we publish no such."""


def _sha1(*parts: bytes) -> bytes:
    h = hashlib.sha1()
    for p in parts:
        h.update(p)
    return h.digest()


def obfuscated_swarm_id(swarm_id: bytes) -> bytes:
    """HASH('req2', SKEY): how step 3 names a torrent without revealing its info-hash."""
    return _sha1(b"req2", swarm_id)


def public_key(private: int) -> bytes:
    return pow(GENERATOR, private, PRIME).to_bytes(KEY_LENGTH, "big")


def shared_secret(their_public: bytes, private: int) -> bytes:
    """S from the peer's public key; a degenerate key (0, 1, P-1 or beyond) is refused."""
    y = int.from_bytes(their_public, "big")
    if not 1 < y < PRIME - 1:
        raise ProtocolError("MSE: degenerate public key")
    return pow(y, private, PRIME).to_bytes(KEY_LENGTH, "big")


def stream_keys(secret: bytes, skey: bytes) -> tuple[bytes, bytes]:
    """(key of A->B, key of B->A)."""
    return _sha1(b"keyA", secret, skey), _sha1(b"keyB", secret, skey)


class Rc4:
    """One direction's RC4 stream with its first 1024 bytes discarded."""

    __slots__ = ("_ctx",)

    def __init__(self, key: bytes) -> None:
        self._ctx: CipherContext = Cipher(ARC4(key), mode=None).encryptor()
        self._ctx.update(bytes(_DISCARD))

    def apply(self, data: bytes | bytearray | memoryview) -> bytes:
        """Encrypt or decrypt (the same XOR), advancing the stream."""
        return self._ctx.update(data)


def classify_opening(data: bytes | bytearray) -> Literal["plaintext", "mse"] | None:
    """What a connection's first bytes are: a plain handshake, MSE, or not known yet.

    A plain handshake starts with 19 + "BitTorrent protocol"; anything else is taken for
    an MSE public key, whose first 20 bytes match that only by chance (2^-160).
    """
    n = min(len(data), len(PROTOCOL_PREFIX))
    if data[:n] != PROTOCOL_PREFIX[:n]:
        return "mse"
    return "plaintext" if n == len(PROTOCOL_PREFIX) else None


@dataclass(frozen=True, slots=True)
class Established:
    """The finished handshake (IA included): the torrent (SKEY), whether the payload is RC4."""

    skey: bytes
    rc4: bool
    crypto_provide: int


class _Phase(Enum):
    AWAIT_KEY = auto()
    AWAIT_SYNC = auto()  # PadA, then HASH('req1', S)
    AWAIT_SKEY = auto()
    AWAIT_PROVIDE = auto()  # VC, crypto_provide, len(PadC)
    AWAIT_PAD_C = auto()  # PadC, len(IA)
    INITIAL_PAYLOAD = auto()
    PAYLOAD = auto()


class MseResponder:
    """The receiving side of one MSE handshake, then the payload stream's transform.

    ``receive_data`` returns the peer's payload in the clear (IA first) and raises
    ``ProtocolError`` on anything the handshake does not allow; ``data_to_send`` drains
    the handshake bytes we owe; ``encrypt`` transforms our payload once established.
    What it keeps between calls is bounded by the spec's sizes (under 532 bytes: PadA
    and the synchronisation hash); the initial payload is streamed, never buffered.
    """

    def __init__(
        self,
        lookup: SwarmLookup,
        *,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._lookup = lookup
        self._random = random_bytes
        self._private = int.from_bytes(random_bytes(_PRIVATE_KEY_BITS // 8), "big")
        self._phase = _Phase.AWAIT_KEY
        self._raw = bytearray()  # received, not yet consumed (still encrypted past SKEY)
        self._outgoing = bytearray()
        self._secret = b""
        self._req1 = b""
        self._decrypt: Rc4 | None = None
        self._encrypt: Rc4 | None = None
        self._skey = b""
        self._provide = 0
        self._pad_c = 0
        self._initial_left = 0
        self._payload_rc4 = False
        self._selected = False
        self.established: Established | None = None

    # ------------------------------------------------------------------ output

    def data_to_send(self) -> bytes:
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """Our payload as it goes on the wire (RC4 when selected, else unchanged)."""
        if not self._selected:
            raise RuntimeError("MSE: no crypto method selected yet")
        if self._payload_rc4:
            assert self._encrypt is not None
            return self._encrypt.apply(data)
        return bytes(data)

    def _pad(self) -> int:
        return int.from_bytes(self._random(2), "big") % (MAX_PAD + 1)

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes | bytearray | memoryview) -> bytes:
        """The peer's bytes in; its payload in the clear out (empty while handshaking)."""
        if self._phase is _Phase.PAYLOAD:
            return self._payload(data)
        self._raw += data
        out = bytearray()
        while True:
            progressed, chunk = self._step()
            out += chunk
            if not progressed:
                break
        return bytes(out)

    def _payload(self, data: bytes | bytearray | memoryview) -> bytes:
        if self._payload_rc4:
            assert self._decrypt is not None
            return self._decrypt.apply(data)
        return bytes(data)

    def _take(self, n: int) -> bytes | None:
        """The next n received bytes, decrypted (A->B stream), or None if not all here."""
        if len(self._raw) < n:
            return None
        chunk = bytes(self._raw[:n])
        del self._raw[:n]
        assert self._decrypt is not None
        return self._decrypt.apply(chunk)

    def _step(self) -> tuple[bool, bytes]:
        """One phase forward if its bytes are here: (progressed, payload produced)."""
        match self._phase:
            case _Phase.AWAIT_KEY:
                return self._on_key(), b""
            case _Phase.AWAIT_SYNC:
                return self._on_sync(), b""
            case _Phase.AWAIT_SKEY:
                return self._on_skey(), b""
            case _Phase.AWAIT_PROVIDE:
                return self._on_provide(), b""
            case _Phase.AWAIT_PAD_C:
                return self._on_pad_c(), b""
            case _Phase.INITIAL_PAYLOAD:
                return self._on_initial_payload()
            case _Phase.PAYLOAD:
                rest = bytes(self._raw)
                self._raw.clear()
                return False, self._payload(rest) if rest else b""

    def _on_key(self) -> bool:
        if len(self._raw) < KEY_LENGTH:
            return False
        their_key = bytes(self._raw[:KEY_LENGTH])
        del self._raw[:KEY_LENGTH]
        self._secret = shared_secret(their_key, self._private)
        self._req1 = _sha1(b"req1", self._secret)
        self._outgoing += public_key(self._private) + self._random(self._pad())
        self._phase = _Phase.AWAIT_SYNC
        return True

    def _on_sync(self) -> bool:
        # HASH('req1', S) follows PadA (at most 512 bytes): search that window only.
        at = self._raw.find(self._req1, 0, MAX_PAD + _HASH_LENGTH)
        if at < 0:
            if len(self._raw) >= MAX_PAD + _HASH_LENGTH:
                raise ProtocolError("MSE: no synchronisation hash within PadA's bound")
            return False
        del self._raw[: at + _HASH_LENGTH]
        self._phase = _Phase.AWAIT_SKEY
        return True

    def _on_skey(self) -> bool:
        if len(self._raw) < _HASH_LENGTH:
            return False
        masked = bytes(self._raw[:_HASH_LENGTH])
        del self._raw[:_HASH_LENGTH]
        req3 = _sha1(b"req3", self._secret)
        skey = self._lookup(bytes(a ^ b for a, b in zip(masked, req3, strict=True)))
        if skey is None:
            raise ProtocolError("MSE: the peer asks for a torrent we do not publish")
        key_a, key_b = stream_keys(self._secret, skey)
        self._decrypt, self._encrypt = Rc4(key_a), Rc4(key_b)
        self._skey = skey
        self._phase = _Phase.AWAIT_PROVIDE
        return True

    def _on_provide(self) -> bool:
        fields = self._take(_PROVIDE_LENGTH)
        if fields is None:
            return False
        if fields[:8] != VC:
            raise ProtocolError("MSE: wrong verification constant")
        provide = int.from_bytes(fields[8:12], "big")
        self._pad_c = int.from_bytes(fields[12:14], "big")
        if self._pad_c > MAX_PAD:
            raise ProtocolError("MSE: PadC longer than 512 bytes")
        # Plaintext after the handshake when the peer allows it: the payload is public
        # data and piece data can then go out with sendfile. RC4 when the peer insists.
        if provide & CRYPTO_PLAINTEXT:
            select = CRYPTO_PLAINTEXT
        elif provide & CRYPTO_RC4:
            select = CRYPTO_RC4
        else:
            raise ProtocolError("MSE: no crypto method in common")
        self._payload_rc4 = select == CRYPTO_RC4
        self._provide = provide
        self._selected = True
        assert self._encrypt is not None
        pad_d = self._pad()
        self._outgoing += self._encrypt.apply(
            VC + select.to_bytes(4, "big") + pad_d.to_bytes(2, "big") + bytes(pad_d)
        )
        self._phase = _Phase.AWAIT_PAD_C
        return True

    def _on_pad_c(self) -> bool:
        fields = self._take(self._pad_c + 2)
        if fields is None:
            return False
        self._initial_left = int.from_bytes(fields[-2:], "big")
        self._phase = _Phase.INITIAL_PAYLOAD
        return True

    def _on_initial_payload(self) -> tuple[bool, bytes]:
        # IA is always RC4 (A could not know the selection when it sent it); streamed
        # through as it arrives, so its length (up to 65535) costs no buffer.
        n = min(self._initial_left, len(self._raw))
        chunk = self._take(n) or b""
        self._initial_left -= n
        if self._initial_left:
            return False, chunk
        self._phase = _Phase.PAYLOAD
        self.established = Established(self._skey, self._payload_rc4, self._provide)
        return True, chunk
