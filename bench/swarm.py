"""Swarm offload: N simultaneous leechers; how many bytes the origin sends, how long they take."""

from __future__ import annotations

import contextlib
import functools
import statistics
import time
import urllib.request
from typing import Any

from bench.harness import Context, Row, Samples, Target, Unavailable, compare
from bench.s3_large import make_file
from bench.seeder import (
    BUCKET,
    LeecherFiles,
    Published,
    SwarmRun,
    add_leecher,
    check_downloaded,
    drop_leechers,
    lasting_cpu,
    libtorrent_seed,
    lt,
    lt_session,
    origin_bytes,
    own_cpu,
    publish,
    run_leechers,
    s3torrent_seeder,
    server_cpu,
    threads_cpu,
    wait_for_leechers,
)

TITLE = "Origin seeder: swarm offload"
DESCRIPTION = (
    "N libtorrent leechers (one session each, in one process) start together on a 100 MiB "
    "object (quick: 4 MiB, N=4 only), connected to the origin and to each other (a full "
    "mesh, no tracker, no web seed). The origin is s3torrent's seeder (default settings: "
    "mode auto), a libtorrent seeder, and a libtorrent seeder in super-seeding mode (a "
    "reference, measured in 2 runs; 1 in quick mode). Reported: bytes the origin sent "
    "divided by the object size (1.0 = one copy), and the median and worst completion time."
    " Targets at N=8: s3torrent's origin bytes ≤ 1.05× the object size, and median "
    "completion ≤ 1.0× the libtorrent-seeded swarm (other N: ≤ 1.5×). 'as served' rows: the"
    " leechers get the .torrent exactly as `?torrent` serves it (our tracker, the origin "
    "seeder and the web seed) and find each other through the tracker; origin bytes are the"
    " seeder's plus the web seed's (targets at N=8: ≤ 1.2 copies, median ≤ 1.5× the "
    "libtorrent-seeded mesh; N=1: the lone leecher's MB/s ≥ 0.8× the same leecher from a "
    "libtorrent seeder). Leechers write into files kept resident from run to run (see the "
    "seeder benchmark). The N=8 CPU row adds up the CPU time of every leecher and of the "
    "origin (our server's processes, or the libtorrent seeder in the leechers' process) "
    "over a run: on this 2-core machine the swarm is CPU-bound, and a copy the origin does "
    "not send is sent by a leecher instead. The rows after it split that CPU: the origin's "
    "alone (our server's processes; the libtorrent seeder's threads, the ones that outlive "
    "a run), and the leechers' (their process less those threads). A control at N=8: "
    "s3torrent's seeder with `seeder.mode = fastest` (every peer gets every piece from us, "
    "no bound on the copies, as a plain seeder does), on a second server: with the same "
    "code, it shows what the 1.05-copy bound itself costs the leechers here."
)

SERVED = "s3torrent as served"
FASTEST = "s3torrent, mode fastest"

MB = 1_000_000
ROOT = ("benchroot", "benchroot-secret-key-0123456789")


def served_torrent(endpoint: str, key: str) -> bytes:
    with urllib.request.urlopen(f"{endpoint}/{BUCKET}/{key}?torrent", timeout=60) as r:
        body: bytes = r.read()
    return body


def run_served_leechers(
    torrent: bytes, n: int, files: LeecherFiles, *, timeout: float, origin_sent: Any
) -> SwarmRun:
    """n libtorrent leechers of the torrent as served (tracker, seeder, web seed), together."""
    sessions = [lt_session() for _ in range(n)]
    handles = []
    before = origin_sent()
    try:
        slots = [files.slot(torrent, i) for i in range(n)]
        for ses, save in zip(sessions, slots, strict=True):
            handles.append(add_leecher(ses, torrent, save))
        times = wait_for_leechers(handles, time.monotonic(), timeout)
        check_downloaded(handles)
        return SwarmRun(times, origin_sent() - before)
    finally:
        drop_leechers(sessions, handles, delete_files=False)
        # Their `stopped` announces: the origin forgets them before the next run.
        time.sleep(1.0)
        del sessions


def run(ctx: Context) -> list[Row]:
    size = ctx.size(full=100 << 20, quick=4 << 20)
    counts = [1, 4] if ctx.quick else [1, 4, 8, 16]
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
        served = served_torrent(endpoint, "swarm.bin")
        files = stack.enter_context(LeecherFiles(ctx.scratch("leechers")))
        fastest: tuple[int, Published] | None = None
        if 8 in counts:
            # The control at N=8: the same seeder sending as a full seed does (no bound on
            # its copies), to show what the bound itself costs on this machine.
            f_endpoint, f_port = stack.enter_context(
                s3torrent_seeder(ctx, env={"S3TORRENT_SEEDER__MODE": "fastest"})
            )
            # Its own version of the object, so its own torrent (the version is in the info).
            f_pub = publish(f_endpoint, f_port, data, "swarm.bin")
            fastest = (f_port, f_pub)
        for n in counts:
            timeout = 60 + n * size / (10 * MB)
            # libtorrent super-seeding is slow (about 35 s for 4 or 8 leechers of 64 MiB here).
            superseed_timeout = min(timeout, 45.0)
            subjects = {
                "s3torrent": (peer_port, lambda: origin_bytes(pub), timeout, runs),
                SERVED: (0, lambda: origin_bytes(pub, web_seed=True), timeout, runs),
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
            torrents: dict[str, bytes] = {}
            if n == 8 and fastest is not None:
                f_port, f_pub = fastest
                torrents[FASTEST] = f_pub.torrent
                subjects[FASTEST] = (
                    f_port,
                    functools.partial(origin_bytes, f_pub),
                    timeout,
                    runs,
                )
            copies = {name: Samples(name) for name in subjects}
            medians = {name: Samples(name) for name in subjects}
            worst = {name: Samples(name) for name in subjects}
            cpu = {name: Samples(name) for name in subjects}
            origin_cpu = {name: Samples(name) for name in subjects}
            leecher_cpu = {name: Samples(name) for name in subjects}
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
                    # Our server's peer port for our subjects; None for libtorrent's seeders.
                    server = {"s3torrent": peer_port, SERVED: peer_port, FASTEST: port}.get(name)
                    own_before, threads_before = own_cpu(), threads_cpu()
                    server_before = server_cpu(server) if server else 0.0
                    try:
                        if name == SERVED:
                            r = run_served_leechers(
                                served,
                                n,
                                files,
                                timeout=limit,
                                origin_sent=sent,
                            )
                        else:
                            r = run_leechers(
                                torrents.get(name, pub.torrent),
                                n,
                                port,
                                files,
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
                    own = own_cpu() - own_before
                    # The libtorrent seeders' threads outlive a run; the leechers' do not.
                    seeders = lasting_cpu(threads_before, threads_cpu())
                    served_cpu = server_cpu(server) - server_before if server else seeders
                    cpu[name].values.append(own + (served_cpu if server else 0.0))
                    origin_cpu[name].values.append(served_cpu)
                    leecher_cpu[name].values.append(own - seeders)
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
                        note="target at N=8: s3torrent ≤ 1.05× size",
                    )
                )
            rows.append(
                compare(
                    f"N={n} median completion",
                    "s",
                    medians[ours],
                    medians["libtorrent"],
                    Target(1.0 if n == 8 else 1.5, higher_is_better=False),
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
            if n == 8:
                rows.append(
                    compare(
                        f"N={n} CPU per run, leechers + origin",
                        "s",
                        cpu[ours],
                        cpu["libtorrent"],
                        note="every peer shares this machine's 2 cores",
                    )
                )
                rows += cpu_rows(n, origin_cpu, leecher_cpu)
                if FASTEST in subjects:
                    rows += fastest_rows(n, copies, medians, origin_cpu, leecher_cpu)
            rows += served_rows(n, size, copies, medians)
    return rows


def cpu_rows(n: int, origin_cpu: dict[str, Samples], leecher_cpu: dict[str, Samples]) -> list[Row]:
    """The CPU per run split: the origin's, and the leechers' (their process less the
    libtorrent seeders' threads)."""
    return [
        compare(
            f"N={n} CPU per run, origin alone",
            "s",
            origin_cpu["s3torrent"],
            origin_cpu["libtorrent"],
            note="s3torrent's origin sends about 1 copy, libtorrent's about 3.5",
        ),
        compare(
            f"N={n} CPU per run, leechers alone",
            "s",
            leecher_cpu["s3torrent"],
            leecher_cpu["libtorrent"],
            note="behind s3torrent the leechers send each other the copies the origin does not",
        ),
    ]


def fastest_rows(
    n: int,
    copies: dict[str, Samples],
    medians: dict[str, Samples],
    origin_cpu: dict[str, Samples],
    leecher_cpu: dict[str, Samples],
) -> list[Row]:
    """The control: s3torrent's seeder with no bound on its copies (mode fastest)."""
    control = "control: mode fastest has no bound on the origin's copies"
    return [
        compare(
            f"{FASTEST}, N={n} origin bytes / size",
            "×",
            copies[FASTEST],
            copies["libtorrent"],
            note=control,
        ),
        compare(
            f"{FASTEST}, N={n} median completion",
            "s",
            medians[FASTEST],
            medians["libtorrent"],
            note=control,
        ),
        compare(
            f"{FASTEST}, N={n} CPU per run, origin alone",
            "s",
            origin_cpu[FASTEST],
            origin_cpu["libtorrent"],
        ),
        compare(
            f"{FASTEST}, N={n} CPU per run, leechers alone",
            "s",
            leecher_cpu[FASTEST],
            leecher_cpu["libtorrent"],
        ),
    ]


def served_rows(
    n: int, size: int, copies: dict[str, Samples], medians: dict[str, Samples]
) -> list[Row]:
    """The torrent as served (web seed on) against the libtorrent-seeded mesh."""
    rows = [
        compare(
            f"as served, N={n} origin bytes / size (seeder + web seed)",
            "×",
            copies[SERVED],
            copies["libtorrent"],
            note="target at N=8: as served ≤ 1.2× size",
        ),
        compare(
            f"as served, N={n} median completion",
            "s",
            medians[SERVED],
            medians["libtorrent"],
            Target(1.5, higher_is_better=False),
        ),
    ]
    if n == 1:
        speed = {
            name: Samples(name, [size / t / MB for t in medians[name].values], medians[name].error)
            for name in (SERVED, "libtorrent")
        }
        rows.append(
            compare(
                "as served, one leecher",
                "MB/s",
                speed[SERVED],
                speed["libtorrent"],
                Target(0.8),
            )
        )
    return rows
