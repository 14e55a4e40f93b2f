"""Machine opens and automated clicks: flagged (never dropped), so reports show raw and human.

Signals (reference/sendgrid-deliverability-casl.md §6):
- an open from Apple's Private Relay egress ranges is Mail Privacy Protection prefetching;
- security scanners and link checkers announce themselves in the user agent (Barracuda,
  Proofpoint, Mimecast, python-requests, curl, HeadlessChrome...), or send HEAD, or nothing;
- a click seconds after sending, or several links of one delivery within two seconds, is a
  scanner following every link. Gmail's GoogleImageProxy and Yahoo's proxy fetch images when a
  person opens the message, so they count as human.
"""

from __future__ import annotations

import bisect
import csv
import functools
import ipaddress
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

# A sample shipped inside the app package (app/data), found as package data.
BUNDLED_APPLE_RANGES = Path(str(resources.files("app") / "data" / "apple_mpp_egress.csv"))

# A click this soon after the message left is a scanner (people need longer to read).
CLICK_AFTER_SEND_SECONDS = 10.0
# Two different links of one delivery clicked this close together: a scanner following them all.
BURST_WINDOW_SECONDS = 2.0

REASON_APPLE = "apple-privacy-relay"
REASON_AGENT = "automated-user-agent"
REASON_NO_AGENT = "no-user-agent"
REASON_HEAD = "head-request"
REASON_TOO_SOON = "seconds-after-sending"
REASON_BURST = "several-links-at-once"

# Lower-case substrings of user agents that only machines send. "ms-office"/"microsoft office"
# is Outlook's link preview and Safe Links check: a machine for clicks, but Outlook desktop
# also uses it to load images when a person opens the message, so not for opens.
_AGENT_TOKENS = (
    "barracuda",
    "proofpoint",
    "mimecast",
    "ironport",
    "trendmicro",
    "trend micro",
    "symantec",
    "messagelabs",
    "forcepoint",
    "sophos",
    "fortinet",
    "cisco",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "curl/",
    "wget/",
    "go-http-client",
    "okhttp",
    "java/",
    "apache-httpclient",
    "libwww-perl",
    "headlesschrome",
    "phantomjs",
    "slackbot",
    "facebookexternalhit",
    "linkedinbot",
    "twitterbot",
    "whatsapp",
    "skypeuripreview",
)
_CLICK_ONLY_TOKENS = ("ms-office", "microsoft office", "msoffice")
_BOT_WORD = re.compile(r"bot\b|spider|crawler|scanner", re.IGNORECASE)
# Human-triggered image proxies: a person opened the message in Gmail / Yahoo.
_HUMAN_PROXIES = ("googleimageproxy", "yahoomailproxy")


@functools.lru_cache(maxsize=8192)
def agent_is_machine(user_agent: str, *, for_click: bool) -> bool:
    """True when the user agent belongs to a scanner, a link preview or a script.

    Cached: a campaign's hits come from a few hundred distinct agents, and the flusher
    classifies thousands of hits a second.
    """
    agent = user_agent.lower()
    if any(proxy in agent for proxy in _HUMAN_PROXIES):
        return False
    if any(token in agent for token in _AGENT_TOKENS):
        return True
    if for_click and any(token in agent for token in _CLICK_ONLY_TOKENS):
        return True
    return _BOT_WORD.search(agent) is not None


class NetworkSet:
    """IP networks merged into sorted, disjoint integer intervals: a lookup is one bisect.

    Apple's list has ~285k prefixes; merging neighbours shrinks it, and bisect over the
    interval starts costs O(log n) per address with no per-prefix Python objects kept.
    """

    def __init__(self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        by_version: dict[int, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {4: [], 6: []}
        for network in networks:
            by_version[network.version].append(network)
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        self._seen: dict[str, bool] = {}  # MPP egress addresses repeat: remember answers
        self.size = 0
        for version, nets in by_version.items():
            starts: list[int] = []
            ends: list[int] = []
            for start, end in sorted(
                (int(n.network_address), int(n.broadcast_address)) for n in nets
            ):
                if ends and start <= ends[-1] + 1:  # overlapping or adjacent: one interval
                    ends[-1] = max(ends[-1], end)
                else:
                    starts.append(start)
                    ends.append(end)
            self._starts[version] = starts
            self._ends[version] = ends
            self.size += len(starts)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str) or not address:
            return False
        known = self._seen.get(address)
        if known is None:
            if len(self._seen) > 65536:
                self._seen.clear()
            known = self._seen[address] = self._lookup(address)
        return known

    def _lookup(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        value = int(ip)
        starts = self._starts[ip.version]
        index = bisect.bisect_right(starts, value) - 1
        return index >= 0 and value <= self._ends[ip.version][index]


@dataclass(frozen=True)
class RangeFile:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    skipped: list[tuple[int, str]]  # (line number, text) of lines that are not a prefix


def parse_ranges(lines: Iterable[str]) -> RangeFile:
    """Read Apple's CSV (prefix,country,region,city); '#' lines are comments."""
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    skipped: list[tuple[int, str]] = []
    for number, row in enumerate(csv.reader(lines), start=1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        try:
            networks.append(ipaddress.ip_network(row[0].strip(), strict=False))
        except ValueError:
            skipped.append((number, ",".join(row)[:200]))
    return RangeFile(networks, skipped)


def read_ranges(path: Path) -> NetworkSet:
    with path.open(encoding="utf-8", newline="") as handle:
        return NetworkSet(parse_ranges(handle).networks)


def write_ranges(
    networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network], path: Path
) -> int:
    """Write collapsed prefixes to `path` atomically (a worker may be reading the old file)."""
    collapsed = [
        *ipaddress.collapse_addresses(n for n in networks if n.version == 4),
        *ipaddress.collapse_addresses(n for n in networks if n.version == 6),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write("# Apple iCloud Private Relay egress ranges, collapsed; from\n")
        handle.write("# https://mask-api.icloud.com/egress-ip-ranges.csv via flask tracking\n")
        for network in collapsed:
            handle.write(f"{network}\n")
    os.replace(tmp, path)
    return len(collapsed)


class AppleRanges:
    """The loaded ranges, reloaded when the file changes (the command replaces it daily)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._key: tuple[str, float] | None = None
        self._set = NetworkSet([])

    def _source(self) -> Path:
        return self.path if self.path.is_file() else BUNDLED_APPLE_RANGES

    def current(self) -> NetworkSet:
        source = self._source()
        try:
            key = (str(source), source.stat().st_mtime)
        except OSError:
            return self._set
        if key != self._key:
            with self._lock:
                if key != self._key:
                    try:
                        self._set = read_ranges(source)
                        log.info("loaded %d Apple relay ranges from %s", self._set.size, source)
                    except OSError:
                        log.exception("could not read Apple relay ranges from %s", source)
                    self._key = key
        return self._set


def open_reasons(ip: str, user_agent: str, *, head: bool, apple: NetworkSet) -> list[str]:
    """Why an open looks automated (empty: a person, as far as we can tell)."""
    reasons = []
    if ip in apple:
        reasons.append(REASON_APPLE)
    if not user_agent.strip():
        reasons.append(REASON_NO_AGENT)
    elif agent_is_machine(user_agent, for_click=False):
        reasons.append(REASON_AGENT)
    if head:
        reasons.append(REASON_HEAD)
    return reasons


def click_reasons(user_agent: str, *, head: bool, at: float, sent_at: float | None) -> list[str]:
    """Why a click looks automated, from the click alone (bursts are found per delivery)."""
    reasons = []
    if not user_agent.strip():
        reasons.append(REASON_NO_AGENT)
    elif agent_is_machine(user_agent, for_click=True):
        reasons.append(REASON_AGENT)
    if head:
        reasons.append(REASON_HEAD)
    if sent_at is not None and 0 <= at - sent_at < CLICK_AFTER_SEND_SECONDS:
        reasons.append(REASON_TOO_SOON)
    return reasons


def burst_members(clicks: Sequence[tuple[float, int]]) -> Iterator[int]:
    """Indexes of clicks that have a click on a *different* link within the burst window.

    `clicks` are (time, link id) of one delivery. The rule is symmetric and depends only on
    the set of clicks, so the result is the same whatever order the hits arrive in.
    """
    order = sorted(range(len(clicks)), key=lambda i: clicks[i][0])
    times = [clicks[i][0] for i in order]
    for position, index in enumerate(order):
        at, link = clicks[index]
        low = bisect.bisect_left(times, at - BURST_WINDOW_SECONDS)
        high = bisect.bisect_right(times, at + BURST_WINDOW_SECONDS)
        if any(clicks[order[j]][1] != link for j in range(low, high) if j != position):
            yield index
