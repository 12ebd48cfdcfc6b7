"""BEP 52 hash requests: answer them from a torrent's piece layers (pure)."""

from __future__ import annotations

from typing import Final

from s3torrent.peer.messages import BLOCK_SIZE, Hashes, HashReject, HashRequest
from s3torrent.peer.torrent_view import TorrentView
from s3torrent.torrent.merkle import merkle_layers

__all__ = ["MAX_HASHES_PER_REQUEST", "answer_hash_request"]

# BEP 52 says a hash request SHOULD NOT ask for more than 512 hashes; be lenient
# but bounded so one request cannot make us build a huge reply.
MAX_HASHES_PER_REQUEST: Final = 2048


def answer_hash_request(request: HashRequest, torrent: TorrentView) -> Hashes | HashReject:
    """Serve a BEP 52 hash request from the piece layers, or reject it."""
    reject = HashReject(
        request.pieces_root,
        request.base_layer,
        request.index,
        request.length,
        request.proof_layers,
    )
    hashes = _hashes_for(request, torrent)
    if hashes is None:
        return reject
    return Hashes(
        request.pieces_root,
        request.base_layer,
        request.index,
        request.length,
        request.proof_layers,
        hashes,
    )


def _hashes_for(request: HashRequest, torrent: TorrentView) -> bytes | None:
    piece_layer = torrent.piece_layers.get(request.pieces_root)
    blocks_per_piece, remainder = divmod(torrent.piece_length, BLOCK_SIZE)
    if piece_layer is None or not piece_layer or len(piece_layer) % 32 or remainder:
        return None
    if blocks_per_piece & (blocks_per_piece - 1):
        return None
    layers = merkle_layers(piece_layer, torrent.piece_length)
    if layers[-1][0] != request.pieces_root:
        return None  # corrupt piece layer: never serve hashes that cannot verify
    piece_layer_number = blocks_per_piece.bit_length() - 1  # layers counted from leaves
    relative = request.base_layer - piece_layer_number
    if not 0 <= relative < len(layers):
        return None  # we hold no block hashes, only the piece layer and above
    layer = layers[relative]
    root_layer = len(layers) - 1
    live = -(-(len(piece_layer) // 32) // (1 << relative))  # hashes before padding
    length, index = request.length, request.index
    if not 1 <= length <= MAX_HASHES_PER_REQUEST:
        return None
    span = 1 << (length - 1).bit_length()
    if index % span or index + span > len(layer):
        return None
    # Lengths below two or off a power of two are legal only when cut short by
    # the end of the layer.
    if (span != length or length < 2) and index + length < live and len(layer) > 1:
        return None
    if span < 2 and len(layer) > 1:
        return None
    covered = span.bit_length() - 1  # layers above the base computable from the hashes
    first_uncle = max(covered, 1)
    if request.proof_layers >= first_uncle and relative + request.proof_layers >= root_layer:
        return None  # the root has no sibling to send
    out = bytearray(b"".join(layer[index : index + length]))
    node = index
    for step in range(1, request.proof_layers + 1):
        node >>= 1
        if step >= first_uncle:
            out += layers[relative + step][node ^ 1]
    return bytes(out)
