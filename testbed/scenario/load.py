"""Scenario file -> validated ScenarioSpec + resolved topology plan, errors with file:line."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from mipbase.specfile import PathKey, SpecError, SpecSource, load_spec
from testbed.scenario import crowd
from testbed.scenario.model import ScenarioSpec
from testbed.topology import load_topology
from testbed.topology.plan import TopologyPlan

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Scenario:
    """A loaded scenario: its spec with any crowds expanded into services
    (``testbed.scenario.crowd``), its resolved topology, and its mobile nodes."""

    spec: ScenarioSpec
    source: SpecSource
    path: Path
    topology_path: Path
    plan: TopologyPlan
    # the mobile nodes (crowds, probed, moved), and those of them the probes serve
    mobiles: list[str] = field(default_factory=list)
    probed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.mobiles:
            self.mobiles = crowd.mobiles(self.spec, self.plan)
        probes = self.spec.probes
        if probes is not None and not self.probed:
            nodes = crowd.nodes_of(self.plan, probes.mobile)
            self.probed = crowd.sample(nodes, probes.sample)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def mobile(self) -> str:
        """The node that moves (its probe end; ``mn`` without probes); with several mobile
        nodes the first probed one."""
        if self.spec.probes is None:
            return self.mobiles[0] if self.many else "mn"
        if isinstance(self.spec.probes.mobile, str) and not self.many:
            return self.spec.probes.mobile
        return self.probed[0] if self.probed else self.mobiles[0]

    @property
    def many(self) -> bool:
        """Several mobile nodes: handoffs, probe records and metrics are kept per node."""
        return len(self.mobiles) > 1 or bool(self.spec.crowds)

    def probe_dir(self, node: str) -> str:
        """Where a mobile node's probe records go, under the run's probes/: itself with
        one mobile node (as always), else a folder per node."""
        return node if self.many else ""

    def probe_port(self, node: str) -> int:
        """The UDP port of a mobile node's streams (TCP: the next one)."""
        assert self.spec.probes is not None
        if not self.many:
            return self.spec.probes.port
        return self.spec.probes.port + 2 * self.probed.index(node)


def resolve_topology_path(scenario_path: Path, ref: str) -> Path:
    """Relative to the scenario file first, then to the project (``topologies/x.yaml``)."""
    candidate = Path(ref)
    if candidate.is_absolute():
        return candidate
    for base in (scenario_path.parent, PROJECT_ROOT, Path.cwd()):
        if (base / candidate).exists():
            return base / candidate
    return scenario_path.parent / candidate


def load_scenario(path: str | Path, overrides: Sequence[str] = ()) -> Scenario:
    """``overrides``: ``PATH=VALUE`` assignments (``testbed run --set``), applied to the
    file's YAML before anything is validated."""
    path = Path(path)
    source = load_spec(path)
    if not isinstance(source.data, dict):
        raise source.error((), "a scenario file must be a mapping (name, topology, timeline...)")
    if isinstance(source.data.get("topology"), str) and any(
        a.startswith("topology.") for a in overrides
    ):  # --set topology.overrides... on a scenario that names its topology by file alone
        source.data["topology"] = {"file": source.data["topology"]}
    for assignment in overrides:
        source.override(assignment)
    try:
        spec = ScenarioSpec.model_validate(source.data)
    except ValidationError as exc:
        raise source.validation_error(exc) from None
    ref = spec.topology_ref
    topo_field: PathKey = ("topology",) if isinstance(spec.topology, str) else ("topology", "file")
    topology_path = resolve_topology_path(path, ref.file)
    if not topology_path.exists():
        raise source.error(topo_field, f"topology file not found: {ref.file}")
    try:
        plan = load_topology(topology_path, ref.overrides or None)
    except SpecError as exc:
        if ref.overrides:  # the error may come from the overrides: say so
            exc.message += f" (with the overrides of {path})"
        raise
    expanded = crowd.expand(spec, plan, source)
    spec = expanded.spec
    _check_references(source, spec, plan)
    _check_agents(source, spec, expanded.origins)
    scenario = Scenario(spec, source, path, topology_path, plan)
    _check_mobiles(source, scenario)
    _check_expectations(source, spec, scenario)
    return scenario


def _check_references(source: SpecSource, spec: ScenarioSpec, plan: TopologyPlan) -> None:
    def node(name: str | list[str] | None, where: PathKey) -> None:
        missing = None if name is None else crowd.known(plan, name)
        if missing is not None:
            names = ", ".join([*plan.groups, *plan.nodes])
            raise source.error(where, f"unknown node {missing!r} ({names})")

    def network(name: str | None, where: PathKey) -> None:
        if name is not None and name not in plan.networks:
            raise source.error(where, f"unknown network {name!r} ({', '.join(plan.networks)})")

    labels = set()
    for i, service in enumerate(spec.services):
        node(service.node, ("services", i, "node"))
        if service.node in plan.groups:
            raise source.error(
                ("services", i, "node"), "a service runs on one node (a group's: crowds)"
            )
        if service.label in labels:
            raise source.error(("services", i), f"two services named {service.label!r}")
        labels.add(service.label)
    if spec.probes is not None:
        node(spec.probes.correspondent, ("probes", "correspondent"))
        node(spec.probes.mobile, ("probes", "mobile"))
        if spec.probes.address is None:
            try:
                for mobile in crowd.nodes_of(plan, spec.probes.mobile):
                    plan.address(mobile)
            except KeyError:
                raise source.error(
                    ("probes", "address"),
                    f"{mobile} has no static address: give the home address",
                ) from None
    if isinstance(spec.pcap, list):
        for i, net in enumerate(spec.pcap):
            network(net, ("pcap", i))
    for i, step in enumerate(spec.timeline):
        where: PathKey = ("timeline", i, step.action)
        action = getattr(step, step.action)
        if step.action in ("move", "link", "impair", "nat"):
            node(action.node, (*where, "node"))
        if step.action == "move":
            network(action.to, (*where, "to"))
        if step.action == "process" and action.service not in labels:
            raise source.error((*where, "service"), f"no service {action.service!r}")
        if step.action == "wait":
            node(action.node, (*where, "node"))
            if action.since_step is not None and action.since_step >= i:
                raise source.error(
                    (*where, "since_step"), f"must name an earlier step (this is step {i})"
                )
        if step.action in ("link", "impair", "nat") and action.node in plan.groups:
            raise source.error((*where, "node"), f"{step.action} acts on one node, not a group")
        if step.action == "nat" and not plan.nodes[action.node].nat:
            raise source.error((*where, "node"), f"{action.node} has no NAT rules")


def _check_agents(
    source: SpecSource, spec: ScenarioSpec, origins: dict[int, PathKey] | None = None
) -> None:
    """Each agent's configuration through the agent's own model, errors at the scenario's
    lines: a typo is found now, not as an agent that never says it is ready."""
    from agents.runtime.config import FaFile, HaFile, MnFile, ProxyFile

    models = {"ha": HaFile, "fa": FaFile, "mn": MnFile, "proxy": ProxyFile}
    services = {s.label: s for s in spec.services}
    for i, service in enumerate(spec.services):
        if service.kind != "agent" or service.agent is None:
            continue
        where: PathKey = (origins or {}).get(i) or ("services", i, "config")
        if service.config is None:
            raise source.error(
                ("services", i),
                f"an agent service needs config: the {service.agent} agent's configuration",
            )
        config = dict(service.config)
        vpn = config.get("vpn")
        if isinstance(vpn, dict) and "service" in vpn:
            name = vpn["service"]
            target = services.get(name) if isinstance(name, str) else None
            if target is None or target.kind != "vpn":
                vpns = ", ".join(s.label for s in spec.services if s.kind == "vpn") or "none"
                raise source.error(
                    (*where, "vpn", "service"),
                    f"no vpn service {name!r} in this scenario (vpn services: {vpns})",
                )
            from testbed.vpn.service import agent_vpn_config

            # as the runner resolves it, with a placeholder for the socket it will have
            config["vpn"] = agent_vpn_config(vpn, target.config, "/run/testbed/LAB/vici")
        elif isinstance(vpn, dict) and "vici" not in vpn:
            raise source.error(
                (*where, "vpn"), "needs service: the name of this node's kind: vpn service"
            )
        try:
            models[service.agent].model_validate(config)
        except ValidationError as exc:
            raise source.validation_error(exc, prefix=where) from None


def _check_mobiles(source: SpecSource, scenario: Scenario) -> None:
    """What works with one mobile node only."""
    probes = scenario.spec.probes
    if probes is None or len(scenario.probed) <= 1:
        return
    if probes.address is not None:
        raise source.error(("probes", "address"), "one home address for several mobile nodes")
    if probes.tcp:
        raise source.error(("probes", "tcp"), "the TCP probe serves one mobile node only")
    if probes.port + 2 * len(scenario.probed) > 65535:
        raise source.error(("probes", "port"), "no room for two ports per mobile node above it")


_NODE_METRIC = re.compile(r"^(?:node\[([a-z][a-z0-9_]*)\]|per_node\.([a-z][a-z0-9_]*))\.")


def _check_expectations(
    source: SpecSource, spec: ScenarioSpec, scenario: Scenario | None = None
) -> None:
    """Metrics the scenario's probes cannot produce (the metric names and the kinds of check
    are the model's), and nodes that are not its mobile nodes."""
    probes = spec.probes
    for i, expectation in enumerate(spec.expect):
        metric = expectation.metric
        where: PathKey = ("expect", i, "metric")
        named = _NODE_METRIC.match(metric)
        if named and scenario is not None:
            node = named.group(1) or named.group(2)
            if node not in scenario.mobiles:
                mobiles = ", ".join(scenario.mobiles)
                raise source.error(where, f"{node} is not a mobile node ({mobiles})")
        if metric.startswith("tcp.") and (probes is None or not probes.tcp):
            raise source.error(where, f"{metric} needs the TCP probe: probes: {{tcp: true}}")
        if metric.startswith("stream."):
            direction = metric.split(".")[1]
            if probes is None:
                raise source.error(where, f"{metric} needs probes (probes is null)")
            if probes.directions not in ("both", direction):
                raise source.error(
                    where,
                    f"{metric}: no {direction} stream (probes.directions is {probes.directions})",
                )
