"""Scenarios: YAML -> typed model -> a run (lab, services, probes, timeline) -> results."""
