"""summary.json: the one definition of what a run's summary holds.

The runner writes it (:func:`write_summary`, which validates it), and everything that reads a
summary -- expectations, ``labcheck``, ``compare``, the report and its pictures, ``watch`` --
reads it through :func:`read_summary` as a :class:`RunSummary`: typed, validated, every
default filled, so no reader guesses what a key is called or what its absence means.
``testbed schema summary`` prints the JSON schema. A summary may carry more than is named
here (``extra``): tools add their own keys, which :meth:`value_of` reads by name.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


@functools.cache
def _attributes(model: type[BaseModel]) -> dict[str, str]:
    """A model's field names as summary.json spells them (``from``) -> its attributes."""
    return {info.alias or name: name for name, info in model.model_fields.items()}


class SummaryRecord(BaseModel):
    """A record of summary.json: open to keys tools add, fields by their names there."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def value_of(self, name: str) -> Any:
        """What summary.json holds under ``name``: a field by its name there (``from``, not
        ``from_``) or a key a tool added. KeyError when there is neither: for readers that
        take names from their input (metric paths), not for reading a known field."""
        attribute = _attributes(type(self)).get(name)
        if attribute is not None:
            return getattr(self, attribute)
        return (self.model_extra or {})[name]


class Outage(SummaryRecord):
    last_before_ns: int | None = Field(
        None, description="receive time of the last packet sent before the move"
    )
    first_after_ns: int | None = Field(
        None, description="... of the first sent after it (null: none came)"
    )


class TcpStall(SummaryRecord):
    """The TCP connection's longest stretch without progress around a move."""

    from_ns: int | None = Field(None, description="the last sample that showed progress")
    to_ns: int | None = Field(None, description="the next one (null: it never progressed)")
    ms: float | None = None


class CriticalStep(SummaryRecord):
    """One message of a handoff's critical path, at its path's one-way delay."""

    msg: str | None = None
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    t_ms: float | None = Field(None, description="ms from the move to its sending")
    one_way_ms: float | None = None


class Handoff(SummaryRecord):
    """One move of one repetition. The ``kind`` in a field's extra says how an expectation may
    check it: number, text, phases (each a number) or record (for pictures, not a metric)."""

    index: int = Field(
        description="the handoff's number in its repetition, from 0",
        json_schema_extra={"kind": "number"},
    )
    node: str | None = Field(
        None,
        description="the mobile node that moved (index is its own N-th move)",
        json_schema_extra={"kind": "text"},
    )
    probed: bool = Field(
        True,
        description="false: no probe stream served this node (probes.sample), no interruption",
        json_schema_extra={"kind": "record"},
    )
    t_s: float | None = Field(
        None,
        description="s from the repetition's start to the move",
        json_schema_extra={"kind": "number"},
    )
    t_ns: int | None = Field(
        None,
        description="the move on the shared monotonic clock",
        json_schema_extra={"kind": "number"},
    )
    from_: str | None = Field(
        None,
        alias="from",
        description="the network the node left",
        json_schema_extra={"kind": "text"},
    )
    to: str | None = Field(
        None, description="the network it moved to", json_schema_extra={"kind": "text"}
    )
    gap_ms: float = Field(
        0.0, description="time attached nowhere", json_schema_extra={"kind": "number"}
    )
    mode: str | None = Field(
        None,
        description="the MN's mode after the move: home, f, c, mc, dual, none",
        json_schema_extra={"kind": "text"},
    )
    tunnel: str | None = Field(
        None,
        description="the accepted registration's tunnel: ipip or udp (null: none)",
        json_schema_extra={"kind": "text"},
    )
    interruption_ms: float | None = Field(
        None,
        description="the worse direction's outage (null: never recovered)",
        json_schema_extra={"kind": "number"},
    )
    interruption_down_ms: float | None = Field(
        None, description="correspondent -> MN outage", json_schema_extra={"kind": "number"}
    )
    interruption_up_ms: float | None = Field(
        None, description="MN -> correspondent outage", json_schema_extra={"kind": "number"}
    )
    lost_packets: int | None = Field(
        None,
        description="probe packets lost in the handoff, both directions",
        json_schema_extra={"kind": "number"},
    )
    lost_down: int | None = Field(
        None, description="correspondent -> MN packets lost", json_schema_extra={"kind": "number"}
    )
    lost_up: int | None = Field(
        None, description="MN -> correspondent packets lost", json_schema_extra={"kind": "number"}
    )
    phases_ms: dict[str, float] = Field(
        default_factory=dict,
        description="ms from the move to each phase (handoff[N].phases_ms.X)",
        json_schema_extra={"kind": "phases"},
    )
    floor_ms: float | None = Field(
        None,
        description="the least the links allow for the messages this handoff took",
        json_schema_extra={"kind": "number"},
    )
    overhead_ms: float | None = Field(
        None,
        description="interruption_ms - floor_ms: what the agents and timers added",
        json_schema_extra={"kind": "number"},
    )
    critical_path: list[CriticalStep] = Field(
        default_factory=list,
        description="the messages the floor is made of, with their paths' delays",
        json_schema_extra={"kind": "record"},
    )
    outage: dict[str, Outage] = Field(
        default_factory=dict,
        description="per stream, the last packet before the move and the first after",
        json_schema_extra={"kind": "record"},
    )
    tcp_stall: TcpStall | None = Field(
        None,
        description="with probes.tcp: the stall around the move (from_ns, to_ns, ms)",
        json_schema_extra={"kind": "record"},
    )
    cut_short: bool = Field(
        False,
        description="the run was interrupted before this handoff recovered: not judged",
        json_schema_extra={"kind": "number"},
    )
    run: int = Field(
        0, description="the repetition it belongs to", json_schema_extra={"kind": "number"}
    )

    def interruptions(self) -> dict[str, float | None]:
        """Each probe stream's outage by stream name (``interruption_down_ms``,
        ``interruption_up_ms`` and any a tool added), in the summary's order."""
        names = [*_attributes(type(self)), *(self.model_extra or {})]
        prefix, suffix = "interruption_", "_ms"
        return {
            name[len(prefix) : -len(suffix)]: self.value_of(name)
            for name in names
            if name.startswith(prefix) and name.endswith(suffix) and name != "interruption_ms"
        }

    def lost(self, stream: str) -> int | None:
        """Packets of ``stream`` lost in the handoff (``lost_down``, ``lost_up``, or one a
        tool added); None when not recorded."""
        try:
            return self.value_of(f"lost_{stream}")
        except KeyError:
            return None


class StreamSummary(SummaryRecord):
    """One probe stream over the run (``stream.NAME.FIELD``), or over one node's runs."""

    from_: str | None = Field(None, alias="from", description="its sender")
    to: str | None = Field(None, description="its receiver")
    sent: int | None = None
    received: int | None = None
    lost: int | None = None
    interval_ms: float | None = None
    owd_ms: dict[str, float | None] = Field(
        default_factory=dict, description="one-way delay: p50, p95"
    )
    nodes: int | None = Field(None, description="several mobile nodes: the streams pooled")


class TcpSummary(SummaryRecord):
    """With probes.tcp: the connection over the run (``tcp.FIELD``)."""

    connected: bool | None = None
    errors: int | None = None
    bytes: int | None = Field(None, description="bytes delivered in the run")
    max_stall_ms: float | None = None
    bytes_after_last_move: int | None = None


class MovePercentiles(SummaryRecord):
    """One move's interruption over its repetitions (null while one never recovered)."""

    handoff: int
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    interruption_ms: dict[str, float | int | None]


class NodeStats(SummaryRecord):
    """One mobile node over the repetitions (several mobile nodes: ``per_node``)."""

    handoffs: int = 0
    recovered: int = Field(0, description="handoffs whose streams came back")
    unrecovered: int = Field(0, description="probed handoffs whose streams never came back")
    cut_short: int = 0
    unprobed: int = Field(0, description="handoffs no probe stream measured")
    interruption_ms: dict[str, float | int | None] = Field(
        default_factory=dict, description="p50, p95, max, n (null while one never recovered)"
    )
    registration_ms: dict[str, float | int | None] = Field(
        default_factory=dict, description="the move to registration_accepted: p50, p95, max"
    )
    final_mode: str | None = None
    modes: list[str | None] = Field(default_factory=list)
    streams: dict[str, StreamSummary] = Field(default_factory=dict)


class OverNodes(NodeStats):
    """Every mobile node together (``over_nodes``)."""

    nodes: int = Field(0, description="mobile nodes in the scenario")
    moving: int = Field(0, description="mobile nodes that moved")
    nodes_recovered: int = Field(0, description="nodes all of whose probed handoffs recovered")
    node_p50_ms: dict[str, float | int | None] = Field(
        default_factory=dict, description="over the nodes, each node's median interruption"
    )
    node_max_ms: dict[str, float | int | None] = Field(
        default_factory=dict, description="over the nodes, each node's worst interruption"
    )
    concurrent: int = Field(0, description="the most handoffs in progress at one moment")


class Expectation(SummaryRecord):
    name: str
    passed: bool | None
    value: Any = None
    limit: Any = None
    metric: str | None = None
    detail: str | None = None


class BaselineComparison(SummaryRecord):
    """``--baseline``: what the run was compared with and what changed (one line each)."""

    file: str | None = None
    tolerance_pct: float | None = None
    tolerance_ms: float | None = None
    min_samples: int | None = None
    confidence: float | None = None
    method: str | None = None
    compared: int | None = None
    regressions: list[str] = Field(default_factory=list)
    insufficient: list[str] = Field(default_factory=list)
    improvements: list[str] = Field(default_factory=list)


class RunSummary(SummaryRecord):
    """summary.json of a run (its repetitions' handoffs together) or of a repetition."""

    scenario: str
    passed: bool | None = None
    error: str | None = None
    verdict: Literal["passed", "failed", "error", "interrupted"] | None = None
    reasons: list[str] = Field(default_factory=list)
    description: str = ""
    file: str | None = Field(None, description="a scenario file that could not be run")
    run_id: str | None = None
    started: str | None = None
    duration_s: float | None = None
    topology: str | None = None
    repeat: int = 1
    runs: int = 0
    mobile: str | None = Field(None, description="the node that moves (the probes' mobile end)")
    mobiles: list[str] = Field(
        default_factory=list, description="several mobile nodes: all of them (else empty)"
    )
    per_node: dict[str, NodeStats] | None = Field(
        None, description="several mobile nodes: each one's handoffs over the repetitions"
    )
    over_nodes: OverNodes | None = Field(None, description="several mobile nodes: all together")
    handoffs: list[Handoff] = Field(default_factory=list)
    # per move since the percentiles stopped being pooled; one mapping in older summaries
    percentiles: list[MovePercentiles] | dict[str, Any] | None = None
    streams: dict[str, StreamSummary] = Field(default_factory=dict)
    loss_before_first_move: int | None = None
    final_mode: str | None = None
    tcp: TcpSummary | None = None
    move_times_ns: list[int] = Field(default_factory=list)
    expectations: list[Expectation] = Field(default_factory=list)
    signalling_nodes: list[str] = Field(default_factory=list)
    nodes: list[str] = Field(default_factory=list)
    events: str = "events.jsonl"
    data_paths: dict[str, str] | None = None
    baseline: BaselineComparison | None = None
    rebuilt: bool = False

    @property
    def mobile_node(self) -> str:
        """The node that moves: as recorded, or in a summary from before it was, the first
        signalling node, else the down stream's receiver or the up stream's sender, else
        ``mn`` (what readers of those summaries took)."""
        if self.mobile:
            return self.mobile
        if self.signalling_nodes:
            return self.signalling_nodes[0]
        down, up = self.streams.get("down"), self.streams.get("up")
        return (down and down.to) or (up and up.from_) or "mn"


def handoff_fields() -> dict[str, tuple[str, str]]:
    """``handoff[N].FIELD`` -> (kind, meaning), from :class:`Handoff`."""
    out = {}
    for name, info in Handoff.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        out[info.alias or name] = (str(extra.get("kind", "record")), info.description or "")
    return out


def write_summary(path: Path, summary: RunSummary | Mapping[str, Any]) -> RunSummary:
    """Validate (a runner bug raises here, not in a reader) and write atomically what was
    given, no default added (a reader sees the old file or the new); returns the model."""
    model = summary if isinstance(summary, RunSummary) else RunSummary.model_validate(summary)
    data = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    return model


class SummaryError(ValueError):
    """A summary.json that cannot be read or is not a summary (one line, with the file)."""


def read_summary(path: Path | str) -> RunSummary:
    """A summary.json, validated, with every field present (defaults filled)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SummaryError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise SummaryError(f"{path}: not JSON: {exc}") from None
    try:
        return RunSummary.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SummaryError(f"{path}: not a run summary: {where}: {first['msg']}") from None
