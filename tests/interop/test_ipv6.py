"""A server listening on IPv6 only ([::1]): S3 by boto3, the torrent as served names
bracketed URLs, and real clients download from the origin seeder alone (no web seed, so
the bytes come over the peer wire on IPv6), byte for byte."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest
from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

from tests.conftest import LiveServer, make_client
from tests.interop.clients import DRIVERS, Job, missing
from tests.ports import free_port

pytestmark = [pytest.mark.interop, pytest.mark.slow]


class IPv6Server(LiveServer):
    @property
    def endpoint(self) -> str:
        return f"http://[::1]:{self.port}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> IPv6Server:
    data = tmp_path_factory.mktemp("ipv6") / "data"
    data.mkdir()
    port, peer = free_port(), free_port()
    srv = IPv6Server(
        data_dir=data,
        port=port,
        peer_port=peer,
        workers=2,
        # The last --listen wins: IPv6 only, for HTTP and for peers.
        extra_args=["--listen", f"[::1]:{port}", "--peer-listen", f"[::1]:{peer}"],
    )
    srv.start()
    yield srv  # type: ignore[misc]
    srv.stop()


def test_the_server_names_its_ipv6_address_as_a_url(server: IPv6Server) -> None:
    assert server.log_path is not None
    log = server.log_path.read_text()
    assert f"listening on http://[::1]:{server.port} (public URL http://[::1]:{server.port})" in log


@pytest.mark.parametrize("client", ["aria2", "libtorrent"])
def test_a_client_downloads_from_the_seeder_over_ipv6(
    server: IPv6Server, tmp_path: Path, client: str
) -> None:
    why = missing(client)
    assert why is None, why
    s3 = make_client(server.endpoint)
    bucket = f"ipv6-{client}"
    s3.create_bucket(Bucket=bucket)
    data = os.urandom(3_000_000)
    s3.put_object(Bucket=bucket, Key="v6.bin", Body=data, ACL="public-read")
    with urllib.request.urlopen(f"{server.endpoint}/{bucket}/v6.bin?torrent", timeout=10) as r:
        meta = bdecode(r.read())
    assert meta[b"announce"] == f"http://[::1]:{server.port}/announce".encode()
    assert meta[b"url-list"][0].startswith(f"http://[::1]:{server.port}/_webseed/".encode())
    del meta[b"url-list"]  # only the seeder, found through the tracker, over IPv6
    job = Job(
        torrent=bencode(meta),
        magnet=None,
        name="v6.bin",
        data=data,
        workdir=tmp_path,
        timeout=60,
        address="::1",
    )
    assert DRIVERS[client](job) == data
