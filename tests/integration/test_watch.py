"""testbed watch against a real run, in a real headless Chromium (issue 18, item 1).

``testbed watch results/roam-inside`` is started before the run (it waits for it), the page
is opened in Debian's chromium, then ``testbed run scenarios/roam-inside.yaml`` plays home ->
visited (f) -> office (c) -> home. The page's DOM is read every 50 ms over the DevTools
protocol: the mobile node's network must change on the page within 1 s of each move's
``link_up`` (times on the shared monotonic clock), every handoff's mode and tunnel must
appear as ``summary.json`` has them, and once the run is over the page says so and shows
its final mode. Then the replay slider is moved back into the office.

``WATCH_SCREENSHOTS=DIR`` keeps screenshots (live in mode c, and the replay) in DIR.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from headless import CHROMIUM, Browser, Page
from labtools import ROOT

from mipbase import events as eventlog

TESTBED = [sys.executable, "-m", "testbed.cli"]
STATE_JS = """(() => {
  const t = (id) => { const e = document.getElementById(id); return e ? e.textContent : null; };
  const n = document.getElementById('mn-network');
  return {network: n ? n.getAttribute('data-network') : null, mode: t('mn-mode'),
          tunnel: t('mn-tunnel'), care_of: t('mn-care-of'), status: t('status'),
          tunnels: Array.from(document.querySelectorAll('#tunnels li[data-kind]'))
                     .map((li) => li.getAttribute('data-kind')),
          mark: (document.getElementById('mn-mark') || {getAttribute: () => null})
                  .getAttribute('data-network'),
          built: document.body ? document.body.getAttribute('data-built') : null,
          errors: window.__errors || []};
})()"""

pytestmark = [
    pytest.mark.netns,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists(),
        reason="needs chromium (Debian package chromium; setup.sh installs it)",
    ),
]


def _start_watch(target: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [*TESTBED, "watch", str(target)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
        if m:
            return proc, m.group(1)
        if not line and proc.poll() is not None:
            break
    _stop(proc)
    raise AssertionError("testbed watch printed no address")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _shoot_later(tab: Page, path: Path, delay_s: float) -> None:
    time.sleep(delay_s)  # the registration's arrows and the outage's end on the page
    tab.screenshot(path, 1400, 1500)


def test_watch_follows_a_real_run_in_a_headless_browser(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shots = Path(os.environ["WATCH_SCREENSHOTS"]) if os.environ.get("WATCH_SCREENSHOTS") else None
    watch, url = _start_watch(results / "roam-inside")
    run = None
    seen: list[tuple[int, dict]] = []
    try:
        with Browser(1400, 1000) as browser:
            browser.open(url)  # the tab measured
            # screenshots of the live page come from a second tab, in a thread: taking one
            # blocks its tab for a second, which must not hold up the measurement
            shot_tab = browser.open(url) if shots else None
            shooter = None
            run = subprocess.Popen(
                [*TESTBED, "run", "scenarios/roam-inside.yaml", "--results", str(results)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            shot_live = False
            ended_at = None
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                state = browser.evaluate(STATE_JS)
                now = time.monotonic_ns()
                if not seen or state != seen[-1][1]:  # (a new view counts: "built")
                    seen.append((now, state))
                if shot_tab and not shot_live and state["mode"] == "c" and state["tunnels"]:
                    shooter = threading.Thread(
                        target=_shoot_later, args=(shot_tab, shots / "watch-live.png", 0.4)
                    )
                    shooter.start()
                    shot_live = True
                if ended_at is None and run.poll() is not None:
                    ended_at = time.monotonic()
                if ended_at is not None and (
                    "finished" in (state["status"] or "") or time.monotonic() - ended_at > 10
                ):
                    break
                time.sleep(0.05)
            if shooter is not None:
                shooter.join(60)
            output = run.communicate()[0] if run.poll() is not None else ""
            assert run.returncode == 0, output[-3000:]
            run_dir = next(p for p in (results / "roam-inside").iterdir() if p.name != "latest")
            summary = json.loads((run_dir / "summary.json").read_text())
            (tmp_path / "seen.json").write_text(json.dumps(seen))
            final = seen[-1][1]
            assert not final["errors"], final["errors"]
            assert "finished" in final["status"], final

            # the network changes on the page within 1 s of each move
            link_ups = [
                e
                for e in eventlog.read_run(run_dir)
                if e["event"] == "link_up" and e.get("node") == "runner" and e.get("network")
            ]
            assert len(link_ups) == len(summary["handoffs"]) == 3
            latencies = []
            for up in link_ups:
                shown = next(
                    (t for t, s in seen if t >= up["t_ns"] and s["network"] == up["network"]),
                    None,
                )
                assert shown is not None, (up, [s["network"] for _, s in seen])
                latencies.append((up["network"], (shown - up["t_ns"]) / 1e6))
            print("move -> page:", ", ".join(f"{n} {ms:.0f} ms" for n, ms in latencies))
            assert all(ms < 1000 for _, ms in latencies), latencies
            assert all(s["mark"] == s["network"] for _, s in seen if s["network"])

            # every handoff's mode and tunnel, as the summary has them, were shown
            moves = [h["t_ns"] for h in summary["handoffs"]] + [10**30]
            for i, h in enumerate(summary["handoffs"]):
                window = [s for t, s in seen if moves[i] <= t < moves[i + 1]]
                wanted = (h["mode"], h["tunnel"] or "none")
                assert wanted in [(s["mode"], s["tunnel"]) for s in window], (h, window[-3:])
            assert (final["mode"], final["tunnel"]) == (
                summary["final_mode"],
                summary["handoffs"][-1]["tunnel"] or "none",
            )
            office = next(s for _, s in seen if s["mode"] == "c")
            assert "udp" in office["tunnels"] or "ipip" in office["tunnels"]

            # replay: the slider back to a moment in the office
            t0 = eventlog.read_run(run_dir)[0]["t_ns"]
            at_ms = (summary["handoffs"][1]["t_ns"] - t0) / 1e6 + 600
            browser.evaluate(
                "(() => { const s = document.getElementById('slider'); "
                f"s.value = {at_ms:.0f}; s.dispatchEvent(new Event('input')); }})()"
            )
            for _ in range(100):
                state = browser.evaluate(STATE_JS)
                if state["network"] == "office":
                    break
                time.sleep(0.05)
            assert (state["network"], state["mode"]) == ("office", "c"), state
            assert "replay" in state["status"]
            if shots:
                time.sleep(0.3)
                browser.screenshot(shots / "watch-replay.png", 1400, 1500)
    finally:
        if run is not None and run.poll() is None:
            os.killpg(run.pid, signal.SIGINT)
            run.wait(60)
        _stop(watch)
