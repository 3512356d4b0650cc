"""The scenario file format as a typed model (pydantic v2).

A scenario names a topology (with overrides), what runs where, the probe streams, a
timeline of steps and the expectations that decide pass or fail.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from testbed.scenario import catalogue
from testbed.topology.model import (
    ImpairmentSpec,
    LinkImpairmentSpec,
    Milliseconds,
    Name,
    Strict,
)


class TopologyRef(Strict):
    file: str = Field(description="topology file, relative to the scenario file")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="deep-merged into the topology, e.g. link delays"
    )


class ServiceSpec(Strict):
    """Something that runs on a node for the whole run."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,23}$")] | None = None
    node: Name
    kind: Literal["dhcp-client", "command", "agent", "vpn"]
    iface: str = "eth0"
    argv: list[str] | None = Field(None, description="for kind command")
    agent: Literal["ha", "fa", "mn", "proxy"] | None = Field(None, description="for kind agent")
    config: dict[str, Any] | None = Field(
        None, description="agent configuration, or for vpn: role gateway|client, psk, ..."
    )

    @model_validator(mode="after")
    def _complete(self) -> ServiceSpec:
        if self.kind == "command" and not self.argv:
            raise ValueError("a command service needs argv")
        if self.kind == "agent" and self.agent is None:
            raise ValueError("an agent service needs agent: ha, fa, mn or proxy")
        if self.kind == "vpn" and (self.config or {}).get("role") not in ("gateway", "client"):
            raise ValueError("a vpn service needs config.role: gateway or client")
        return self

    @property
    def label(self) -> str:
        return self.name or f"{self.kind}-{self.agent or self.node}"


class CrowdSpec(Strict):
    """Mobile nodes by the dozen: an MN agent service (labelled with the node's name) on
    each node of ``nodes``, from one configuration. Each node's ``home_address`` is its
    static address; its SPI ``spi`` + k (k-th node, from 0); its key 16 bytes of
    HMAC-SHA256(``key_seed``, node name): generated, deterministic, one security association
    per node. Every agent service in ``serve`` (a home agent, the MIP proxy) gets each
    node's association appended to its ``mobile_nodes``."""

    nodes: Name | list[Name] = Field(description="a group of the topology, or node names")
    agent: dict[str, Any] = Field(
        description="the MN agent's configuration, without home_address, spi and key "
        "(home_network defaults to the subnet of the node's first link)"
    )
    serve: list[str] = Field(
        default_factory=lambda: ["ha"], description="agent services given every association"
    )
    spi: int = Field(1000, ge=256, le=0xFFFFFFFF - 1000)
    key_seed: str = Field("mip-testbed", min_length=1)
    algorithm: Literal["hmac-md5", "keyed-md5"] = "hmac-md5"
    vpn: dict[str, Any] | None = Field(
        None,
        description="a VPN client (kind vpn) for each node too, labelled NODE-vpn, from this "
        "configuration (binding home: the node's home address filled in); the agent's vpn "
        "section, if any, names it as its service",
    )


class ProbeSpec(Strict):
    """Sequence-numbered, timestamped UDP streams between a correspondent and the MN."""

    correspondent: Name = "cn"
    mobile: Name | list[Name] = Field(
        "mn",
        description="the mobile node, or several: a group of the topology (nodes: mn: "
        "{count: N}) or a list; each gets its own streams (port + 2k for the k-th)",
    )
    sample: int | None = Field(
        None, ge=1, description="probe only this many of the mobile nodes, evenly spread"
    )
    address: ipaddress.IPv4Address | None = Field(
        None, description="the MN's home address (default: its static address; one MN only)"
    )
    interval: Milliseconds = Field(2.0, gt=0, description="time between packets")
    port: int = Field(9000, ge=1024, le=65535)
    size: int = Field(64, ge=16, le=1400)
    directions: Literal["both", "down", "up"] = "both"
    icmp: bool = Field(False, description="also ping the home address from the correspondent")
    tcp: bool = Field(
        False, description="also keep one TCP connection MN (home address) -> correspondent"
    )


class MoveAction(Strict):
    """Move one node, or several (a group of the topology or a list) by a pattern:
    ``together`` one right after the other, as fast as the lab can; ``staggered`` the k-th
    ``every`` x k after the first; ``random`` each at a time drawn uniformly in ``within``,
    from ``seed``. The step ends when the last node has moved."""

    node: Name | list[Name]
    to: Name | None = Field(description="network to attach to (null: stay detached)")
    gap: Milliseconds = Field(0.0, description="time attached nowhere")
    iface: str | None = None
    pattern: Literal["together", "staggered", "random"] = "together"
    every: Milliseconds = Field(0.0, ge=0, description="staggered: between one node and the next")
    within: Milliseconds = Field(0.0, ge=0, description="random: the moves fall in this time")
    seed: int = Field(0, description="random: the seed of the draw (same seed, same times)")

    @model_validator(mode="after")
    def _pattern(self) -> MoveAction:
        if self.pattern == "staggered" and not self.every:
            raise ValueError("a staggered move needs every: the time between two nodes")
        if self.pattern == "random" and not self.within:
            raise ValueError("a random move needs within: the time the moves fall in")
        return self


class LinkAction(Strict):
    node: Name
    state: Literal["up", "down", "flap"]
    duration: Milliseconds = Field(100.0, description="for flap: how long it stays down")
    iface: str | None = None


class ImpairAction(LinkImpairmentSpec):
    node: Name
    iface: str | None = None


class NatAction(Strict):
    node: Name
    action: Literal["flush", "rebind"] = Field(
        description="flush: forget all mappings; rebind: also move to new external ports"
    )


class ProcessAction(Strict):
    service: str
    action: Literal["stop", "start", "kill", "restart"]


class WaitAction(Strict):
    """Wait for an event that came after the previous step began: what a move causes can be
    over before the wait starts."""

    # before ``event``: its check reads this
    custom: bool = Field(
        False,
        description="an event of the scenario's own (a command service writes it into the "
        "run's events), not one of the catalogue's",
    )
    event: str = Field(description="an event name (testbed schema events lists them)")
    node: Name | list[Name] | None = Field(
        None, description="the node, or a group or list of nodes: every one of them"
    )
    timeout: Milliseconds = 5000.0
    match: dict[str, Any] = Field(default_factory=dict, description="fields the event must have")
    since_step: int | None = Field(
        None,
        ge=0,
        description="count events from the start of this earlier timeline step (default: "
        "the previous one): groups moved one step after another to different networks, "
        "then waited for together, may be done before the last of those moves",
    )

    @field_validator("event")
    @classmethod
    def _known_event(cls, value: str, info: ValidationInfo) -> str:
        problem = None if info.data.get("custom") else catalogue.unknown_event(value)
        if problem:
            raise ValueError(problem)
        return value


class StepSpec(Strict):
    """One timeline step: when (at / after / default: right after the previous), and one action."""

    at: Milliseconds | None = Field(None, description="time since the timeline started")
    after: Milliseconds | None = Field(None, description="time since the previous step ended")
    move: MoveAction | None = None
    link: LinkAction | None = None
    impair: ImpairAction | None = None
    nat: NatAction | None = None
    process: ProcessAction | None = None
    wait: WaitAction | None = None
    pause: Literal[True] | str | None = Field(None, description="open the interactive shell")
    sleep: Milliseconds | None = None
    note: str | None = Field(None, description="free text, recorded as an event")

    ACTIONS: ClassVar[tuple[str, ...]] = (
        "move",
        "link",
        "impair",
        "nat",
        "process",
        "wait",
        "pause",
        "sleep",
        "note",
    )

    @model_validator(mode="after")
    def _one_action(self) -> StepSpec:
        given = [a for a in self.ACTIONS if getattr(self, a) is not None]
        if len(given) != 1:
            raise ValueError(
                "each step needs exactly one action of: "
                + ", ".join(self.ACTIONS)
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.at is not None and self.after is not None:
            raise ValueError("give either at or after, not both")
        return self

    @property
    def action(self) -> str:
        return next(a for a in self.ACTIONS if getattr(self, a) is not None)


EXPECTATION_METRIC = re.compile(
    r"^((node\[[a-z][a-z0-9_]*\]\.)?handoff\[(\d+|\*)\]\.[a-z_]+(\.[a-z_0-9]+)?"
    r"|over_nodes\.[a-z_]+(\.[a-z_0-9]+)?|per_node\.[a-z][a-z0-9_]*\.[a-z_]+(\.[a-z_0-9]+)?"
    r"|interruption_ms\.(p50|p95|p99|max)"
    r"|loss_before_first_move|final_mode|handoffs|stream\.(down|up)\.(received|lost|owd_p95_ms)"
    r"|tcp\.(errors|bytes|max_stall_ms|bytes_after_last_move))$"
)
TEXT_METRICS = ("final_mode",)
TEXT_SUFFIXES = (".final_mode",)  # per_node.NODE.final_mode


def metric_kind(metric: str) -> str:
    """``number`` or ``text``, for a metric the pattern accepts; raises ValueError for a
    handoff field or phase that no handoff has."""
    match = re.match(
        r"^(?:node\[[a-z][a-z0-9_]*\]\.)?handoff\[(?:\d+|\*)\]\.([a-z_]+)(?:\.([a-z_0-9]+))?$",
        metric,
    )
    if not match:
        text = metric in TEXT_METRICS or metric.endswith(TEXT_SUFFIXES)
        return "text" if text else "number"
    name, sub = match.groups()
    if name not in catalogue.HANDOFF_FIELDS:
        hint = catalogue.suggest(name, catalogue.HANDOFF_FIELDS)
        fields = ", ".join(catalogue.HANDOFF_FIELDS)
        raise ValueError(f"a handoff has no field {name!r}{hint} (fields: {fields})")
    kind = catalogue.HANDOFF_FIELDS[name][0]
    if kind == "record":
        raise ValueError(f"handoff field {name} is a record for pictures, not a metric")
    if kind == "phases":
        if sub is None:
            raise ValueError(f"name a phase: {metric}.X (phases: {', '.join(catalogue.PHASES)})")
        problem = catalogue.unknown_phase(sub)
        if problem:
            raise ValueError(problem)
        return "number"
    if sub is not None and kind == "number" and sub in catalogue.PERCENTILE_STATS:
        return "number"  # over the repetitions of that move
    if sub is not None:
        stats = ", ".join(catalogue.PERCENTILE_STATS)
        raise ValueError(
            f"handoff field {name} has no parts ({sub!r})"
            + (f"; over its repetitions: {stats}" if kind == "number" else "")
        )
    return kind


class ExpectSpec(Strict):
    """A check on a metric. ``handoff[*]`` applies to every handoff."""

    metric: str = Field(
        description="handoff[N].interruption_ms, handoff[*].mode, handoff[0].phases_ms.X, "
        "handoff[N].interruption_ms.p95 (over that move's repetitions), interruption_ms.p95 "
        "(each move's), loss_before_first_move, final_mode, handoffs, stream.down.lost; "
        "with several mobile nodes handoff[N] is each node's N-th (one value per node), "
        "node[mn03].handoff[N]... one node's, handoff[N].F.p95 over nodes and repetitions, "
        "over_nodes.interruption_ms.p95, over_nodes.unrecovered, per_node.mn03.recovered"
    )
    below: float | None = None
    at_most: float | None = None
    above: float | None = None
    at_least: float | None = None
    equals: float | str | None = None
    is_null: bool | None = Field(None, description="true: the value must be null")
    name: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> ExpectSpec:
        if not EXPECTATION_METRIC.match(self.metric):
            raise ValueError(f"unknown metric {self.metric!r}")
        checks = [
            c
            for c in ("below", "at_most", "above", "at_least", "equals", "is_null")
            if getattr(self, c) is not None
        ]
        if len(checks) != 1:
            raise ValueError("give exactly one of below, at_most, above, at_least, equals, is_null")
        kind = metric_kind(self.metric)
        check, limit = self.check
        if kind == "text" and check in ("below", "at_most", "above", "at_least"):
            raise ValueError(f"{self.metric} is text, not a number: check it with equals")
        if check == "equals" and kind == "text" and not isinstance(limit, str):
            raise ValueError(f"{self.metric} is text: equals needs text, e.g. equals: f")
        if check == "equals" and kind == "number" and isinstance(limit, str):
            raise ValueError(f"{self.metric} is a number: equals needs a number, not {limit!r}")
        return self

    @property
    def check(self) -> tuple[str, Any]:
        for key in ("below", "at_most", "above", "at_least", "equals", "is_null"):
            value = getattr(self, key)
            if value is not None:
                return key, value
        raise AssertionError("validated")


class ScenarioSpec(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$")]
    description: str = ""
    topology: TopologyRef | str
    services: list[ServiceSpec] = Field(default_factory=list)
    crowds: list[CrowdSpec] = Field(
        default_factory=list,
        description="many mobile nodes: one MN agent per node of a group, each with its own "
        "MN-HA security association, and every association in the serving agents' configs",
    )
    probes: ProbeSpec | None = Field(default_factory=ProbeSpec)
    settle: Milliseconds = Field(1000.0, description="probes run this long before the timeline")
    timeline: list[StepSpec] = Field(default_factory=list)
    tail: Milliseconds = Field(2000.0, description="probes keep running this long after it")
    expect: list[ExpectSpec] = Field(default_factory=list)
    repeat: int = Field(1, ge=1, le=1000)
    pcap: Literal["all", "none"] | list[Name] = "all"
    mobility: Literal["none", "mip"] = Field(
        "none", description="whether a Mobile IP agent serves the MN (mode none without)"
    )

    @property
    def topology_ref(self) -> TopologyRef:
        return TopologyRef(file=self.topology) if isinstance(self.topology, str) else self.topology


IMPAIR_FIELDS = tuple(ImpairmentSpec.model_fields)
