"""summary.json: the one definition of what a run's summary holds.

The runner writes it (:func:`write_summary`, which validates it), and everything that reads a
summary -- expectations, ``labcheck``, ``compare``, the report and its pictures -- reads it
through :func:`read_summary`, which validates it and fills the defaults, so no reader has to
guess what a field may be. ``testbed schema summary`` prints the JSON schema. A summary may
carry more than is named here (``extra``): tools add their own keys.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Outage(_Open):
    last_before_ns: int | None = Field(
        None, description="receive time of the last packet sent before the move"
    )
    first_after_ns: int | None = Field(
        None, description="... of the first sent after it (null: none came)"
    )


class Handoff(_Open):
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
    critical_path: list[dict[str, Any]] = Field(
        default_factory=list,
        description="the messages the floor is made of, with their paths' delays",
        json_schema_extra={"kind": "record"},
    )
    outage: dict[str, Outage] = Field(
        default_factory=dict,
        description="per stream, the last packet before the move and the first after",
        json_schema_extra={"kind": "record"},
    )
    tcp_stall: dict[str, Any] | None = Field(
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


class MovePercentiles(_Open):
    """One move's interruption over its repetitions (null while one never recovered)."""

    handoff: int
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    interruption_ms: dict[str, float | int | None]


class NodeStats(_Open):
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
    streams: dict[str, dict[str, Any]] = Field(default_factory=dict)


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


class Expectation(_Open):
    name: str
    passed: bool | None
    value: Any = None
    limit: Any = None
    metric: str | None = None
    detail: str | None = None


class RunSummary(_Open):
    """summary.json of a run (its repetitions' handoffs together) or of a repetition."""

    scenario: str
    passed: bool | None = None
    error: str | None = None
    verdict: Literal["passed", "failed", "error", "interrupted"] | None = None
    reasons: list[str] = Field(default_factory=list)
    description: str = ""
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
    streams: dict[str, dict[str, Any]] = Field(default_factory=dict)
    loss_before_first_move: int | None = None
    final_mode: str | None = None
    tcp: dict[str, Any] | None = None
    move_times_ns: list[int] = Field(default_factory=list)
    expectations: list[Expectation] = Field(default_factory=list)
    signalling_nodes: list[str] = Field(default_factory=list)
    nodes: list[str] = Field(default_factory=list)
    events: str = "events.jsonl"
    data_paths: dict[str, str] | None = None
    baseline: dict[str, Any] | None = None
    rebuilt: bool = False


def handoff_fields() -> dict[str, tuple[str, str]]:
    """``handoff[N].FIELD`` -> (kind, meaning), from :class:`Handoff`."""
    out = {}
    for name, info in Handoff.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        out[info.alias or name] = (str(extra.get("kind", "record")), info.description or "")
    return out


def normalized(summary: dict[str, Any] | RunSummary) -> dict[str, Any]:
    """The summary as JSON-ready data with every field present, validated (raises pydantic's
    ValidationError)."""
    model = summary if isinstance(summary, RunSummary) else RunSummary.model_validate(summary)
    return model.model_dump(mode="json", by_alias=True)


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Validate (a runner bug raises here, not in a reader) and write atomically, as given:
    a reader sees the old file or the new."""
    RunSummary.model_validate(summary)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=1, default=str))
    os.replace(tmp, path)


class SummaryError(ValueError):
    """A summary.json that cannot be read or is not a summary (one line, with the file)."""


def read_summary(path: Path | str) -> dict[str, Any]:
    """A summary.json, validated, with every field present (defaults filled)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SummaryError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise SummaryError(f"{path}: not JSON: {exc}") from None
    try:
        return normalized(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SummaryError(f"{path}: not a run summary: {where}: {first['msg']}") from None
