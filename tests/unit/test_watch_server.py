"""testbed watch's server (testbed/watch/server.py) on a run directory written by the test:
the page, the plan, a view pushed as a server-sent event when the run's files change, the
replay endpoint, the end of the run. No root, no browser."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_watch_model import MS, PLAN, SCENARIO, START, T0, TO_VISITED

from testbed.watch import server

ROOT = Path(__file__).resolve().parents[2]


def _write_events(path: Path, events: list[dict]) -> None:
    with path.open("a") as out:
        for event in events:
            out.write(json.dumps(event) + "\n")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "results" / "t" / "20260101-120000-abcd"
    (run / "events").mkdir(parents=True)
    (run / "state").mkdir()
    (run / "probes").mkdir()
    (run / "plan.json").write_text(json.dumps(PLAN))
    (run / "scenario.json").write_text(json.dumps(SCENARIO))
    _write_events(run / "events" / "runner.jsonl", [e for e in START if e["node"] == "runner"])
    _write_events(run / "events" / "mn.jsonl", [e for e in START if e["node"] != "runner"])
    rows = "".join(
        f"{i},{T0 + i * 2 * MS},{T0 + (i * 2 + 3) * MS},10.1.0.10,1\n" for i in range(400)
    )
    (run / "probes" / "down.csv").write_text("seq,t_send_ns,t_recv_ns,src,sport\n" + rows)
    return run


class Stream:
    """The page's EventSource, as a thread that keeps the views it is sent."""

    def __init__(self, url: str, node: str = "") -> None:
        self.views: list[dict] = []
        self.plans = 0
        query = f"?node={node}" if node else ""
        self.response = urllib.request.urlopen(url + "api/stream" + query, timeout=30)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        event = None
        for raw in self.response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "view":
                self.views.append(json.loads(line[5:]))
            elif line.startswith("data:") and event == "plan":
                self.plans += 1

    def wait_for(self, test, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for view in reversed(self.views):
                if "mn" in view and test(view):
                    return view
            time.sleep(0.02)
        raise AssertionError(f"no such view; last: {self.views[-1:]}")


@pytest.fixture
def serve():
    """Start servers for a test; each is shut down after it."""
    servers: list[server.WatchServer] = []

    def start(target: Path) -> str:
        watching = server.start(target)
        threading.Thread(target=watching.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(watching)
        return watching.url

    yield start
    for watching in servers:
        watching.shutdown()
        watching.close()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read()


def test_a_run_followed_live_then_replayed(run_dir: Path, serve) -> None:
    # the scenario's results directory: the run going on there
    url = serve(run_dir.parent)
    page = _get(url).decode()
    assert (
        "<svg" in page
        and "EventSource" in page
        and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    ), "the page fetches nothing from elsewhere"
    stream = Stream(url)
    view = stream.wait_for(lambda v: v["mn"]["network"] == "home")
    assert view["live"] and not view["finished"]
    plan = json.loads(_get(url + "api/plan"))
    assert plan["run_dir"] == str(run_dir.resolve()) and plan["mobile"] == "mn"
    assert {n["name"] for n in plan["geometry"]["networks"]} == set(PLAN["networks"])

    # the run moves on: the pushed view follows within a few polls
    _write_events(
        run_dir / "events" / "runner.jsonl", [e for e in TO_VISITED if e["node"] == "runner"]
    )
    _write_events(
        run_dir / "events" / "agents.jsonl", [e for e in TO_VISITED if e["node"] != "runner"]
    )
    started = time.monotonic()
    view = stream.wait_for(lambda v: v["mn"]["mode"] == "f")
    assert time.monotonic() - started < 1.0
    assert view["mn"]["network"] == "visited"
    assert [t["kind"] for t in view["tunnels"]] == ["ipip"] and view["paths"]
    assert view["probes"]["down"]["received"] == 400

    # agents' state files are read as they are rewritten
    state = {"role": "fa", "t_ns": T0 + 2000 * MS, "visitors": [{"home_address": "10.1.0.100"}]}
    (run_dir / "state" / "fa.json").write_text(json.dumps(state))
    stream.wait_for(lambda v: v["visitors"].get("fa", {}).get("source") == "state")

    # replay: the view at a moment before the move
    before = json.loads(_get(url + "api/view?at_ms=500"))
    assert before["replay"] and before["mn"]["network"] == "home"

    # the run ends: summary.json (and the merged log) make the view final
    merged = sorted(START + TO_VISITED, key=lambda e: e["t_ns"])
    _write_events(run_dir / "events.jsonl", merged)
    summary = {"scenario": "s", "verdict": "passed", "handoffs": []}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    view = stream.wait_for(lambda v: v["finished"])
    assert view["verdict"] == "passed" and not view["live"]
    assert view["mn"]["mode"] == "f"


def test_waits_for_a_run_that_has_not_started(tmp_path: Path, run_dir: Path, serve) -> None:
    target = tmp_path / "results" / "later"
    url = serve(target)
    assert json.loads(_get(url + "api/plan"))["waiting"] == str(target)
    stream = Stream(url)
    target.mkdir(parents=True)
    (target / "20260101-130000-beef").symlink_to(run_dir, target_is_directory=True)
    stream.wait_for(lambda v: v["mn"]["network"] == "home")
    assert stream.plans >= 1


def test_targets_a_lab_folder_or_a_scenario_file_means_its_results(tmp_path: Path) -> None:
    lab = ROOT / "labs" / "01-home-and-agent-discovery"
    path, lab_name = server.resolve_target(str(lab), str(tmp_path))
    assert (path, lab_name) == (tmp_path / "lab-01-home-and-agent-discovery", None)
    path, _ = server.resolve_target(str(ROOT / "scenarios" / "roam-inside.yaml"), "results")
    assert path == Path("results") / "roam-inside"
    assert server.resolve_target(str(tmp_path / "nothing-yet"))[0] == tmp_path / "nothing-yet"
    with pytest.raises(LookupError):
        server.resolve_target(str(tmp_path / "missing.yaml"))


def test_each_page_details_the_node_it_chose(tmp_path: Path) -> None:
    """``testbed watch --node`` names the node a page details unless it asks for another
    (``?node=``, what its 'detail' list sets): each tab its own mobile node's mode, ladder
    and probe streams (probes/NODE/), the others' pages unchanged; a name that is not one
    of the run's mobile nodes is refused."""
    from test_crowd_pictures import CROWD, interleaved
    from test_crowd_pictures import PLAN as CROWD_PLAN

    run = tmp_path / "results" / "crowd" / "20260101-120000-abcd"
    (run / "events").mkdir(parents=True)
    (run / "plan.json").write_text(json.dumps(CROWD_PLAN))
    (run / "scenario.json").write_text(json.dumps(CROWD))
    events = interleaved()
    _write_events(run / "events" / "runner.jsonl", [e for e in events if e["node"] == "runner"])
    _write_events(run / "events" / "agents.jsonl", [e for e in events if e["node"] != "runner"])
    for node, rows in (("mn01", 100), ("mn02", 250)):
        (run / "probes" / node).mkdir(parents=True)
        lines = "".join(
            f"{i},{T0 + i * 2 * MS},{T0 + (i * 2 + 3) * MS},10.1.0.10,1\n" for i in range(rows)
        )
        (run / "probes" / node / "down.csv").write_text(
            "seq,t_send_ns,t_recv_ns,src,sport\n" + lines
        )

    watching = server.start(run, focus="mn02")
    threading.Thread(target=watching.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = watching.url
        default = Stream(url)  # the run is found in the background: its first view, then
        view = default.wait_for(lambda v: v["mn"]["node"] == "mn02")
        plan = json.loads(_get(url + "api/plan"))
        assert plan["mobile"] == "mn02" and plan["mobiles"] == ["mn01", "mn02", "mn03"]
        assert view["probes"]["down"]["received"] == 250
        assert {m["node"] for m in view["crowd"]} == {"mn01", "mn02", "mn03"}

        other = Stream(url, "mn01")  # another tab, detailing mn01
        view = other.wait_for(lambda v: v["mn"]["node"] == "mn01")
        assert view["probes"]["down"]["received"] == 100  # its own streams
        assert all("mn02" not in (m["from"], m["to"]) for m in view["ladder"])
        assert json.loads(_get(url + "api/plan?node=mn01"))["mobile"] == "mn01"
        replay = json.loads(_get(url + "api/view?node=mn01&at_ms=50"))
        assert replay["mn"]["node"] == "mn01"
        # the first tab still details mn02, in its newest views too
        (run / "events" / "agents.jsonl").open("a").write(
            json.dumps({"t_ns": T0 + 900 * MS, "node": "mn01", "event": "note"}) + "\n"
        )
        latest = len(default.views)
        deadline = time.monotonic() + 5
        while len(default.views) == latest and time.monotonic() < deadline:
            time.sleep(0.02)
        assert default.views[-1]["mn"]["node"] == "mn02"
        assert json.loads(_get(url + "api/plan"))["mobile"] == "mn02"

        for path in ("api/plan?node=ha", "api/stream?node=ha", "api/view?node=ha"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                _get(url + path)
            assert refused.value.code == 404, path
            assert "not a mobile node" in json.loads(refused.value.read())["error"]
    finally:
        watching.shutdown()
        watching.close()


def test_watch_refuses_a_node_that_is_not_a_mobile_node_of_the_run(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``testbed watch RUN --node ha`` used to detail the first mobile node without a word;
    on a run that is there it is refused in one line naming the run's mobile nodes (exit
    2). A run not started yet cannot be checked: the page lists what it may detail."""
    from testbed.cli import main

    with pytest.raises(LookupError):
        server.check_focus(run_dir, "ha")
    assert main(["watch", str(run_dir), "--node", "ha"]) == 2
    err = capsys.readouterr().err
    assert "--node ha: not a mobile node" in err and "(its mobile nodes: mn)" in err
    server.check_focus(run_dir, "mn")  # the run's own mobile node: accepted
    server.check_focus(run_dir.parent, "mn")  # its results directory: the newest run
    server.check_focus(tmp_path / "not-started", "ha")  # nothing to check yet


def test_a_repetition_shares_its_runs_plan_and_scenario(run_dir: Path) -> None:
    """A run with ``repeat`` writes rep-NN/ under the run directory, the plan and scenario
    beside them: watching it (its newest repetition) drew no topology and detailed a node
    named after the scenario's template, not one of its mobile nodes."""
    rep = run_dir / "rep-01"
    (rep / "events").mkdir(parents=True)
    (run_dir / "events" / "mn.jsonl").rename(rep / "events" / "mn.jsonl")
    follower = server.RunFollower(rep)
    assert follower.plan == PLAN and follower.scenario == SCENARIO
    assert follower.mobile == "mn"
    server.check_focus(rep, "mn")
    with pytest.raises(LookupError):
        server.check_focus(rep, "ha")
