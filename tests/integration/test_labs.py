"""The teaching labs (labs/*/): their text agrees with the software, and they run as they say.

Static checks (no root): every lab is in the index, its scenarios validate, its agent
configuration files are the scenario's, its README's commands name nodes, networks,
interfaces, files and CLI verbs that exist, and its ``expected`` blocks parse. Then every
lab scenario runs for real (root) and must meet both its ``expect:`` list and the README's
``expected`` block.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed import labcheck
from testbed.scenario.load import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
LABS_DIR = ROOT / "labs"
LABS = sorted(p for p in LABS_DIR.iterdir() if p.is_dir() and (p / "README.md").exists())
SCENARIOS = [s for lab in LABS for s in sorted(lab.glob("scenario*.yaml"))]
SECTIONS = ("## The network", "## Questions", "## Expected observations")
AGENT_LOADERS = {"ha": "load_ha", "fa": "load_fa", "mn": "load_mn", "proxy": "load_proxy"}


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.suffix else path.name


def _readme(lab: Path) -> str:
    return (lab / "README.md").read_text()


def _code(text: str) -> str:
    """The README's code: fenced blocks and inline code, with line continuations joined."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    inline = re.findall(r"`([^`\n]+)`", text)
    return "\n".join(blocks + inline).replace("\\\n", " ")


def _links(text: str) -> list[str]:
    """Relative Markdown link targets of the prose (not of code)."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    prose = re.sub(r"`[^`\n]+`", "", prose)
    return [t for t in re.findall(r"\]\(([^)#\s]+)[^)]*\)", prose) if "://" not in t]


def _lab_scenarios(lab: Path) -> list[Scenario]:
    return [load_scenario(path) for path in sorted(lab.glob("scenario*.yaml"))]


def test_every_lab_has_scenarios() -> None:
    assert len(LABS) >= 3, LABS
    for lab in LABS:
        assert list(lab.glob("scenario*.yaml")), f"{lab.name} has no scenario*.yaml"


def test_the_index_lists_every_lab_and_the_coming_ones() -> None:
    index = (LABS_DIR / "README.md").read_text()
    for link in _links(index):
        assert (LABS_DIR / link).exists(), f"labs/README.md: {link} leads nowhere"
    for lab in LABS:
        assert f"({lab.name}/README.md)" in index, f"labs/README.md does not link {lab.name}"
    assert "*coming*" in index  # the rule for planned labs stays, even with none planned
    assert "MOBIKE" in index and "MIP proxy" in index and "dual MIP" in index


@pytest.mark.parametrize("lab", LABS, ids=_id)
def test_readme_structure_and_pictures(lab: Path) -> None:
    text = _readme(lab)
    for section in SECTIONS:
        assert section in text, f"{lab.name}: README lacks {section!r}"
    assert "**Goal.**" in text
    for link in _links(text):
        assert (lab / link).exists(), f"{lab.name}: link {link} leads nowhere"
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert images, f"{lab.name}: no picture"
    for image in images:
        assert (lab / image).is_file(), f"{lab.name}: picture {image} is missing"
    # the run's own picture, where the report puts it
    assert "figures/topology.png" in text
    for scenario in _lab_scenarios(lab):  # the student's own results (issue 18, item 5)
        where = f"results/$TESTBED_STUDENT/{scenario.name}"
        assert where in text, f"{lab.name}: no results path of {scenario.name} ({where})"
    # an ASCII picture of the network: a plain fenced block with network bars
    assert re.search(r"^```\n(?:.*\n)*?.*=\+=", text, flags=re.M), f"{lab.name}: no ASCII picture"
    for word in ("testbed run", "testbed events", "testbed state", "testbed up", "testbed move"):
        assert word in text, f"{lab.name}: README never shows {word!r}"
    assert "--follow" in text and "--cli" in text


@pytest.mark.parametrize("lab", LABS, ids=_id)
def test_expected_blocks_cover_every_scenario_and_parse(lab: Path) -> None:
    blocks = labcheck.expected_blocks(_readme(lab))
    files = {p.name for p in lab.glob("scenario*.yaml")}
    assert set(blocks) == files, f"{lab.name}: expected blocks for {sorted(blocks)}, files {files}"
    for target, lines in blocks.items():
        assertions = labcheck.parse_block(lines)  # raises on a bad line, naming it
        assert len(assertions) >= 8, f"{lab.name}/{target}: too few expected observations"
        text = "\n".join(t for _, t in lines)
        assert "events contains" in text and "handoff[" in text


@pytest.mark.parametrize("scenario", SCENARIOS, ids=_id)
def test_scenario_validates_with_expectations(scenario: Path) -> None:
    loaded = load_scenario(scenario)
    assert loaded.name.startswith("lab-"), loaded.name
    assert loaded.spec.mobility == "mip"
    assert len(loaded.spec.expect) >= 5
    assert any(s.pause is not None for s in loaded.spec.timeline), "no pause step for --cli"


def _agent_file(scenario: Path, service: str) -> Path:
    variant = scenario.stem.removeprefix("scenario").lstrip("-")
    named = scenario.parent / f"{service}-{variant}.yaml"
    return named if variant and named.exists() else scenario.parent / f"{service}.yaml"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=_id)
def test_agent_files_are_the_scenarios_configs(scenario: Path, tmp_path: Path) -> None:
    """The hands-on part uses the lab's agent files: they must be what the scenario runs."""
    from agents.runtime import config as agent_config

    spec = load_scenario(scenario).spec
    agents = [s for s in spec.services if s.kind == "agent"]
    assert agents
    for service in agents:
        path = _agent_file(scenario, service.label)
        assert path.exists(), f"{scenario.name}: service {service.label} has no {path.name}"
        on_disk: Any = yaml.safe_load(path.read_text())
        assert on_disk == service.config, f"{path.name} differs from {scenario.name}'s config"
        vpn = on_disk.get("vpn")
        if isinstance(vpn, dict) and "service" in vpn:  # the runner resolves it (_agent_config)
            resolved = {k: v for k, v in vpn.items() if k != "service"}
            resolved["vici"] = f"/run/testbed/LAB/{vpn['service']}/charon.vici"
            path = tmp_path / path.name
            path.write_text(yaml.safe_dump({**on_disk, "vpn": resolved}))
        getattr(agent_config, AGENT_LOADERS[str(service.agent)])(path)  # valid for the agent


def _cli_verbs() -> set[str]:
    import argparse

    from testbed import cli, inspect

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert "state" in sub.choices and inspect  # the inspection verbs are wired in
    return set(sub.choices)


@pytest.mark.parametrize("lab", LABS, ids=_id)
def test_readme_commands_name_what_exists(lab: Path) -> None:
    code = _code(_readme(lab))
    verbs = _cli_verbs()
    for verb in re.findall(r"testbed (?!agent\b)([a-z]+)\b", code):
        assert verb in verbs, f"{lab.name}: 'testbed {verb}' is not a testbed command"
    for path in set(re.findall(r"\b((?:labs|topologies|scenarios)/[\w./-]+\.(?:yaml|md))", code)):
        assert (ROOT / path).exists(), f"{lab.name}: {path} does not exist"
    plans = [s.plan for s in _lab_scenarios(lab)]
    nodes = {n: node for plan in plans for n, node in plan.nodes.items()}
    networks = {n for plan in plans for n in plan.networks}
    for node, rest in re.findall(r"testbed exec \S+ ([a-z][\w-]*) -- (.*)", code):
        if node.isupper():
            continue  # a placeholder (NODE)
        assert node in nodes, f"{lab.name}: 'testbed exec ... {node}': no such node"
        for iface in re.findall(r"-i (eth\d+)", rest):
            names = [i.name for i in nodes[node].interfaces]
            assert iface in names, f"{lab.name}: {node} has no {iface} ({names})"
    for node, network in re.findall(r"testbed move \S+ ([a-z][\w-]*) ([a-z][\w-]*)", code):
        assert node in nodes and network in networks, f"{lab.name}: move {node} {network}"
    for network in re.findall(r"testbed capture \S+ ([a-z][\w-]*)", code):
        assert network in networks, f"{lab.name}: capture {network}: no such network"
    for network in re.findall(r"pcap/([a-z][\w-]*)\.pcap", code):
        if network != "NETWORK":
            assert network in networks, f"{lab.name}: pcap/{network}.pcap: no such network"
    loops = [w for names in re.findall(r"for agent in ([\w ]+); do", code) for w in names.split()]
    for agent, config in re.findall(r"testbed agent (\$?\w+)\s+--config (\S+)", code):
        agents = loops if agent == "$agent" else [agent]
        assert agents, f"{lab.name}: 'testbed agent {agent}' outside a loop over agents"
        for name in agents:
            assert name in AGENT_LOADERS, f"{lab.name}: 'testbed agent {name}': no such agent"
            path = ROOT / config.replace("$agent", name)
            assert path.is_file(), f"{lab.name}: {path.relative_to(ROOT)} does not exist"


@pytest.mark.parametrize("lab", LABS, ids=_id)
def test_readme_commands_derive_every_name_from_the_student(lab: Path) -> None:
    """Issue 18, item 5: a class on one server. Nothing a lab's commands name is shared by
    two students: runs take --student, results are under results/$TESTBED_STUDENT/, the
    by-hand lab is $LAB (labNN-$TESTBED_STUDENT, set in the text) and its files are in
    /tmp/$LAB and /run/testbed/$LAB; RUN_LAB, RUN_DIR are placeholders."""
    text = _readme(lab)
    code = _code(text)
    number = lab.name[:2]
    assert f"LAB=lab{number}-$TESTBED_STUDENT" in code, f"{lab.name}: LAB is never set"
    runs = re.findall(r"testbed run (?!--student=\$TESTBED_STUDENT )\S+", code)
    assert not runs, f"{lab.name}: without --student=$TESTBED_STUDENT: {runs}"
    shared = re.findall(r"\bresults/(?!\$TESTBED_STUDENT\b)\S*", code)
    assert not shared, f"{lab.name}: not under results/$TESTBED_STUDENT/: {shared}"
    shared = re.findall(
        r"/tmp/(?!\$LAB\b|lab\d\d-\$TESTBED_STUDENT\b)\S*|/run/testbed/(?!\$LAB/|RUN_LAB/)\S*", code
    )
    assert not shared, f"{lab.name}: paths not the student's: {shared}"
    verbs = "exec|move|capture|cli|down|show"
    for verb, name in re.findall(rf"testbed ({verbs}) (\S+)", code):
        assert name in ("$LAB", "RUN_LAB"), f"{lab.name}: 'testbed {verb} {name}': not $LAB"
    for name in re.findall(r"testbed up \S+ --name (\S+)", code):
        assert name == "$LAB", f"{lab.name}: 'testbed up ... --name {name}': not $LAB"
    assert not re.search(r"\blab0\d\b(?!-)", code), f"{lab.name}: a hard-coded lab name"


def _failed(expectations: list[dict[str, Any]]) -> list[str]:
    return [
        f"{e['name']}: {e.get('value')} ({e.get('detail', '')})"
        for e in expectations
        if not e["passed"]
    ]


@pytest.mark.netns
@pytest.mark.parametrize("scenario", SCENARIOS, ids=_id)
def test_lab_runs_as_its_text_says(run_scenario, scenario: Path) -> None:
    outcome = run_scenario(scenario, pcap="none")
    summary = outcome.summary
    assert summary["error"] is None, summary["error"]
    assert outcome.passed, _failed(summary["expectations"])
    checks = labcheck.check_run(scenario.parent / "README.md", outcome.run_dir, scenario.name)
    failed = [str(c) for c in checks if not c.passed]
    assert not failed, f"{scenario.parent.name}/README.md expected block:\n" + "\n".join(failed)
    # what the lab tells students to look at is there
    assert (outcome.run_dir / "events.jsonl").stat().st_size > 0
    for service in ("ha", "mn"):
        assert (outcome.run_dir / "state" / f"{service}.json").exists()
    assert (outcome.run_dir / "figures" / "topology.png").exists()
    assert (outcome.run_dir / "figures" / "h0-ladder.png").exists()


@pytest.mark.netns
@pytest.mark.parametrize(
    ("script", "flag", "mn_file", "architecture"),
    [
        ("04-leaving-the-enterprise-mobike/vpn.py", None, "mn.yaml", None),
        ("05-proxy-and-dual-mip/vpn.py", None, "mn.yaml", "proxy"),
        ("05-proxy-and-dual-mip/vpn.py", "--dual", "mn-dual.yaml", "dual"),
    ],
)
def test_by_hand_vpn_script_starts_the_services_as_the_runner(
    tmp_path: Path, script: str, flag: str | None, mn_file: str, architecture: str | None
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from labtools import lab_leftovers, run_testbed, unique_name

    from testbed.lab.lab import Lab

    if os.geteuid() != 0:
        pytest.skip("labs need root (network namespaces)")
    name = unique_name("hand")
    run_testbed("up", str(ROOT / "topologies" / "enterprise.yaml"), "--name", name)
    proc = None
    try:
        argv = [sys.executable, str(LABS_DIR / script), name, str(tmp_path)]
        argv += [flag] if flag else []
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        target = tmp_path / mn_file
        deadline = time.monotonic() + 30
        while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert target.exists(), proc.communicate(timeout=5)[0] if proc.poll() is not None else ""
        vpn = yaml.safe_load(target.read_text())["vpn"]
        assert "service" not in vpn and Path(vpn["vici"]).exists()
        assert vpn.get("architecture") == architecture
        rules = Lab.open(name).run("gw", ["ip", "rule"], capture_output=True, text=True).stdout
        # the proxy's gateway sends IKE/ESP to home addresses, and what it decrypts, via it
        home_bound = "ipproto udp sport 4500" in rules and "iif ipsec0" in rules
        assert home_bound == (architecture == "proxy"), rules
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        run_testbed("down", name)
    assert not lab_leftovers(name)


@pytest.mark.netns
def test_answers_are_graded_against_a_real_run(run_scenario, tmp_path: Path, capsys) -> None:
    """Lab 01 for real: an answers file with what the run produced passes
    ``testbed labcheck --answers``, one with wrong numbers and letters is reported."""
    from testbed import answers

    scenario = LABS_DIR / "01-home-and-agent-discovery" / "scenario.yaml"
    outcome = run_scenario(scenario, pcap="none")
    assert outcome.summary["error"] is None, outcome.summary["error"]
    key = answers.load_key(scenario.parent / "answers.yaml")
    run = answers.load_run(outcome.run_dir)
    right: dict[str, Any] = {}
    wrong: dict[str, Any] = {}
    for qid, question in key.questions.items():
        if question.kind == "numeric":
            assert question.term is not None
            value = question.term.value(run)
            assert isinstance(value, int | float), (qid, value)
            right[qid], wrong[qid] = value, value + 100
        else:
            holding, _ = answers._holding(question, run)
            assert isinstance(holding, list) and holding, (qid, holding)
            right[qid] = holding[0]
            wrong[qid] = next(c for c, _ in question.choices if c not in holding)
    mine = tmp_path / "answers.txt"
    mine.write_text(yaml.safe_dump(right))
    assert answers.main(["--answers", str(mine), str(outcome.run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{len(right)}/{len(right)} answers right" in out, out
    mine.write_text(yaml.safe_dump(wrong))
    assert answers.main(["--answers", str(mine), str(outcome.run_dir)]) == 1
    out = capsys.readouterr().out
    assert f"0/{len(wrong)} answers right" in out, out
    assert "WRONG   q2" in out and "your run says" in out and "tolerance 1" in out
    assert "WRONG   q4" in out and "you chose" in out
