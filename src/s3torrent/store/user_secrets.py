"""Users' secret keys at rest: sealed (AES-256-GCM) in the users table, opened on reading.

SigV4, SigV2 and the POST form signatures need the secret itself, so it cannot be hashed;
instead the `secret_key` column holds it sealed, so that a copy of the database (a backup,
a dump, a replica) holds no working credentials without the master key file.

A stored value is either sealed, `s3ts1:<master key id>:<base64url(nonce | ciphertext)>`,
or clear (a database written before sealing; anything without that prefix, which no
generated secret can start with: they are base64url, without ':'). The sealing key is
derived from master key `<id>` for this purpose only (HKDF, `master_key.MasterKeys.derive`):
it is not the key that wraps SSE-S3 data keys. The user's canonical id and access key are
the associated data, so a sealed value copied onto another user's row does not open.

`UserSecrets.open` is the one place a stored secret is read: the metadata store calls it
for every user row it hands out, and every reader of a secret (request signatures, the
POST form, the admin API, the CLI) gets it from those rows. It remembers what it opened,
by stored value, so the periodic reload of all users costs a dictionary lookup per user,
and a value that does not open is logged once (the user's keys are then refused), not
on every reload, and never fails anyone else's.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from s3torrent.store.master_key import MasterKeyError, MasterKeys

log = logging.getLogger(__name__)

SEALED_PREFIX = "s3ts1:"
_UNKNOWN = object()
_KEY_ID = re.compile(r"[0-9a-f]{16}")  # as MasterKeys names its keys
_PURPOSE = b"s3torrent user secret key v1"
_NONCE = 12


@dataclass(frozen=True, slots=True)
class SecretOwner:
    """Whose secret a stored value is: what the sealing binds it to."""

    canonical_id: str
    access_key: str

    def aad(self) -> bytes:
        return b"\0".join((_PURPOSE, self.canonical_id.encode(), self.access_key.encode()))


def is_sealed(stored: str) -> bool:
    return stored.startswith(SEALED_PREFIX)


def sealed_key_id(stored: str) -> str | None:
    """The master key a sealed value names (None for a clear one, or a damaged one that
    names none: what it holds there is never repeated in a log line or a refusal)."""
    if not is_sealed(stored):
        return None
    key_id = stored[len(SEALED_PREFIX) :].split(":", 1)[0]
    return key_id if _KEY_ID.fullmatch(key_id) else None


class UserSecrets:
    """Seals and opens users' secret keys with keys derived from the master key ring."""

    def __init__(self, keys: MasterKeys) -> None:
        self.keys = keys
        self._aeads: dict[str, AESGCM] = {}
        self._opened: dict[tuple[SecretOwner, str], str | None] = {}

    def _aead(self, key_id: str) -> AESGCM:
        aead = self._aeads.get(key_id)
        if aead is None:
            aead = self._aeads[key_id] = AESGCM(self.keys.derive(key_id, _PURPOSE))
        return aead

    def seal(self, owner: SecretOwner, secret: str) -> str:
        """`secret` as the users table stores it, under the current master key."""
        self.keys.refresh()
        key_id = self.keys.current
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._aead(key_id).encrypt(nonce, secret.encode(), owner.aad())
        blob = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{SEALED_PREFIX}{key_id}:{blob}"

    def fresher(self, owner: SecretOwner, secret: str, stored: str) -> str | None:
        """`secret` sealed again when `stored` (just written) is sealed under a master key
        retired meanwhile, for its writer to store in its place (MasterKeys.is_current: a
        rotation could otherwise drop that key before it sees the value); else None."""
        key_id = sealed_key_id(stored)
        if key_id is None or self.keys.is_current(key_id):
            return None
        return self.seal(owner, secret)

    def open(self, owner: SecretOwner, stored: str) -> str | None:
        """The secret a stored value holds; None (logged once) if it does not open: the
        user's keys are then refused as unknown."""
        memo = (owner, stored)
        # One read of the dict: a reload may swap it for another meanwhile (forget_all_but).
        known = self._opened.get(memo, _UNKNOWN)
        if known is not _UNKNOWN:
            return known if isinstance(known, str) else None
        try:
            secret = self.open_strictly(owner, stored)
        except MasterKeyError as exc:
            log.error(
                "the secret key of access key %s does not open (%s): its requests are "
                "refused until the user's keys are rotated or the right master key file "
                "is restored",
                owner.access_key,
                exc,
            )
            secret = None
        self._opened[memo] = secret
        return secret

    def open_strictly(self, owner: SecretOwner, stored: str) -> str:
        """As `open`, but MasterKeyError when the value does not open (nothing remembered)."""
        if not is_sealed(stored):
            return stored
        key_id = sealed_key_id(stored)
        if key_id is None:
            raise MasterKeyError("the sealed value names no master key")
        blob = stored[len(SEALED_PREFIX) + len(key_id) + 1 :]
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise MasterKeyError("the sealed value is not base64") from None
        if len(raw) <= _NONCE:
            raise MasterKeyError("the sealed value is truncated")
        try:
            plain = self._aead(key_id).decrypt(raw[:_NONCE], raw[_NONCE:], owner.aad())
        except InvalidTag:
            raise MasterKeyError(
                f"it does not open with master key {key_id} of {self.keys.path}"
            ) from None
        return plain.decode()

    def forget_all_but(self, kept: Iterable[tuple[SecretOwner, str]]) -> None:
        """Keep only these values' memos (those of the users that still exist)."""
        keep = set(kept)
        self._opened = {m: s for m, s in self._opened.items() if m in keep}

    def resealed(
        self, stored: Iterable[tuple[str, str, str]], *, clear_only: bool
    ) -> list[tuple[str, str, str]]:
        """(canonical id, stored value, new value) for each user secret to store again:
        the clear ones, and unless `clear_only` those sealed under another master key than
        the current one. A value that does not open is left as it is (logged); each new
        value is checked to open to the same secret before it is handed out, so a secret
        is never lost to a write."""
        self.keys.refresh()
        out = []
        for canonical_id, access_key, value in stored:
            if is_sealed(value) and (clear_only or sealed_key_id(value) == self.keys.current):
                continue
            owner = SecretOwner(canonical_id, access_key)
            secret = self.open(owner, value)
            if secret is None:
                continue
            new = self.seal(owner, secret)
            if self.open_strictly(owner, new) != secret:
                raise MasterKeyError(f"a secret sealed under {self.keys.path} does not open")
            out.append((canonical_id, value, new))
        return out

    def check_opens(self, stored: Sequence[tuple[str, str, str]]) -> None:
        """MasterKeyError, naming the file, if values are sealed and none opens with these
        keys: another node's or an old master key file, with which every signed request
        would be refused. (One value that does not open only costs its user.)"""
        sealed = [s for s in stored if is_sealed(s[2])]
        for canonical_id, access_key, value in sealed:
            try:
                self.open_strictly(SecretOwner(canonical_id, access_key), value)
            except MasterKeyError:
                continue
            return
        if sealed:
            raise self._not_ours(", ".join(sorted(secret_key_ids(sealed))) or "(damaged)")

    def check_ours(self, stored: str) -> None:
        """MasterKeyError if `stored` is sealed under a master key this file does not hold
        (the value may be another node's, which must not be overwritten)."""
        key_id = sealed_key_id(stored)
        if key_id is None or key_id in self.keys.key_ids:
            return
        self.keys.refresh()
        if key_id not in self.keys.key_ids:
            raise self._not_ours(key_id)

    def _not_ours(self, key_ids: str) -> MasterKeyError:
        return MasterKeyError(
            f"the master key file {self.keys.path} does not open the users' secret keys in "
            f"the database (sealed under master key {key_ids}): start with the master key "
            "file they were sealed with (nodes sharing a database share it: "
            "encryption.master_key_file)"
        )


def secret_key_ids(stored: Iterable[tuple[str, str, str]]) -> set[str]:
    """The master keys some user's secret is sealed under."""
    return {k for _, _, value in stored if (k := sealed_key_id(value)) is not None}
