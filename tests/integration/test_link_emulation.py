"""Link emulation for real: delay, loss, rate and live changes on a two-host topology."""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from labtools import lab_leftovers, median, ping_rtts, unique_name

from testbed.lab.builder import build
from testbed.lab.lab import Lab
from testbed.topology import load_topology
from testbed.topology.plan import Impairment

pytestmark = pytest.mark.netns

TOPOLOGY = """\
name: pair
networks:
  lan: {subnet: 10.77.0.0/24}
nodes:
  a:
    links: [{network: lan, address: 10.77.0.1, impair: {delay: 10ms, egress: {loss: 20%}}}]
  b:
    links: [{network: lan, address: 10.77.0.2}]
  c:
    links: [{network: lan, address: 10.77.0.3, impair: {ingress: {rate: 10mbit}}}]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    path = Path(tmp_path_factory.mktemp("topo")) / "pair.yaml"
    path.write_text(textwrap.dedent(TOPOLOGY))
    plan = load_topology(path)
    lab = Lab(build(plan, unique_name("pair")), plan)
    # resolve ARP first: a's egress drops 20% of its frames, ARP replies included, and pings
    # queued behind a lost ARP reply would wait out the 1 s ARP retries (seen once in CI)
    for src, dst in (("b", "10.77.0.1"), ("c", "10.77.0.1"), ("b", "10.77.0.3")):
        lab.run(src, ["ping", "-c", "1", "-w", "10", dst], check=False)
    yield lab
    lab.down()
    assert not lab_leftovers(lab.name)


def test_delay_shows_in_rtt_within_1ms(lab: Lab) -> None:
    # b -> a: a's 10 ms applies in both directions; 20% loss only on a's egress (replies)
    rtts = ping_rtts(lab, "b", "10.77.0.1", count=40, interval=0.01)
    assert len(rtts) >= 15
    assert 20.0 <= median(rtts) <= 21.0, rtts


def test_loss_within_statistical_bounds(lab: Lab) -> None:
    count = 600
    rtts = ping_rtts(lab, "b", "10.77.0.1", count=count, interval=0.002)
    # each echo reply crosses a's egress once: delivered with p = 0.8
    p, sigma = 0.8, math.sqrt(0.8 * 0.2 / count)
    delivered = len(rtts) / count
    assert p - 5 * sigma <= delivered <= p + 5 * sigma, delivered


def test_live_impairment_change(lab: Lab) -> None:
    lab.set_impairment("a", Impairment(delay_ms=2.0), Impairment(delay_ms=2.0))
    try:
        rtts = ping_rtts(lab, "b", "10.77.0.1", count=20)
        assert 4.0 <= median(rtts) <= 5.0, rtts
    finally:
        lab.set_impairment("a", Impairment(delay_ms=10.0, loss=0.2), Impairment(delay_ms=10.0))
    rtts = ping_rtts(lab, "b", "10.77.0.1", count=20)
    assert 20.0 <= median(rtts) <= 21.0


def test_rate_limit(lab: Lab) -> None:
    server = lab.popen("c", ["iperf3", "-s", "-1", "-B", "10.77.0.3"])
    try:
        import time

        time.sleep(0.3)
        # b -> c: 30 Mbit/s of UDP offered into c's 10 Mbit/s ingress
        result = lab.run(
            "b", ["iperf3", "-c", "10.77.0.3", "-u", "-b", "30M", "-t", "2", "-J"], check=False
        )
        report = json.loads(result.stdout)
        end = report["end"]
        # the client's summary carries the server's view (lost_percent) of the stream
        received_bps = end["sum"]["bits_per_second"] * (1 - end["sum"]["lost_percent"] / 100)
        assert 8e6 <= received_bps <= 11e6, received_bps
    finally:
        server.kill()
        server.wait()
