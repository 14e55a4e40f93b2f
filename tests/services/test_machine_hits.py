"""Machine-open and scanner-click signals, Apple's ranges, and their loading command."""

from __future__ import annotations

import ipaddress
import os
import time

import pytest

from app.services.tracking import machine_hits
from app.services.tracking.machine_hits import NetworkSet, agent_is_machine, burst_members
from app.services.tracking.runtime import LinkCache


def test_network_set_matches_inside_and_nowhere_else():
    nets = NetworkSet(
        ipaddress.ip_network(n)
        for n in ("172.224.224.0/27", "172.224.224.32/31", "2a02:26f7:bb40::/54")
    )
    assert nets.size == 2  # the two IPv4 prefixes are adjacent and collapse into one
    assert "172.224.224.0" in nets
    assert "172.224.224.33" in nets
    assert "172.224.224.34" not in nets
    assert "172.224.223.255" not in nets
    assert "2a02:26f7:bb40:3ff::1" in nets
    assert "2a02:26f7:bb41::1" not in nets
    assert "::ffff:172.224.224.5" in nets  # IPv4-mapped, as some proxies report it
    assert "not-an-ip" not in nets
    assert "" not in nets
    assert None not in nets


def test_bundled_sample_of_apple_ranges_loads():
    nets = machine_hits.read_ranges(machine_hits.BUNDLED_APPLE_RANGES)
    assert nets.size > 20
    assert "104.28.48.8" in nets
    assert "8.8.8.8" not in nets


@pytest.mark.parametrize(
    ("agent", "for_click", "machine"),
    [
        ("Mozilla/5.0 (Windows NT 10.0) Gecko/20100101 Firefox/128.0", True, False),
        (
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0"
            " (via ggpht.com GoogleImageProxy)",
            False,
            False,
        ),
        ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", False, False),
        ("Barracuda Sentinel (EE)", False, True),
        ("Mozilla/5.0 (compatible; Proofpoint URL Defense)", True, True),
        ("Mimecast-Targeted-Threat-Protection", True, True),
        ("python-requests/2.31.0", True, True),
        ("curl/8.5.0", True, True),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/120.0 Safari/537.36",
            True,
            True,
        ),
        ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0)", False, False),
        ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0)", True, True),
        ("Googlebot/2.1", True, True),
    ],
)
def test_user_agents(agent, for_click, machine):
    assert agent_is_machine(agent, for_click=for_click) is machine


def test_bursts_need_two_different_links_within_two_seconds():
    clicks = [(100.0, 1), (101.5, 2), (200.0, 1), (200.4, 1), (300.0, 3), (302.5, 4)]
    assert set(burst_members(clicks)) == {0, 1}
    # Symmetric: the order hits arrive in does not matter.
    backwards = list(reversed(clicks))
    assert {backwards[i] for i in burst_members(backwards)} == {clicks[0], clicks[1]}


def test_click_reasons_seconds_after_sending():
    assert machine_hits.click_reasons("Firefox", head=False, at=105, sent_at=100) == [
        machine_hits.REASON_TOO_SOON
    ]
    assert machine_hits.click_reasons("Firefox", head=False, at=200, sent_at=100) == []
    assert machine_hits.click_reasons("Firefox", head=False, at=200, sent_at=None) == []


def test_apple_ranges_reload_when_the_file_changes(tmp_path):
    path = tmp_path / "apple.csv"
    ranges = machine_hits.AppleRanges(path)
    assert "104.28.48.8" in ranges.current()  # no file yet: the bundled sample
    path.write_text("# comment\n10.9.0.0/16,CA,CA-AB,Calgary\n")
    assert "10.9.1.1" in ranges.current()
    assert "104.28.48.8" not in ranges.current()
    path.write_text("10.8.0.0/16\n")
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert "10.8.0.1" in ranges.current()
    assert "10.9.1.1" not in ranges.current()


def test_load_apple_ranges_command(app, tmp_path, monkeypatch):
    source = tmp_path / "egress-ip-ranges.csv"
    source.write_text(
        "172.225.1.0/24,US,US-CA,Los Angeles\nnonsense,XX,,\n2a04:4e41::/32,GB,GB-EN,London\n"
    )
    target = tmp_path / "var" / "apple.csv"
    monkeypatch.setitem(app.config, "APPLE_RANGES_FILE", str(target))
    result = app.test_cli_runner().invoke(args=["tracking", "load-apple-ranges", str(source)])
    assert result.exit_code == 0, result.output
    assert "Read 2 prefixes (1 lines skipped)" in result.output
    nets = machine_hits.read_ranges(target)
    assert "172.225.1.9" in nets
    assert "2a04:4e41:1::1" in nets

    empty = tmp_path / "empty.csv"
    empty.write_text("garbage\n")
    bad = app.test_cli_runner().invoke(args=["tracking", "load-apple-ranges", str(empty)])
    assert bad.exit_code != 0
    assert "nothing was changed" in bad.output
    assert "172.225.1.9" in machine_hits.read_ranges(target)


def test_link_cache_remembers_and_forgets():
    calls = []

    def load(link_id):
        calls.append(link_id)
        return None

    cache = LinkCache(load)
    assert cache.get(5) is None
    assert cache.get(5) is None
    assert calls == [5]  # the miss is remembered for a while
    cache.NEGATIVE_TTL = -1
    cache.get(6)
    cache.get(6)
    assert calls == [5, 6, 6]
