"""Many mobile nodes in one scenario (issue 19): a scenario's ``crowds`` as services, and which
nodes are the mobile ones.

A crowd is one MN agent configuration for every node of a group of the topology (``nodes:
mn: {count: 12}`` makes mn01 ... mn12). Each node gets its own MN-HA security association,
generated and deterministic: SPI ``spi + k`` for the k-th node, key the first 16 bytes of
HMAC-SHA256(key_seed, node name). The agents that serve the crowd (a home agent, the MIP
proxy: ``serve``) get every node's association appended to their ``mobile_nodes``. The MN
services are labelled with the node's name, so their events files, logs, configurations and
state files are apart (``events/mn03.jsonl``). With ``vpn`` each node gets its own VPN
client too (``mn03-vpn``, a charon of its own), which its agent's ``vpn`` section uses.

Pure functions of the scenario and the plan; the loader calls :func:`expand` before it
checks references and agent configurations, so a crowd's errors are the scenario's errors.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from mipbase.specfile import PathKey, SpecError, SpecSource
from testbed.scenario.model import CrowdSpec, ScenarioSpec, ServiceSpec
from testbed.topology.plan import TopologyPlan


def sa_key(seed: str, node: str) -> str:
    """The MN-HA key of ``node`` (hex, 16 bytes): the same seed and name, the same key."""
    return hmac.new(seed.encode(), node.encode(), hashlib.sha256).digest()[:16].hex()


def nodes_of(plan: TopologyPlan, names: str | list[str]) -> list[str]:
    """A node, a group (its nodes) or a list of either, as node names in order, once each."""
    out: list[str] = []
    for name in [names] if isinstance(names, str) else names:
        for node in plan.members(name):
            if node not in out:
                out.append(node)
    return out


def known(plan: TopologyPlan, names: str | list[str]) -> str | None:
    """The first name that is neither a node nor a group of the plan, else None."""
    for name in [names] if isinstance(names, str) else names:
        if name not in plan.nodes and name not in plan.groups:
            return name
    return None


def sample(nodes: list[str], count: int | None) -> list[str]:
    """``count`` of ``nodes`` spread evenly (the first and the last among them), all of them
    without a count or when there are no more."""
    if count is None or count >= len(nodes):
        return list(nodes)
    if count == 1:
        return [nodes[0]]
    picks = sorted({round(i * (len(nodes) - 1) / (count - 1)) for i in range(count)})
    return [nodes[i] for i in picks]


@dataclass
class Expanded:
    spec: ScenarioSpec
    # generated service index -> where its configuration was written (the crowd's agent)
    origins: dict[int, PathKey] = field(default_factory=dict)


def expand(spec: ScenarioSpec, plan: TopologyPlan, source: SpecSource | None = None) -> Expanded:
    """The scenario with every crowd as MN services and the serving agents' associations
    filled in. Raises SpecError (at the crowd's lines) for nodes that are not there, a node
    without a static address, a serving service that is not an HA or proxy agent."""
    if not spec.crowds:
        return Expanded(spec)

    def err(path: PathKey, message: str) -> SpecError:
        if source is None:
            return SpecError("scenario", None, ".".join(map(str, path)), message)
        return source.error(path, message)

    services = [s.model_copy(deep=True) for s in spec.services]
    labels = {s.label for s in services}
    origins: dict[int, PathKey] = {}
    for c, crowd in enumerate(spec.crowds):
        where: PathKey = ("crowds", c)
        missing = known(plan, crowd.nodes)
        if missing is not None:
            raise err((*where, "nodes"), f"unknown node or group {missing!r}")
        served = []
        for s, label in enumerate(crowd.serve):
            target = next((x for x in services if x.label == label), None)
            if target is None or target.kind != "agent" or target.agent not in ("ha", "proxy"):
                raise err((*where, "serve", s), f"no ha or proxy agent service {label!r}")
            served.append(target)
        for k, node in enumerate(nodes_of(plan, crowd.nodes)):
            if node in labels:
                raise err((*where, "nodes"), f"a service named {node!r} exists already")
            entry = _association(crowd, node, k)
            config = _mn_config(plan, crowd, node, entry, err, where)
            if crowd.vpn is not None:  # its own VPN client, started before the agent
                label = f"{node}-vpn"
                if label in labels:
                    raise err((*where, "vpn"), f"a service named {label!r} exists already")
                vpn = dict(crowd.vpn)
                vpn.setdefault("id", f"{node}@vpn.test")  # its own IKE identity
                if vpn.get("binding") == "home":
                    vpn.setdefault("home_address", config["home_address"])
                services.append(ServiceSpec(name=label, node=node, kind="vpn", config=vpn))
                labels.add(label)
                if isinstance(config.get("vpn"), dict):
                    config["vpn"] = {**config["vpn"], "service": label}
            for target in served:
                target.config = dict(target.config or {})
                target.config["mobile_nodes"] = [*target.config.get("mobile_nodes", []), entry]
            origins[len(services)] = (*where, "agent")
            services.append(
                ServiceSpec(name=node, node=node, kind="agent", agent="mn", config=config)
            )
            labels.add(node)
    return Expanded(spec.model_copy(update={"services": services}), origins)


def _association(crowd: CrowdSpec, node: str, k: int) -> dict[str, Any]:
    return {
        "spi": crowd.spi + k,
        "key": sa_key(crowd.key_seed, node),
        "algorithm": crowd.algorithm,
    }


def _mn_config(
    plan: TopologyPlan, crowd: CrowdSpec, node: str, sa: dict[str, Any], err: Any, where: PathKey
) -> dict[str, Any]:
    iface = next((i for i in plan.nodes[node].interfaces if i.address is not None), None)
    if iface is None or iface.address is None:
        raise err((*where, "nodes"), f"{node} has no static address to be its home address")
    config = dict(crowd.agent)
    config.setdefault("home_network", str(iface.address.network))
    config.update(home_address=str(iface.address.ip), **sa)
    sa["home_address"] = str(iface.address.ip)
    return config


def mobiles(spec: ScenarioSpec, plan: TopologyPlan) -> list[str]:
    """The mobile nodes of a scenario, in order: its crowds', the probed ones, every node a
    move step moves."""
    out: list[str] = []

    def add(names: str | list[str]) -> None:
        for node in nodes_of(plan, names):
            if node not in out and node in plan.nodes:
                out.append(node)

    for crowd in spec.crowds:
        add(crowd.nodes)
    if spec.probes is not None:
        add(spec.probes.mobile)
    for step in spec.timeline:
        if step.move is not None:
            add(step.move.node)
    return out
