"""Everything a run is told is checked before anything is built: each check's message,
file and line (agents' configurations, wait events, phases, metric kinds, probes, --pcap,
--repeat, --tolerance, --baseline, gaps), and the CLI's one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mipbase.specfile import SpecError
from testbed import cli
from testbed.scenario import execute
from testbed.scenario.expect import evaluate
from testbed.scenario.load import load_scenario
from testbed.scenario.model import ExpectSpec
from testbed.summary import RunSummary

ROOT = Path(__file__).resolve().parents[2]
ROAM_NAT = (ROOT / "scenarios" / "roam-nat.yaml").read_text()


def scenario_file(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text.replace("topology: topologies/", f"topology: {ROOT}/topologies/"))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        load_scenario(path)
    return str(info.value)


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


MINI = """\
name: mini
topology: topologies/enterprise.yaml
{services}
timeline:
  - {{move: {{node: mn, to: office}}}}
{extra}
"""


def mini(tmp_path: Path, services: str = "", extra: str = "", name: str = "s.yaml") -> Path:
    return scenario_file(tmp_path, MINI.format(services=services, extra=extra), name)


# -- agents' configurations inside scenario services -----------------------------------


def test_agent_config_typo_is_reported_at_the_scenario_line(tmp_path: Path) -> None:
    path = scenario_file(
        tmp_path, ROAM_NAT.replace("decision_timeout: 0.3", "decison_timeout: 0.3")
    )
    line = line_of(path, "decison_timeout")
    assert error_of(path) == (
        f"{path}:{line}: services[4].config.vpn.decison_timeout: unknown field (check the spelling)"
    )


def test_agent_config_value_checked_by_the_agents_model(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, ROAM_NAT.replace("spi: 256, key", "spi: 25, key"))
    message = error_of(path)
    assert f"{path}:{line_of(path, 'spi: 25, key')}: " in message
    assert "services[2].config.mobile_nodes[0].spi: " in message and "256" in message


def test_agent_config_wrong_type_and_missing_field(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, ROAM_NAT.replace("home_router: 10.1.0.254", "home_router: x"))
    assert "services[4].config.home_router: " in error_of(path)
    path = scenario_file(tmp_path, ROAM_NAT.replace("      home_router: 10.1.0.254\n", ""))
    assert "services[4].config.home_router: required field is missing" in error_of(path)


def test_agent_without_config(tmp_path: Path) -> None:
    path = mini(tmp_path, "services:\n  - {name: fa, node: fa, kind: agent, agent: fa}")
    assert error_of(path) == (
        f"{path}:4: services[0]: an agent service needs config: the fa agent's configuration"
    )


def test_agent_vpn_service_must_be_a_vpn_service(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, ROAM_NAT.replace("service: mn-vpn", "service: mn-vpm"))
    message = error_of(path)
    assert f":{line_of(path, 'service: mn-vpm')}: services[4].config.vpn.service: " in message
    assert "no vpn service 'mn-vpm' in this scenario (vpn services: gw-vpn, mn-vpn)" in message
    path = scenario_file(tmp_path, ROAM_NAT.replace("service: mn-vpn", "service: ha"))
    assert "no vpn service 'ha'" in error_of(path)
    path = scenario_file(tmp_path, ROAM_NAT.replace("service: mn-vpn, ", ""))
    assert "services[4].config.vpn: needs service: the name of this node's kind: vpn" in (
        error_of(path)
    )


def test_every_shipped_scenario_still_validates() -> None:
    files = [
        *sorted((ROOT / "scenarios").glob("*.yaml")),
        *sorted((ROOT / "tests" / "scenarios").glob("*.yaml")),
        *sorted((ROOT / "labs").glob("*/scenario*.yaml")),
    ]
    assert len(files) > 15
    for file in files:
        load_scenario(file)


# -- event and phase names, metric kinds ----------------------------------------------------


def test_wait_for_an_unknown_event(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, ROAM_NAT.replace("event: ike_update,", "event: ike_updated,"))
    assert error_of(path) == (
        f"{path}:{line_of(path, 'ike_updated')}: timeline[5].wait.event: unknown event "
        "'ike_updated' (did you mean ike_update?); see testbed schema events"
    )


def test_an_event_of_the_scenarios_own_is_declared_custom(tmp_path: Path) -> None:
    """A command service may write events of its own (tests' bulk TCP: bulk_done)."""
    text = ROAM_NAT.replace("event: ike_update,", "event: bulk_done, custom: true,")
    assert "bulk_done" in text
    load_scenario(scenario_file(tmp_path, text))  # no SpecError


def test_unknown_phase_and_handoff_field(tmp_path: Path) -> None:
    path = mini(
        tmp_path, extra='expect:\n  - {metric: "handoff[0].phases_ms.dhcp_start", below: 5}'
    )
    assert error_of(path) == (
        f"{path}:7: expect[0]: unknown phase 'dhcp_start' (did you mean dhcp_started?)"
    )
    with pytest.raises(ValueError, match="a handoff has no field 'interuption_ms' "):
        ExpectSpec(metric="handoff[0].interuption_ms", below=5)
    with pytest.raises(ValueError, match=r"name a phase: handoff\[0\].phases_ms.X"):
        ExpectSpec(metric="handoff[0].phases_ms", below=5)
    with pytest.raises(ValueError, match="handoff field mode has no parts"):
        ExpectSpec(metric="handoff[0].mode.x", equals="f")
    ExpectSpec(metric="handoff[*].phases_ms.first_packet_down", below=5)
    ExpectSpec(metric="handoff[1].phases_ms.boundary_decision", below=5)


def test_numeric_check_on_a_text_metric(tmp_path: Path) -> None:
    path = mini(tmp_path, extra='expect:\n  - {metric: "handoff[0].mode", below: 5}')
    assert error_of(path) == (
        f"{path}:7: expect[0]: handoff[0].mode is text, not a number: check it with equals"
    )
    with pytest.raises(ValueError, match="final_mode is text: equals needs text"):
        ExpectSpec(metric="final_mode", equals=1)
    with pytest.raises(ValueError, match="handoffs is a number: equals needs a number"):
        ExpectSpec(metric="handoffs", equals="two")
    ExpectSpec(metric="handoff[*].tunnel", equals="udp")
    ExpectSpec(metric="handoff[0].tunnel", is_null=True)
    ExpectSpec(metric="handoff[0].to", equals="office")


def test_evaluate_never_compares_text_with_a_number() -> None:
    """A safety net behind validation: a numeric check on a text value fails, no TypeError."""
    spec = ExpectSpec.model_construct(metric="handoff[0].mode", below=5.0)
    run = RunSummary.model_validate({"scenario": "s", "handoffs": [{"index": 0, "mode": "f"}]})
    (result,) = evaluate([spec], [run])
    assert result["passed"] is False and result["detail"] == "'f' is not a number"


def test_tcp_metric_needs_the_tcp_probe(tmp_path: Path) -> None:
    path = mini(tmp_path, extra="expect:\n  - {metric: tcp.errors, equals: 0}")
    assert error_of(path) == (
        f"{path}:7: expect[0].metric: tcp.errors needs the TCP probe: probes: {{tcp: true}}"
    )
    ok = mini(tmp_path, extra="probes: {tcp: true}\nexpect:\n  - {metric: tcp.errors, equals: 0}")
    load_scenario(ok)


def test_stream_metric_needs_its_stream(tmp_path: Path) -> None:
    path = mini(
        tmp_path,
        extra="probes: {directions: down}\nexpect:\n  - {metric: stream.up.lost, equals: 0}",
    )
    assert "expect[0].metric: stream.up.lost: no up stream (probes.directions is down)" in (
        error_of(path)
    )
    path = mini(tmp_path, extra="probes: null\nexpect:\n  - {metric: stream.down.lost, equals: 0}")
    assert "stream.down.lost needs probes (probes is null)" in error_of(path)


def test_negative_gap_says_so(tmp_path: Path) -> None:
    path = scenario_file(
        tmp_path, MINI.format(services="", extra="").replace("to: office", "to: office, gap: -5ms")
    )
    assert error_of(path) == (
        f"{path}:5: timeline[0].move.gap: a duration cannot be negative: '-5ms'"
    )


# -- the run's options --------------------------------------------------------------------


def test_repeat_and_tolerance() -> None:
    for bad in (0, -1, 1001):
        with pytest.raises(
            execute.InvalidRun, match=f"--repeat must be between 1 and 1000, got {bad}"
        ):
            execute.check_repeat(bad)
    execute.check_repeat(None)
    execute.check_repeat(1)
    with pytest.raises(execute.InvalidRun, match="--tolerance must be a percentage of 0 or more"):
        execute.check_tolerance(-1)
    with pytest.raises(execute.InvalidRun):
        execute.check_tolerance(float("nan"))


def test_pcap_networks_must_exist(tmp_path: Path) -> None:
    scenario = load_scenario(mini(tmp_path))
    for ok in (None, "all", "none", "home,office", ["visited"]):
        execute.check_pcap(scenario, ok)
    with pytest.raises(SpecError) as info:
        execute.check_pcap(scenario, "home,offfice")
    assert str(info.value).startswith(f"{scenario.path}: --pcap: unknown network 'offfice' (")


def test_run_scenario_checks_before_building(tmp_path: Path) -> None:
    """Bad options fail before the lab, the results directory or a root check."""
    path = mini(tmp_path)
    results = tmp_path / "results"
    options = execute.RunOptions(results=results, pcap="nowhere")
    with pytest.raises(SpecError, match="--pcap: unknown network 'nowhere'"):
        execute.run_scenario(path, options)
    options = execute.RunOptions(results=results)
    with pytest.raises(execute.InvalidRun, match="--repeat"):
        execute.run_scenario(path, options, repeat=0)
    with pytest.raises(execute.InvalidRun, match="--baseline"):
        execute.run_scenario(path, options, baseline=tmp_path / "missing.json")
    assert not results.exists()


def test_baseline_checks(tmp_path: Path) -> None:
    with pytest.raises(execute.InvalidRun, match="cannot read: No such file"):
        execute.check_baseline(tmp_path / "nope.json")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"scenario": "x", "handoffs": [')
    with pytest.raises(execute.InvalidRun, match=f"--baseline {corrupt}: not JSON"):
        execute.check_baseline(corrupt)
    other = tmp_path / "other.json"
    other.write_text('{"some": "json"}')
    with pytest.raises(execute.InvalidRun, match="not a run summary"):
        execute.check_baseline(other)
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text('{"scenario": "x", "handoffs": []}')
    assert execute.check_baseline(run) == run / "summary.json"
    assert execute.check_baseline(run / "summary.json") == run / "summary.json"


# -- the command line -----------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_reports_every_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = mini(tmp_path)
    bad1 = scenario_file(tmp_path, ROAM_NAT.replace("service: mn-vpn", "service: x"), "b1.yaml")
    bad2 = scenario_file(
        tmp_path, MINI.format(services="", extra="").replace("office", "ofice"), "b2.yaml"
    )
    code, out, err = run_cli(capsys, "validate", str(bad1), str(good), str(bad2))
    assert code == 2
    assert out == f"{good}: ok (scenario mini: 1 steps, 0 expectations, topology enterprise)\n"
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"testbed: {bad1}:") and "no vpn service 'x'" in lines[0]
    assert lines[1].startswith(f"testbed: {bad2}:5: timeline[0].move.to: unknown network")
    assert run_cli(capsys, "validate", str(good))[0] == 0


def test_run_with_bad_files_and_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every bad file is one line and a JUnit error; nothing is built or written."""
    bad1 = scenario_file(tmp_path, ROAM_NAT.replace("event: ike_update,", "event: ike,"), "b1.yaml")
    bad2 = mini(tmp_path, extra='expect:\n  - {metric: "handoff[0].mode", above: 1}')
    good = mini(tmp_path, name="good.yaml")
    results, junit = tmp_path / "results", tmp_path / "junit.xml"
    common = ("--results", str(results), "--junit", str(junit))
    code, _out, err = run_cli(capsys, "run", str(bad1), str(bad2), *common)
    assert code == 2
    assert [line.split(":")[1].strip() for line in err.splitlines()[:2]] == [str(bad1), str(bad2)]
    suites = ET.parse(junit).getroot().findall("testsuite")
    named = {s.get("name"): s for s in suites}
    assert {str(bad1), str(bad2)} <= set(named)
    error = named[str(bad1)].find("testcase/error")
    assert error is not None and "unknown event 'ike'" in error.get("message", "")
    assert not results.exists()
    for option, message in (
        (("--repeat", "0"), "testbed: --repeat must be between 1 and 1000, got 0"),
        (("--baseline", str(tmp_path / "gone.json")), f"testbed: --baseline {tmp_path}/gone.json"),
        (("--pcap", "nowhere"), f"testbed: {good}: --pcap: unknown network 'nowhere'"),
    ):
        code, _out, err = run_cli(capsys, "run", str(good), *option, *common)
        assert code == 2, err
        assert err.startswith(message), err
        assert len(err.splitlines()) == 1 or option[0] == "--pcap", err
        assert not results.exists()
        assert int(ET.parse(junit).getroot().get("errors", "0")) >= 1  # (2 without root)


def test_exec_of_a_missing_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class FakeLab:
        def exec(self, node: str, argv: list[str]) -> None:
            os.execvp(argv[0], argv)  # raises: no such command (nothing is replaced)

    monkeypatch.setattr(cli, "_lab", lambda name: FakeLab())
    code, _out, err = run_cli(capsys, "exec", "lab", "mn", "--", "no-such-command-xyz", "-a")
    assert code == 2
    assert err == "testbed: mn: command not found: no-such-command-xyz\n"


def test_move_with_a_negative_gap(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run_cli(capsys, "move", "anylab", "mn", "office", "--gap", "-50")
    assert (code, err) == (2, "testbed: --gap cannot be negative: -50 ms\n")


def test_schema_scenario_and_events(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "schema", "scenario")
    schema = json.loads(out)
    assert code == 0 and {"timeline", "expect", "services"} <= set(schema["properties"])
    assert "WaitAction" in schema["$defs"]
    code, out, _ = run_cli(capsys, "schema", "events")
    catalogue = json.loads(out)
    assert "registration_accepted" in catalogue["events"]
    assert "boundary_decision" in catalogue["phases"] and "mode" in catalogue["handoff_fields"]


# -- the pytest plugin ----------------------------------------------------------------------


PLUGIN_TEST = """
import os
os.geteuid = lambda: 1000  # as if not root

def test_needs_root(run_scenario):
    run_scenario("x.yaml")
"""


@pytest.mark.parametrize(
    ("how", "outcome"),
    [((), "1 skipped"), (("--testbed-require-root",), "1 error"), (("ENV",), "1 error")],
)
def test_plugin_skips_or_fails_without_root(
    tmp_path: Path, how: tuple[str, ...], outcome: str
) -> None:
    (tmp_path / "test_plugin_root.py").write_text(PLUGIN_TEST)
    env = {k: v for k, v in os.environ.items() if k != "TESTBED_REQUIRE_ROOT"}
    args = [a for a in how if a != "ENV"]
    if "ENV" in how:
        env["TESTBED_REQUIRE_ROOT"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert outcome in result.stdout, result.stdout + result.stderr
    if "error" in outcome:
        assert "root is required" in result.stdout


def test_the_readmes_complete_scenario_validates(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Scenarios in CI", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    scenario = load_scenario(scenario_file(tmp_path, example, "ci-roam.yaml"))
    spec = scenario.spec
    assert [s.agent for s in spec.services] == ["ha", "fa", "mn"]
    assert spec.mobility == "mip" and spec.pcap == ["visited", "office"]
    assert spec.settle == spec.tail == 1000.0
    assert any(e.name for e in spec.expect)


# --- testbed run --set PATH=VALUE ---------------------------------------------------------


def test_set_overrides_fields_before_they_are_checked(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, ROAM_NAT)
    scenario = load_scenario(
        path,
        [
            "repeat=3",
            "timeline[0].move.to=visited",
            "topology.overrides.networks.visited.impair={delay: 25ms}",
        ],
    )
    assert scenario.spec.repeat == 3
    assert scenario.spec.timeline[0].move.to == "visited"
    assert scenario.plan.networks["visited"].egress.delay_ms == 25
    assert scenario.source.overrides[("repeat",)] == "repeat=3"


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("timeline[0].move.to=homme", "--set timeline[0].move.to=homme: timeline[0].move.to: "),
        ("repaet=3", "--set repaet=3: repaet: unknown field"),
        ("repeat=0", "--set repeat=0: repeat: "),
        ("timeline[99].move.to=home", "--set: timeline[99].move.to: timeline has no [99]"),
        ("repeat", "--set: 'repeat': write PATH=VALUE"),
        ("repeat=", "--set: repeat: give a value"),
        ("name.first=x", "--set: name.first: name is not a mapping"),
    ],
)
def test_a_bad_set_names_the_option(tmp_path: Path, assignment: str, message: str) -> None:
    path = scenario_file(tmp_path, ROAM_NAT)
    with pytest.raises(SpecError) as info:
        load_scenario(path, [assignment])
    assert str(info.value).startswith(message), str(info.value)


def test_run_with_a_bad_set_builds_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = scenario_file(tmp_path, ROAM_NAT)
    results = tmp_path / "results"
    argv = ["run", str(path), "--set", "timeline[0].move.to=homme", "--results", str(results)]
    code, _out, err = run_cli(capsys, *argv)
    assert code == 2 and "--set timeline[0].move.to=homme" in err
    assert not results.exists()
