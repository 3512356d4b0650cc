"""``testbed watch``: a local web page that follows a run live, or replays one.

A standard-library HTTP server on 127.0.0.1 (threads: one per connection, one that follows
the run's files). The page (``static/index.html``, self-contained: no build step, nothing
fetched from the internet) gets the topology once (``/api/plan``) and then every change as a
server-sent event (``/api/stream``: EventSource, pushed when the run's files change, no
polling by the page); its time slider asks for the view at a moment (``/api/view?at_ms=``).
With several mobile nodes each page details one (``?node=`` on all three; default: the
first, or ``--node``): every page its own, the probe streams read for the nodes shown.

The follower reads what the run writes: the per-process event files as they grow
(``mipbase.events.Tail``: each complete new event once), the merged log once the run is
over, the agents' state files (rewritten every second), the probe records as they are
flushed, ``summary.json`` at the end. Given a scenario's results directory, it follows the
run going on there (or waits for the next one) and moves on to a newer run when one starts.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from mipbase import events as eventlog
from testbed import inspect
from testbed.summary import RunSummary, SummaryError, read_summary
from testbed.watch import model

STATIC = Path(__file__).with_name("static")
POLL_S = 0.05  # how often the follower looks at the files
MIN_PUSH_S = 0.1  # views pushed at most this often (probe records alone change every 0.1 s)
LIVE_REFRESH_S = 0.5  # a live view is rebuilt at least this often (outages going on)
KEEPALIVE_S = 15.0


class ProbeFile:
    """A probe's CSV (``seq,t_send_ns,t_recv_ns,...``) read as it grows: complete lines only."""

    def __init__(self, path: Path, stream: model.ProbeStream) -> None:
        self.path = path
        self.stream = stream
        self.offset = 0

    def poll(self) -> bool:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return False
        complete = chunk[: chunk.rfind(b"\n") + 1]
        if not complete:
            return False
        self.offset += len(complete)
        rows = []
        for line in complete.decode(errors="replace").splitlines():
            parts = line.split(",")
            try:
                rows.append((int(parts[1]), int(parts[2])))
            except (IndexError, ValueError):
                continue  # the header, a torn line
        self.stream.add(rows)
        return bool(rows)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _run_file(run_dir: Path, name: str) -> Path:
    """A file of the run: a repetition (``rep-NN``) shares its run's plan and scenario."""
    if run_dir.name.startswith("rep-") and not (run_dir / name).exists():
        return run_dir.parent / name
    return run_dir / name


class RunFollower:
    """One run directory's files, read incrementally into a :class:`model.RunFiles`."""

    def __init__(self, run_dir: Path, focus: str | None = None) -> None:
        self.run_dir = run_dir
        self.focus = focus  # several mobile nodes: the one a page details unless it asks
        self.lock = threading.Lock()
        self.tail = eventlog.Tail(run_dir / eventlog.PER_PROCESS)
        self.events: list[dict[str, Any]] = []
        self.merged = False
        self.state_mtimes: dict[Path, float] = {}
        self.states: dict[str, dict[str, Any]] = {}
        # each detailed node's own probe streams (a crowd's are under probes/NODE/), read
        # for the nodes some page details: ``watched``, the default always among them
        self.probes: dict[str, dict[str, model.ProbeStream]] = {}
        self.probe_files: dict[tuple[str, str], ProbeFile] = {}
        self.watched: dict[str, int] = {}  # node asked for -> pages detailing it
        self.summary: RunSummary | None = None
        self.plan: dict[str, Any] = _read_json(_run_file(run_dir, "plan.json")) or {}
        self.scenario: dict[str, Any] | None = _read_json(_run_file(run_dir, "scenario.json"))
        self.service_nodes: dict[str, str] = {}
        self.mobile = ""  # the default detailed node, once the files say which
        self.files = self._files()
        self.mobile, _ = model.mobile_of(self.files, focus)
        self.geometries: dict[str, dict[str, Any]] = {}

    def _files(self, node: str | None = None) -> model.RunFiles:
        return model.RunFiles(
            plan=self.plan,
            events=self.events,
            states=self.states,
            probes=self.probes.get(node or self.mobile, {}),
            summary=self.summary,
            scenario=self.scenario,
            service_nodes=self.service_nodes,
        )

    def node(self, asked: str | None) -> str:
        """The node a page asking for ``asked`` details: it, if one of the run's mobile
        nodes, else the default (the first, or the one ``--node`` named)."""
        if asked and asked in model.mobiles_of(self.files):
            return asked
        return self.mobile

    def watch_node(self, asked: str, pages: int) -> None:
        """``pages`` more (or fewer) pages detail ``asked``: the probe streams of the node
        it stands for are read while a page shows them."""
        with self.lock:
            left = self.watched.get(asked, 0) + pages
            if left > 0:
                self.watched[asked] = left
            else:
                self.watched.pop(asked, None)

    def poll(self) -> bool:
        """Read what is new; True when anything changed."""
        changed = False
        with self.lock:
            if not self.plan:
                self.plan = _read_json(_run_file(self.run_dir, "plan.json")) or {}
                if self.plan:
                    self.mobile, _ = model.mobile_of(self._files(), self.focus)
                    self.geometries.clear()
                    changed = True
            if self.scenario is None:
                self.scenario = _read_json(_run_file(self.run_dir, "scenario.json"))
                if self.scenario is not None and self.plan:  # it names the crowd
                    self.mobile, _ = model.mobile_of(self._files(), self.focus)
                    self.geometries.clear()
                    changed = True
            summary_path = self.run_dir / "summary.json"
            if self.summary is None and summary_path.exists():
                with contextlib.suppress(SummaryError):  # not a summary (yet): read it again
                    self.summary = read_summary(summary_path)
                changed = True
            if not self.merged and self.summary is not None:
                # the run is over: its merged log is the one record (late writers included)
                merged = eventlog.read_run(self.run_dir)
                if merged:
                    self.events[:] = merged
                    self.merged = True
                    changed = True
            if not self.merged:
                fresh = self.tail.poll()
                for event in fresh:
                    if self.events and event["t_ns"] < self.events[-1]["t_ns"]:
                        bisect.insort(self.events, event, key=lambda e: e["t_ns"])
                    else:
                        self.events.append(event)
                    if event.get("event") == "service_started" and event.get("service"):
                        self.service_nodes[str(event["service"])] = str(
                            event.get("target", event["service"])
                        )
                changed = changed or bool(fresh)
            for path in sorted((self.run_dir / "state").glob("*.json")):
                try:
                    mtime = path.stat().st_mtime
                except OSError:
                    continue
                if self.state_mtimes.get(path) == mtime:
                    continue
                data = _read_json(path)
                if isinstance(data, dict):
                    self.state_mtimes[path] = mtime
                    self.states[path.stem] = data
                    changed = True
            for node in {self.mobile, *(self.node(asked) for asked in self.watched)}:
                changed = self._poll_probes(node) or changed
            self.files = self._files()
        return changed

    def _poll_probes(self, node: str) -> bool:
        changed = False
        for name in ("down", "up"):
            if (node, name) not in self.probe_files:
                probes = self.run_dir / "probes"
                if (probes / node).is_dir():  # a crowd: each node's own
                    probes = probes / node
                path = probes / f"{name}.csv"
                if not path.exists():
                    continue
                stream = self.probes.setdefault(node, {}).setdefault(name, model.ProbeStream(name))
                sent = _read_json(probes / f"{name}.sent.json") or {}
                stream.interval_ns = int(self._interval_ms(sent) * 1e6)
                self.probe_files[(node, name)] = ProbeFile(path, stream)
            changed = self.probe_files[(node, name)].poll() or changed
        return changed

    def geometry(self, node: str) -> dict[str, Any]:
        """The page's geometry detailing ``node``: several mobile nodes all off the columns
        (one column each would be a hundred)."""
        if node not in self.geometries:
            crowd = [m for m in model.mobiles_of(self._files()) if m != node]
            self.geometries[node] = model.layout(self.plan, node, crowd if crowd else ())
        return self.geometries[node]

    def _interval_ms(self, sent: dict[str, Any]) -> float:
        if sent.get("interval_ms"):
            return float(sent["interval_ms"])
        spec = (self.scenario or {}).get("spec") or {}
        text = str((spec.get("probes") or {}).get("interval", "2ms"))
        try:
            return float(text.removesuffix("ms")) if text.endswith("ms") else float(text) * 1e3
        except ValueError:
            return 2.0

    @property
    def finished(self) -> bool:
        return self.summary is not None

    def view(self, at_ns: int | None = None, node: str | None = None) -> dict[str, Any]:
        """The page's state detailing ``node`` (default: the run's first mobile node, or
        the one ``--node`` named)."""
        started = time.monotonic_ns()
        node = self.node(node)
        if node not in self.probes and node != self.mobile:
            with self.lock:  # a replayed view of a node no page follows live
                self._poll_probes(node)
        with self.lock:
            view = model.build_view(
                self._files(node), at_ns=at_ns, now_ns=time.monotonic_ns(), focus=node
            )
            view["paths"] = model.tunnel_paths(self.geometry(node), self.plan, view)
            view["run_dir"] = str(self.run_dir)
            view["built_ns"] = time.monotonic_ns()  # when, on the run's clock
            view["build_ms"] = round((view["built_ns"] - started) / 1e6, 2)
            return view

    def plan_payload(self, node: str | None = None) -> dict[str, Any]:
        node = self.node(node)
        with self.lock:
            spec = (self.scenario or {}).get("spec") or {}
            return {
                "run_dir": str(self.run_dir),
                "scenario": spec.get("name") or self.run_dir.parent.name,
                "description": spec.get("description"),
                "plan": self.plan,
                "geometry": self.geometry(node),
                "mobile": node,
                "mobiles": model.mobiles_of(self.files),
            }


class LabFollower(RunFollower):
    """A lab built by ``testbed up``: its topology, the network its mobile node is attached
    to (the lab's state file, which ``testbed move`` rewrites: each change becomes a move on
    the page) and what agents started by hand write under the lab's directory
    (``--events /run/testbed/LAB/events/NAME.jsonl --state /run/testbed/LAB/state/NAME.json``)."""

    def __init__(self, name: str, mobile: str = "mn") -> None:
        from testbed.lab.state import LabState
        from testbed.results.topology import plan_like
        from testbed.topology import load_topology

        self.lab_name = name
        lab = LabState.load(name)
        plan = plan_like(load_topology(lab.topology, lab.overrides or None))
        super().__init__(lab.dir)
        self.plan = plan
        self.scenario = {"spec": {"name": f"lab {name}", "probes": {"mobile": mobile}}}
        self.files = self._files()
        self.mobile = mobile
        self.geometries = {mobile: model.layout(self.plan, mobile)}
        links = (plan.get("nodes", {}).get(mobile) or {}).get("links") or [None]
        self.attached_to: str | None = links[0]
        self.moves = 0

    def poll(self) -> bool:
        from testbed.lab.state import LabState

        changed = super().poll()
        try:
            attachments = LabState.load(self.lab_name).attachments.get(self.mobile) or {}
        except (LookupError, ValueError, TypeError):
            return changed  # removed (testbed down), or being rewritten
        network = next(iter(attachments.values()), None) if attachments else self.attached_to
        if network == self.attached_to:
            return changed
        now = time.monotonic_ns()
        synthetic = [
            {
                "t_ns": now,
                "node": "runner",
                "event": "move_start",
                "index": self.moves,
                "target": self.mobile,
                "from": self.attached_to,
                "to": network,
            }
        ]
        if network is not None:
            synthetic.append(
                {"t_ns": now, "node": "runner", "event": "link_up", "target": self.mobile,
                 "network": network}
            )  # fmt: skip
        with self.lock:
            for event in synthetic:
                bisect.insort(self.events, event, key=lambda e: e["t_ns"])
            self.files = self._files()
        self.attached_to = network
        self.moves += 1
        return True


class Watch:
    """The run being watched and the latest view, shared by the connections."""

    def __init__(
        self,
        target: Path,
        resolve: Callable[[Path], Path],
        lab: str | None = None,
        focus: str | None = None,
    ) -> None:
        self.target = target
        self.resolve = resolve
        self.lab = lab
        self.focus = focus  # kept for the next run followed
        self.follower: RunFollower | None = None  # until the run is found
        self.cond = threading.Condition()
        self.version = 0
        self.plan_version = 0
        self.waiting = json.dumps({"waiting": str(target)})
        # the latest view for each node some page details ("": the default node's)
        self.payloads: dict[str, str] = {}
        self.pages: dict[str, int] = {}  # node asked for -> pages open asking for it
        self.stopped = threading.Event()
        self.error: str | None = None

    def plan_payload(self, node: str | None = None) -> dict[str, Any]:
        follower = self.follower
        if follower is None:
            return {"waiting": str(self.target), "error": self.error}
        return follower.plan_payload(node)

    def payload(self, asked: str) -> str:
        """The latest view for a page that asked for ``asked`` ("": the default)."""
        return self.payloads.get(asked, self.waiting)

    def open_page(self, asked: str) -> None:
        """A page follows the view detailing ``asked`` (each tab its own node)."""
        with self.cond:
            self.pages[asked] = self.pages.get(asked, 0) + 1
            follower = self.follower
        if follower is not None:
            follower.watch_node(asked, 1)
            if asked not in self.payloads:
                self._publish()

    def close_page(self, asked: str) -> None:
        with self.cond:
            left = self.pages.get(asked, 0) - 1
            if left > 0:
                self.pages[asked] = left
            else:
                self.pages.pop(asked, None)
                self.payloads.pop(asked, None)
            follower = self.follower
        if follower is not None:
            follower.watch_node(asked, -1)

    def _publish(self) -> None:
        follower = self.follower
        assert follower is not None
        with self.cond:
            asked = {"", *self.pages}
        texts = {
            node: json.dumps(follower.view(node=node or None), default=str, separators=(",", ":"))
            for node in asked
        }
        with self.cond:
            self.payloads.update(texts)
            self.version += 1
            self.cond.notify_all()

    def _switch(self, run_dir: Path) -> None:
        follower = RunFollower(run_dir.resolve(), self.focus)
        self._adopt(follower)
        follower.poll()
        self.follower = follower
        with self.cond:
            self.plan_version += 1

    def _adopt(self, follower: RunFollower) -> None:
        """The pages open (some perhaps since before there was a run) follow ``follower``."""
        with self.cond:
            for asked, pages in self.pages.items():
                follower.watch_node(asked, pages)
            self.payloads.clear()  # the last run's views are not this one's

    def _newer_run(self) -> Path | None:
        """A run started in the watched results directory after the one followed."""
        assert self.follower is not None
        if self.lab is not None or not self.target.is_dir() or inspect._is_run_dir(self.target):
            return None
        current = self.follower.run_dir
        if current.name.startswith("rep-"):
            current = current.parent
        runs = {r.resolve() for r in inspect._runs_in(self.target)}  # "latest" is a link
        newer = sorted(r for r in runs if r.name > current.name)
        return inspect.resolve_run_dir(newer[-1]) if newer else None

    def follow(self) -> None:
        try:
            if self.lab is not None:
                lab = LabFollower(self.lab)
                self._adopt(lab)
                lab.poll()
                self.follower = lab
                with self.cond:
                    self.plan_version += 1
            else:
                self._switch(self.resolve(self.target))
        except LookupError as exc:
            self.error = str(exc.args[0] if exc.args else exc)
            with self.cond:
                self.plan_version += 1
            return
        assert self.follower is not None
        self._publish()
        last_build = time.monotonic()
        last_check = 0.0
        dirty = False
        while not self.stopped.is_set():
            changed = self.follower.poll()
            now = time.monotonic()
            if now - last_check > 1.0:
                last_check = now
                newer = self._newer_run()
                if newer is not None and newer.resolve() != self.follower.run_dir:
                    self._switch(newer)
                    changed = True
            live = not self.follower.finished
            if changed:
                dirty = True
            if (dirty and now - last_build >= MIN_PUSH_S) or (
                live and now - last_build > LIVE_REFRESH_S
            ):
                self._publish()
                last_build, dirty = now, False
            self.stopped.wait(POLL_S)


def _quiet_await(target: Path) -> Path:
    """The run to follow: ``target`` if it is one, else the run going on in a scenario's
    results directory, or the next to start there."""
    return inspect.await_run(target)


class Handler(BaseHTTPRequestHandler):
    server_version = "testbed-watch"
    watch: Watch  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the terminal shows the URL, not every request

    def _send(self, body: bytes, kind: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: Any, status: int = 200) -> None:
        self._send(json.dumps(data, default=str).encode(), "application/json", status)

    def _asked(self, query: dict[str, list[str]]) -> str | None:
        """The node a page asks to detail (``?node=``; "" for the default), or None after a
        404 when the run has no such mobile node."""
        asked = (query.get("node") or [""])[0]
        follower = self.watch.follower
        if asked and follower is not None and asked not in model.mobiles_of(follower.files):
            self._json({"error": f"{asked!r} is not a mobile node of this run"}, 404)
            return None
        return asked

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        try:
            if url.path in ("/", "/index.html"):
                body = (STATIC / "index.html").read_bytes()
                self._send(body, "text/html; charset=utf-8")
            elif url.path == "/api/plan":
                if (asked := self._asked(query)) is not None:
                    self._json(self.watch.plan_payload(asked or None))
            elif url.path == "/api/view":
                follower = self.watch.follower
                if follower is None:
                    self._json({"waiting": str(self.watch.target)})
                    return
                if (asked := self._asked(query)) is None:
                    return
                at_ns = None
                if "at_ms" in query:
                    with follower.lock:
                        t0 = follower.events[0]["t_ns"] if follower.events else 0
                    at_ns = t0 + int(float(query["at_ms"][0]) * 1e6)
                self._json(follower.view(at_ns, asked or None))
            elif url.path == "/api/stream":
                if (asked := self._asked(query)) is not None:
                    self._stream(asked)
            else:
                self._send(b"not found\n", "text/plain", 404)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except ValueError as exc:
            self._send(f"bad request: {exc}\n".encode(), "text/plain", 400)

    def _stream(self, asked: str) -> None:
        """Server-sent events: ``plan`` when the run changes, ``view`` on every change; the
        views detail ``asked`` (each page its own node; "" the default)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "keep-alive")
        self.end_headers()
        watch = self.watch
        watch.open_page(asked)
        try:
            seen = -1
            seen_plan = watch.plan_version
            while not watch.stopped.is_set():
                with watch.cond:
                    if watch.version == seen and watch.plan_version == seen_plan:
                        watch.cond.wait(KEEPALIVE_S)
                    version, plan_version = watch.version, watch.plan_version
                    payload = watch.payload(asked)
                if plan_version != seen_plan:
                    seen_plan = plan_version
                    plan = json.dumps(watch.plan_payload(asked or None), default=str)
                    self.wfile.write(f"event: plan\ndata: {plan}\n\n".encode())
                if version != seen:
                    seen = version
                    self.wfile.write(f"event: view\ndata: {payload}\n\n".encode())
                else:
                    self.wfile.write(b": keepalive\n\n")
                self.wfile.flush()
        finally:
            watch.close_page(asked)


class WatchServer(ThreadingHTTPServer):
    """The HTTP server and the run it watches; ``close`` stops both."""

    daemon_threads = True

    def __init__(self, watch: Watch, port: int = 0) -> None:
        handler = type("WatchHandler", (Handler,), {"watch": watch})
        super().__init__(("127.0.0.1", port), handler)
        self.watch = watch
        self.follower = threading.Thread(target=watch.follow, name="watch-follow", daemon=True)
        self.follower.start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def close(self) -> None:
        self.watch.stopped.set()
        with self.watch.cond:
            self.watch.cond.notify_all()  # streams end
        self.server_close()


def start(
    target: Path,
    port: int = 0,
    *,
    resolve: Callable[[Path], Path] | None = None,
    lab: str | None = None,
    focus: str | None = None,
) -> WatchServer:
    """A server for ``target`` on 127.0.0.1, bound, its follower started; the run is looked
    for, or waited for, in the background. Serve with ``serve_forever``. ``focus``: with
    several mobile nodes, the one detailed (default: the first)."""
    return WatchServer(Watch(target, resolve or _quiet_await, lab, focus), port)


def serve(
    target: Path,
    port: int = 0,
    *,
    resolve: Callable[[Path], Path] | None = None,
    announce: Callable[[str], None] = print,
    lab: str | None = None,
    focus: str | None = None,
) -> None:
    """Serve the page for ``target`` until Ctrl-C (the address is printed at once)."""
    server = start(target, port, resolve=resolve, lab=lab, focus=focus)
    announce(f"watching {target} at {server.url} (Ctrl-C to stop)")
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


# --- the command line ---------------------------------------------------------------------


def resolve_target(arg: str, results: str = "results") -> tuple[Path, str | None]:
    """What ``testbed watch`` follows: a run directory, a scenario's results directory (its
    newest run, or the next one), a scenario file or a teaching lab's folder (the results
    directory of the scenario it names), or the name of a lab built by ``testbed up``.
    Returns (the path, the lab's name or None)."""
    from mipbase.specfile import SpecError, load_spec
    from testbed.lab.state import LAB_NAME, STATE_ROOT

    path = Path(arg)
    if not path.exists() and LAB_NAME.match(arg) and (STATE_ROOT / arg / "state.json").is_file():
        return STATE_ROOT / arg, arg
    scenario = None
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        scenario = path
    elif path.is_dir() and (path / "scenario.yaml").is_file() and not inspect._is_run_dir(path):
        scenario = path / "scenario.yaml"
    if scenario is not None:
        try:
            data = load_spec(scenario).data
        except SpecError as exc:
            raise LookupError(str(exc)) from exc
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str) or not name:
            raise LookupError(f"{scenario}: no scenario name")
        return Path(results) / name, None
    if path.suffix in (".yaml", ".yml") or path.is_file():
        raise LookupError(f"{arg}: no such scenario file")
    # a run directory, or a scenario's results directory (perhaps not made yet)
    return path, None


def check_focus(target: Path, node: str) -> None:
    """Refuse ``--node NAME`` when the run to watch is already there and ``NAME`` is not
    one of its mobile nodes (the page would detail another one without saying so). A run
    that has not started yet is checked by the page: it lists the nodes it may detail."""
    try:
        run_dir = inspect.resolve_run_dir(target)
    except (LookupError, OSError, ValueError):
        return
    plan = _read_json(_run_file(run_dir, "plan.json"))
    summary = None
    with contextlib.suppress(SummaryError, OSError):
        summary = read_summary(run_dir / "summary.json")
    files = model.RunFiles(
        plan=plan or {},
        events=[],
        states={},
        probes={},
        summary=summary,
        scenario=_read_json(_run_file(run_dir, "scenario.json")),
        service_nodes={},
    )
    mobiles = model.mobiles_of(files)
    if plan and mobiles and node not in mobiles:
        raise LookupError(
            f"--node {node}: not a mobile node of {run_dir} (its mobile nodes: "
            f"{', '.join(mobiles)})"
        )


def cmd_watch(args: Any) -> int:
    target, lab = resolve_target(args.target, args.results)
    if args.node is not None and lab is None:
        check_focus(target, args.node)
    serve(
        target,
        args.port,
        announce=lambda line: print(line, flush=True),
        lab=lab,
        focus=args.node,
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``watch`` to a ``testbed`` subparsers object."""
    p = subparsers.add_parser(
        "watch",
        help="a live web page of a run (topology, mode, tunnels, signalling, outages)",
        description="Serve a page on 127.0.0.1 that follows a run as it goes (or replays one "
        "that is over, with a time slider): the topology with the mobile node where it is "
        "attached, its mode and care-of address, the bindings and visitors, the tunnels, the "
        "signalling of the current handoff, the probe streams' delay and outages. TARGET: a "
        "run directory, results/SCENARIO (the run going on there, or the next to start), a "
        "scenario file or a lab's folder (its scenario's results), or a lab built by "
        "'testbed up' (its topology and where its mobile node is attached; agents started "
        "by hand with --events/--state under /run/testbed/LAB/).",
    )
    p.add_argument("target", metavar="RUN_DIR|LAB", help="what to watch")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument(
        "--node",
        metavar="NAME",
        help="several mobile nodes (a crowd): the one a page details (default: the first; "
        "each page's 'detail' list, or ?node=NAME in its address, switches that page)",
    )
    p.add_argument(
        "--results", default="results", metavar="DIR", help="results root (default results)"
    )
    p.set_defaults(func=cmd_watch)
