"""Swarm offload: N simultaneous leechers; how many bytes the origin sends, how long they take."""

from __future__ import annotations

import contextlib
import statistics

from bench.harness import Context, Row, Samples, Target, Unavailable, compare
from bench.s3_large import make_file
from bench.seeder import (
    libtorrent_seed,
    lt,
    origin_bytes,
    publish,
    run_leechers,
    s3torrent_seeder,
)

TITLE = "Origin seeder: swarm offload"
DESCRIPTION = (
    "N libtorrent leechers (one session each, in one process) start together on a 256 MiB "
    "object (quick: 4 MiB, N=4 only), connected to the origin and to each other (a full mesh,"
    " no tracker, no web seed). The origin is s3torrent's seeder (default settings: mode "
    "auto), a libtorrent seeder, and a libtorrent seeder in super-seeding mode (a reference, "
    "measured in 2 runs; 1 in quick mode). Reported: bytes the origin sent divided by the "
    "object size (1.0 = one copy), and the median and worst completion time. Targets at N=8: "
    "s3torrent's origin bytes ≤ 1.5× the object size, and median completion ≤ 1.5× the "
    "libtorrent-seeded swarm."
)

MB = 1_000_000


def run(ctx: Context) -> list[Row]:
    size = ctx.size(full=256 << 20, quick=4 << 20)
    counts = [4] if ctx.quick else [1, 4, 8, 16]
    runs = min(ctx.runs, 2) if ctx.quick else ctx.runs
    # libtorrent super-seeding takes 12 s or more a run whatever the size (it reveals
    # pieces one at a time; 20-35 s at 256 MiB): it is a reference, not the anchor, so it
    # is measured once in a quick run and twice in a full one (the full suite stays
    # under 30 minutes).
    superseed_runs = 1 if ctx.quick else min(runs, 2)
    lt()
    rows: list[Row] = []
    data_dir = ctx.scratch("swarm-data")
    with contextlib.ExitStack() as stack:
        endpoint, peer_port = stack.enter_context(s3torrent_seeder(ctx))
        data = make_file(data_dir / "swarm.bin", size)
        pub = publish(endpoint, peer_port, data, "swarm.bin")
        plain, plain_port = stack.enter_context(
            libtorrent_seed(pub.torrent, data, super_seeding=False)
        )
        superseed, superseed_port = stack.enter_context(
            libtorrent_seed(pub.torrent, data, super_seeding=True)
        )
        for n in counts:
            timeout = 60 + n * size / (10 * MB)
            # libtorrent super-seeding is slow (about 35 s for 4 or 8 leechers of 64 MiB here).
            superseed_timeout = min(timeout, 45.0)
            subjects = {
                "s3torrent": (peer_port, lambda: origin_bytes(pub), timeout, runs),
                "libtorrent": (
                    plain_port,
                    lambda: int(plain.status().total_payload_upload),
                    timeout,
                    runs,
                ),
                "libtorrent super-seeding": (
                    superseed_port,
                    lambda: int(superseed.status().total_payload_upload),
                    superseed_timeout,
                    superseed_runs,
                ),
            }
            copies = {name: Samples(name) for name in subjects}
            medians = {name: Samples(name) for name in subjects}
            worst = {name: Samples(name) for name in subjects}
            if n == 1:
                # It reveals a piece only once another peer has the last one: alone, it stalls.
                lone = "not measured: super-seeding stalls a lone leecher"
                for table in (copies, medians, worst):
                    table["libtorrent super-seeding"].error = lone
            elif superseed_runs < runs:
                for table in (copies, medians, worst):
                    table["libtorrent super-seeding"].notes.append(
                        f"libtorrent super-seeding: {superseed_runs} of {runs} runs (a reference, "
                        "not the anchor)"
                    )
            for i in range(runs):
                if ctx.remaining() <= 0:
                    for s in (*copies.values(), *medians.values(), *worst.values()):
                        s.notes.append(f"time box reached after {i} of {runs} runs")
                    break
                for name, (port, sent, limit, rounds) in subjects.items():
                    if copies[name].error is not None or i >= rounds:
                        continue
                    try:
                        r = run_leechers(
                            pub.torrent,
                            n,
                            port,
                            ctx.scratch(f"n{n}"),
                            timeout=limit,
                            origin_sent=sent,
                        )
                    except Unavailable as e:
                        copies[name].error = medians[name].error = worst[name].error = str(e)
                        continue
                    except Exception as e:  # one broken subject must not end the suite
                        err = f"{type(e).__name__}: {e}"
                        copies[name].error = medians[name].error = worst[name].error = err
                        ctx.log(f"    {name} N={n}: {err}")
                        continue
                    copies[name].values.append(r.origin_bytes / size)
                    medians[name].values.append(statistics.median(r.times))
                    worst[name].values.append(max(r.times))
                    ctx.log(
                        f"    {name} N={n} run {i + 1}: origin {r.origin_bytes / size:.2f}× size, "
                        f"median {statistics.median(r.times):.2f} s, worst {max(r.times):.2f} s"
                    )
            ours = "s3torrent"
            for anchor in ("libtorrent", "libtorrent super-seeding"):
                rows.append(
                    compare(
                        f"N={n} origin bytes / size",
                        "×",
                        copies[ours],
                        copies[anchor],
                        note="target at N=8: s3torrent ≤ 1.5× size",
                    )
                )
            rows.append(
                compare(
                    f"N={n} median completion",
                    "s",
                    medians[ours],
                    medians["libtorrent"],
                    Target(1.5, higher_is_better=False),
                )
            )
            rows.append(
                compare(
                    f"N={n} median completion",
                    "s",
                    medians[ours],
                    medians["libtorrent super-seeding"],
                )
            )
            rows.append(compare(f"N={n} worst completion", "s", worst[ours], worst["libtorrent"]))
    return rows
