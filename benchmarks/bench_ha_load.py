"""Benchmark (issue 19, item 3): the home agent's registrations per second through its real
sockets with a generated population, and memory per binding and per agent process.

    flock /tmp/tb-heavy.lock .venv/bin/python benchmarks/bench_ha_load.py \\
        [--sizes 1000 10000 100000] [--rates 500 1000 2000 4000 8000] [--seconds 3]
        [--max-count 30000] [--window 128] [--no-state] [--profile] [--no-agents]

For each binding cache size C: tests/integration/haload.py's lab (the HA's namespace and a
generator's), the real HA agent (the runner's command line, state file every second unless
``--no-state``, no event-file cap: the 64 MiB default would stop its writing part-way through
a 100k run and make later phases cheaper) configured with C generated mobile nodes (each its
own MN-HA association, the crowds' generator), and a load generator sending MN-HA
authenticated Registration Requests (co-located care-of addresses, one per MN, a fresh
Identification each) from one UDP socket:

- ``add``: every MN registers once, as fast as answered (at most ``--window`` unanswered):
  new bindings, i.e. the data plane's work too (host route, proxy ARP, gratuitous ARP, the
  tunnel); PSS/RSS read at 1k, 10k, 100k bindings -> bytes per binding;
- ``renew R/s``: open loop, R requests/s for ``--seconds`` from MNs drawn at random (seeded):
  renewals of the C bindings;
- ``renew max``: ``--max-count`` renewals as fast as answered.

Per phase: accepted replies per second (code 0/1), latency p50/p95/p99 (the generator's send
to the kernel's receive timestamp of the reply), losses (no reply in 2 s), denials, the HA's CPU
seconds per 1,000 registrations (/proc/PID/stat), UDP receive-buffer drops in the HA's
namespace, and the generator's own CPU share (near 100 %: the generator was the limit). Where
the HA's time goes: its ``dataplane_applied`` events (ms per data-plane action) and, with
``--profile``, cProfile of the HA process (slower: compare only the shares).

Then, without ``--no-agents``: one MN agent process's PSS idle at home and after registering
through an FA (two processes of the same code, labtools.agent_chain), an idle charon's
(strongSwan), and the HA core's bytes per binding in this process (tracemalloc, no I/O).

The machine is shared: hold /tmp/tb-heavy.lock, and read the load average printed beside
the figures.

Measured here (2 cores, shared; load average 2-12, ~6 min): new bindings 3.3-4.5k/s at
0.23-0.25 ms of HA CPU each up to 10k; 1.3k/s and 0.75 ms from 10k to 100k, where proxy ARP
(the kernel's proxy neighbour entries: 0.02 ms at 1k, 0.35 ms at 100k) and the gratuitous
ARP grow. Renewals: every one of 8k/s answered (p50 0.3-0.4 ms), 11.6-15k/s at most (0.07 ms
each). cProfile (10k): per datagram the core 60 us, the events it writes 3 x 13 us, the
reply's sendmsg 27 us; a new binding's data plane 92 us more. Before the state file was
paced (agents.runtime.state.state_interval), 100k bindings' dump stalled the HA ~0.4 s every
second: 41 % of its CPU at 500 renewals/s, p95 420-490 ms at every rate; after, 14 % and
p95 0.4-4 ms (one 3-s phase in two meets a dump). HA PSS 39 / 85 / 555 MiB with 1k / 10k /
100k MNs configured and no binding (5.5 KB per MN: the YAML loader's peak stays in the
heap; the core itself holds 0.7 KB), +0.2-0.95 KB per binding (tracemalloc of the core:
0.49 KB); an MN agent 27-28 MiB PSS at home or registered, an idle charon 3.7 MiB.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pstats
import random
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "integration"))

from haload import (  # noqa: E402  (shared with the namespace test)
    HA_ADDRESS,
    HOME_NETWORK,
    AgentProcess,
    Generator,
    Phase,
    Requests,
    ha_config,
    ha_lab,
    population,
    read_memory_kb,
)
from labtools import agent_chain, ip  # noqa: E402

MIB = 1024.0


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


def row(phase: Phase, cpu_s: float, drops: int, bindings: int) -> str:
    acc = phase.accepted
    per_k = cpu_s / acc * 1e3 if acc else float("nan")
    span = max(phase.last_reply, phase.last_send) - phase.first_send
    denied = sum(phase.denied.values())
    gen = phase.generator_cpu_s / span * 100 if span > 0 else float("nan")
    offered = "max" if phase.rate is None else f"{phase.rate:.0f}"
    return (
        f"{phase.name:<11} {bindings:>7} {offered:>6} {phase.send_rate:>7.0f} {acc:>7} "
        f"{phase.accepted_rate:>7.0f} {phase.lost:>5} {denied + phase.bad_auth:>4} "
        f"{phase.latency_ms(0.5):>6.2f} {phase.latency_ms(0.95):>6.2f} "
        f"{phase.latency_ms(0.99):>7.2f} {per_k:>7.3f} {cpu_s / span * 100 if span else 0:>5.0f}% "
        f"{drops:>6} {gen:>5.0f}%"
    )


HEADER = (
    f"{'phase':<11} {'binds':>7} {'offer':>6} {'sent/s':>7} {'acc':>7} {'acc/s':>7} "
    f"{'lost':>5} {'deny':>4} {'p50ms':>6} {'p95ms':>6} {'p99ms':>7} {'cpu/1k':>7} "
    f"{'HAcpu':>6} {'rcvbuf':>6} {'gen':>6}"
)


def measured(ha: AgentProcess, gen: Generator, bindings: int, **run: Any) -> tuple[Phase, str]:
    cpu0, udp0 = ha.cpu_seconds(), ha.udp_counters()
    phase = gen.run(**run)
    cpu = ha.cpu_seconds() - cpu0
    drops = ha.udp_counters()["RcvbufErrors"] - udp0["RcvbufErrors"]
    return phase, row(phase, cpu, drops, bindings)


def dataplane_times(ha: AgentProcess) -> dict[str, tuple[int, float]]:
    """Per data-plane action: (how many, mean ms), from the HA's dataplane_applied events."""
    times: dict[str, list[float]] = defaultdict(list)
    for event in ha.events({"dataplane_applied"}):
        for name, ms in event.get("actions", []):
            times[name].append(ms)
    return {k: (len(v), statistics.fmean(v)) for k, v in sorted(times.items())}


def run_size(size: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    members = population(size)
    rng = random.Random(size)
    memory: list[tuple[int, dict[str, int]]] = []
    print(f"\n== {size} mobile nodes configured; {load()}", flush=True)
    directory = tmp / f"ha-{size}"
    directory.mkdir()
    profile = directory / "ha.prof" if args.profile else None
    with ha_lab("b") as names:
        ha = AgentProcess(
            names["h"],
            "ha",
            ha_config(members),
            directory,
            state=not args.no_state,
            events_max_mb=0,
            profile=profile,
            start_timeout=300,
        )
        try:
            memory.append((0, ha.memory_kb()))
            print(
                f"HA started in {ha.start_s:.1f} s; PSS {memory[0][1]['pss'] / MIB:.1f} MiB, "
                f"RSS {memory[0][1]['rss'] / MIB:.1f} MiB with no binding"
            )
            if args.start_only:
                return {"size": size, "memory": memory, "start_s": ha.start_s}
            print(HEADER)
            with Generator(names["g"], members, seed=size) as gen:
                done = 0
                marks = sorted({m for m in (1000, 10_000, 100_000) if m < size} | {size})
                for mark in marks:
                    order = list(range(done, mark))
                    _, line = measured(ha, gen, mark, name="add", order=order, window=args.window)
                    print(line, flush=True)
                    done = mark
                    memory.append((mark, ha.memory_kb()))
                for rate in args.rates:
                    count = int(rate * args.seconds)
                    order = [rng.randrange(size) for _ in range(count)]
                    _, line = measured(ha, gen, size, name=f"renew {rate}", order=order, rate=rate)
                    print(line, flush=True)
                order = [rng.randrange(size) for _ in range(args.max_count)]
                _, line = measured(ha, gen, size, name="renew max", order=order, window=args.window)
                print(line, flush=True)
            memory.append((size, ha.memory_kb()))
            time.sleep(1.5)  # one more state dump, with every binding
            state = ha.state()
        finally:
            counters = ha.stop(timeout=120)
    added = len({e["home_address"] for e in ha.events({"binding_added"})})
    in_state = len(state["bindings"]) if state else None
    print(
        f"binding cache: {added} home addresses added (events), {in_state} in the last state "
        f"dump; HA counters: requests {counters.get('requests')}, accepted "
        f"{counters.get('accepted')}, denied {counters.get('denied')}, agent_errors "
        f"{counters.get('agent_errors')}"
    )
    times = dataplane_times(ha)
    print(
        "data plane per action (HA events): "
        + ", ".join(f"{k} {n}x {ms:.3f} ms" for k, (n, ms) in times.items())
    )
    if profile is not None and profile.exists():
        print_profile(profile)
    return {"size": size, "memory": memory, "start_s": ha.start_s}


# where the HA's time goes, by what the functions are for: (label, file suffix, function)
PROFILE_PARTS = (
    ("every datagram on UDP 434", "agents/runtime/driver.py", "_on_udp"),
    (
        "  protocol core: decode, MN-HA check, replay, binding",
        "agents/mip/ha.py",
        "handle_datagram",
    ),
    ("  data plane: host route, proxy ARP, GARP, tunnel", "agents/runtime/dataplane.py", "apply"),
    ("  events: aggregation, JSON, write", "agents/runtime/driver.py", "emit"),
    ("  the reply's sendmsg (with veth delivery)", "agents/runtime/driver.py", "_send"),
    ("state dumps (--state)", "agents/runtime/main.py", "_write_state"),
    ("configuration load (parsed in a child)", "agents/runtime/config.py", "load_ha_apart"),
)


def print_profile(path: Path, top: int = 12) -> None:
    """The HA's cProfile: cumulative time of the parts above, then the top functions."""
    stats = pstats.Stats(str(path))
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    print("cProfile of the HA (its own overhead included: compare shares, not totals):")
    for label, suffix, function in PROFILE_PARTS:
        found = [
            (v[1], v[3]) for k, v in table.items() if k[0].endswith(suffix) and k[2] == function
        ]
        calls, cum = sum(n for n, _ in found), sum(t for _, t in found)
        per = f"{cum / calls * 1e6:8.1f} us/call" if calls else ""
        print(f"  {label:<55} {cum:7.2f} s {calls:>8} calls {per}")
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    print(f"top {top} by own time:\n{text[text.find('ncalls') :]}".rstrip())


def print_memory(runs: list[dict[str, Any]]) -> None:
    print("\nHA memory against bindings (PSS / RSS, MiB; bytes per binding from 0 bindings)")
    print(f"{'configured':>10} {'bindings':>9} {'PSS':>8} {'RSS':>8} {'B/binding PSS':>14}")
    for run in runs:
        base = run["memory"][0][1]
        seen = set()
        for bindings, kb in run["memory"]:
            if bindings in seen:
                continue
            seen.add(bindings)
            per = (kb["pss"] - base["pss"]) * 1024 / bindings if bindings else float("nan")
            print(
                f"{run['size']:>10} {bindings:>9} {kb['pss'] / MIB:>8.1f} {kb['rss'] / MIB:>8.1f} "
                f"{per:>14.0f}"
            )
    if len(runs) > 1:
        a, b = runs[0], runs[-1]
        per_mn = (b["memory"][0][1]["pss"] - a["memory"][0][1]["pss"]) * 1024
        per_mn /= b["size"] - a["size"]
        print(
            f"HA PSS per configured MN (no binding, {a['size']} -> {b['size']}): "
            f"{per_mn:.0f} B (start {a['start_s']:.1f} s -> {b['start_s']:.1f} s)"
        )


def core_bytes_per_binding(count: int = 10_000) -> tuple[float, float]:
    """The HA core alone (agents.mip.ha, no driver, no data plane, actions dropped): bytes
    traced per configured MN and per binding, in this process."""
    from agents.mip.ha import HaConfig, HomeAgent, MobileNodeConfig

    members = population(count)
    builder = Requests(members)
    requests = [(builder.request(m)[0], m.care_of) for m in members]
    tracemalloc.start()
    t0 = tracemalloc.get_traced_memory()[0]
    config = HaConfig(
        HA_ADDRESS,
        HOME_NETWORK,
        [MobileNodeConfig(m.home_address, m.spi, m.key) for m in members],
        max_lifetime=600,
    )
    ha = HomeAgent(config, wallclock=time.time)
    t1 = tracemalloc.get_traced_memory()[0]
    now = time.monotonic()
    for data, coa in requests:
        ha.handle_datagram(data, coa, 434, now)
    t2 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert ha.binding_count == count, ha.binding_count
    return (t1 - t0) / count, (t2 - t1) / count


def agent_memory(tmp: Path) -> None:
    """PSS of one MN agent idle at home and of one after registering through an FA, and of
    an idle charon, each in namespaces of labtools.agent_chain (``n`` -- ``f`` -- ``h``)."""
    print(f"\n== agent processes; {load()}")
    home = {"home_address": "10.2.0.100", "spi": 256, "key": "6d6e2d6861"}
    directory = tmp / "mn-home"
    directory.mkdir()
    with agent_chain("hm", "n") as names:  # at home: the HA on n's link (f), H adverts
        ip(names["n"], "addr", "add", "10.2.0.100/24", "dev", "eth0")
        ha_cfg = {
            "address": "10.2.0.254",
            "interface": "eth0",
            "home_network": "10.2.0.0/24",
            "mobile_nodes": [home],
        }
        mn_cfg = {
            "home_agent": "10.2.0.254",
            "home_network": "10.2.0.0/24",
            "home_router": "10.2.0.254",
            "interface": "eth0",
            "dhcp": False,
            **home,
        }
        ha = AgentProcess(names["f"], "ha", ha_cfg, directory)
        try:
            mn = AgentProcess(names["n"], "mn", mn_cfg, directory)
            try:
                mn.wait_event("agent_discovered")
                time.sleep(3.0)
                state = mn.state() or {}
                kb = mn.memory_kb()
                print(
                    f"MN agent idle at home ({state.get('state')}, registered "
                    f"{state.get('registered')}): PSS {kb['pss'] / MIB:.1f} MiB, RSS "
                    f"{kb['rss'] / MIB:.1f} MiB"
                )
            finally:
                mn.stop()
        finally:
            ha.stop()
    directory = tmp / "mn-away"
    directory.mkdir()
    with agent_chain("am", "n") as names:  # away: through the FA in f to the HA in h
        away = {**home, "home_address": "10.1.0.100"}
        ha_cfg = {
            "address": "10.1.0.1",
            "interface": "eth0",
            "home_network": "10.1.0.0/24",
            "advertise": False,
            "mobile_nodes": [away],
        }
        mn_cfg = {
            "home_agent": "10.1.0.1",
            "home_network": "10.1.0.0/24",
            "home_router": "10.1.0.254",
            "interface": "eth0",
            "dhcp": False,
            **away,
        }
        started: list[AgentProcess] = []
        try:
            started.append(AgentProcess(names["h"], "ha", ha_cfg, directory))
            fa_cfg = {"address": "10.2.0.254", "interface": "eth0"}
            started.append(AgentProcess(names["f"], "fa", fa_cfg, directory))
            mn = AgentProcess(names["n"], "mn", mn_cfg, directory)
            started.append(mn)
            accepted = mn.wait_event("registration_accepted", timeout=15)
            time.sleep(3.0)
            kb = mn.memory_kb()
            print(
                f"MN agent after registering through the FA ({accepted['latency'] * 1e3:.1f} ms)"
                f": PSS {kb['pss'] / MIB:.1f} MiB, RSS {kb['rss'] / MIB:.1f} MiB"
            )
            charon_memory(names["n"], tmp)
        finally:
            for agent in reversed(started):
                agent.stop()


def charon_memory(ns: str, tmp: Path) -> None:
    from testbed.vpn.charon import Charon, CharonConfig

    try:
        charon = Charon(ns, CharonConfig(node="mn", run_dir=tmp / "charon"))
        ready = charon.start()
    except Exception as exc:  # no strongSwan here: the other figures stand
        print(f"charon: not measured ({type(exc).__name__}: {exc})")
        return
    try:
        time.sleep(1.0)
        kb = read_memory_kb(charon.pid or 0)
        print(
            f"charon (strongSwan, idle, no SA, ready in {ready * 1e3:.0f} ms): PSS "
            f"{kb.get('pss', 0) / MIB:.1f} MiB, RSS {kb.get('rss', 0) / MIB:.1f} MiB"
        )
    finally:
        charon.stop()


def _interrupted(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--rates", type=int, nargs="*", default=[500, 1000, 2000, 4000, 8000])
    parser.add_argument("--seconds", type=float, default=3.0, help="per open-loop rate")
    parser.add_argument("--max-count", type=int, default=30_000, help="renewals at max rate")
    parser.add_argument("--window", type=int, default=128, help="unanswered at most (max)")
    parser.add_argument("--no-state", action="store_true", help="no state file (the runner's)")
    parser.add_argument("--profile", action="store_true", help="cProfile the HA")
    parser.add_argument("--no-agents", action="store_true", help="skip MN/charon/core memory")
    parser.add_argument(
        "--start-only",
        action="store_true",
        help="only start the HA with each size configured: start-up time and memory",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root (network namespaces)", file=sys.stderr)
        return 2
    # SIGTERM as Ctrl-C: every namespace and process of ours goes on the way out
    signal.signal(signal.SIGTERM, _interrupted)
    print(f"bench_ha_load: {load()}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-ha-load-") as tmp:
        for size in args.sizes:
            runs.append(run_size(size, args, Path(tmp)))
        print_memory(runs)
        if not args.no_agents and not args.start_only:
            per_mn, per_binding = core_bytes_per_binding()
            print(
                f"HA core alone (tracemalloc, 10k): {per_mn:.0f} B per configured MN, "
                f"{per_binding:.0f} B per binding"
            )
            agent_memory(Path(tmp))
    print(f"\n{load()} at the end")
    print("reproduce: flock /tmp/tb-heavy.lock .venv/bin/python " + " ".join(sys.argv))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
