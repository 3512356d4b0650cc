"""Declarative topologies: YAML -> typed spec (model) -> resolved plan (load)."""

from testbed.topology.load import load_topology, load_topology_source
from testbed.topology.plan import Impairment, InterfacePlan, NodePlan, TopologyPlan

__all__ = [
    "Impairment",
    "InterfacePlan",
    "NodePlan",
    "TopologyPlan",
    "load_topology",
    "load_topology_source",
]
