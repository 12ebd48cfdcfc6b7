"""facts.policy_source_samples: the caller addresses publication asks the anonymous decision
from, when a bucket's policy decides by aws:SourceIp (publication.refusal_anywhere)."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from s3torrent.access.facts import policy_source_samples


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(operator: str, networks: list[str]) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::b/*",
        "Condition": {operator: {"aws:SourceIp": networks}},
    }


def _inside(sample: str | None, network: str) -> bool:
    return sample is not None and ipaddress.ip_address(sample) in ipaddress.ip_network(network)


def test_each_named_network_has_a_sample_inside_and_outside() -> None:
    networks = ["203.0.113.0/24", "2001:db8:1::/48", "0.0.0.0/0", "10.1.2.3"]
    samples = policy_source_samples(_policy(_allow("IpAddress", networks)), "b")
    assert samples[0] is None
    for network in networks:
        assert any(_inside(s, network) for s in samples), network
        if ipaddress.ip_network(network).num_addresses < 2**32:
            assert any(
                s is not None
                and ipaddress.ip_address(s).version == ipaddress.ip_network(network).version
                and not _inside(s, network)
                for s in samples
            ), network


def test_a_not_ip_address_allow_has_a_sample_it_admits() -> None:
    """Allow from anywhere but one network: some sample lies outside every named one."""
    networks = ["192.0.2.0/24", "2001:db8::/32"]  # the samples a policy is unlikely to name
    samples = policy_source_samples(_policy(_allow("NotIpAddress", networks)), "b")
    assert any(s is not None and not any(_inside(s, n) for n in networks) for s in samples)


def test_the_edges_of_the_address_space_stay_addresses() -> None:
    samples = policy_source_samples(
        _policy(_allow("IpAddress", ["0.0.0.0/8", "255.255.255.255/32", "::/128"])), "b"
    )
    for sample in samples[1:]:
        assert sample is not None
        ipaddress.ip_address(sample)  # raises if a sample ran off the space
