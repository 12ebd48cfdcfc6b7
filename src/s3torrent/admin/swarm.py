"""An object's live swarm, for the web console: the tracker's counters of its info-hashes,
what the origin seeder sent, and the metered origin and swarm bytes.

The torrent state alone (torrents.py) says whether peers could share the object; this says
whether they do, right now, from the three places that know: the tracker registry (peers
announcing), the seeder (pieces it sent) and the meter (bytes by channel, from the savings
report): of the bucket that has the name now, as its owner's reports show them, and apart
(`name_history`) of every bucket the name had.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from s3torrent.admin.call import AdminCall
from s3torrent.admin.torrents import sealing_of, torrent_report
from s3torrent.metering.usage import ObjectSavings, savings
from s3torrent.s3.errors import S3Error


async def _tracker_counts(call: AdminCall, hex_hashes: list[str]) -> dict[str, int]:
    """The tracker's counters of the torrent: the larger over its info-hashes, since a
    hybrid client announces on both its v1 and its v2 swarm (a sum would count it twice)."""
    out = {"seeders": 0, "leechers": 0, "completed": 0}
    registry = call.node.swarms
    if registry is None:
        return out
    for hexid in hex_hashes:
        # The tracker keys a v2 swarm by the hash truncated to 20 bytes, as BEP 52 says.
        try:
            stats = await registry.stats(bytes.fromhex(hexid)[:20])
        except KeyError:
            continue
        out["seeders"] = max(out["seeders"], stats.seeders)
        out["leechers"] = max(out["leechers"], stats.leechers)
        out["completed"] = max(out["completed"], stats.completed)
    return out


def _seeder_counts(call: AdminCall, hex_hashes: list[str]) -> dict[str, int]:
    out = {"connections": 0, "bytes_sent": 0}
    seeder = call.node.seeder
    if seeder is None:
        return out
    for hexid in hex_hashes:
        for candidate in (hexid, hexid[:40]):
            stats = seeder.stats.torrents.get(candidate)
            if stats is not None:
                out["connections"] += stats.connections
                out["bytes_sent"] += stats.bytes_sent
                break
    return out


async def show_swarm(call: AdminCall) -> web.StreamResponse:
    bucket, key = call.query.get("bucket"), call.query.get("key")
    if not bucket or key is None:
        raise S3Error("InvalidArgument", "name the object with ?bucket=NAME&key=KEY")
    svc = call.svc
    report = await torrent_report(
        svc.settings, svc.meta, svc.torrents, bucket, key, svc.settings.base_url, sealing_of(svc)
    )
    if report is None:
        raise S3Error("NoSuchKey", f"no such object: {bucket}/{key}")
    hex_hashes = [report[k] for k in ("info_hash_v1", "info_hash_v2") if k in report]
    row = await svc.meta.bucket(bucket)
    if row is None:
        raise S3Error("NoSuchKey", f"no such object: {bucket}/{key}")
    traffic = await svc.meta.traffic(frozenset({bucket}), key, False)
    body: dict[str, Any] = {
        "bucket": bucket,
        "key": key,
        "state": report["state"],
        "tracker": await _tracker_counts(call, hex_hashes),
        "seeder": _seeder_counts(call, hex_hashes),
        **_metered(savings(traffic, 0.0, {bucket: row.created_at}), key),
        "name_history": _metered(savings(traffic, 0.0), key),
    }
    return web.json_response(body)


def _metered(items: list[ObjectSavings], key: str) -> dict[str, int]:
    """The metered bytes of the key among items (one bucket's, or a name's history)."""
    mine = [i for i in items if i.key == key]
    return {
        "origin_bytes": sum(i.origin_bytes for i in mine),
        "peer_bytes": sum(i.offloaded_bytes for i in mine),
        "swarm_downloaded": sum(i.swarm_downloaded for i in mine),
    }
