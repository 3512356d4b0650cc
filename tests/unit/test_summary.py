"""summary.json's one definition: what the runner may write and every reader gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from testbed import cli
from testbed.results.sample import write_sample_run
from testbed.scenario import catalogue
from testbed.summary import Handoff, RunSummary, SummaryError, read_summary, write_summary


def test_a_written_summary_reads_back_with_every_field(tmp_path: Path) -> None:
    run = write_sample_run(tmp_path / "run")
    summary = read_summary(run / "summary.json")
    handoff = summary.handoffs[0]
    # typed, defaults filled: a reader never has to ask whether a field may be absent
    assert set(catalogue.HANDOFF_FIELDS) <= set(handoff.model_dump(by_alias=True))
    assert handoff.cut_short is False and handoff.from_ == "home"
    assert summary.verdict is None and summary.mobile == "mn"
    assert isinstance(summary.percentiles, list)


def test_the_runner_cannot_write_what_readers_could_not_read(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        write_summary(tmp_path / "summary.json", {"scenario": "s", "handoffs": [{"to": "x"}]})
    assert not (tmp_path / "summary.json").exists()
    write_summary(tmp_path / "summary.json", {"scenario": "s", "tool_note": 1})
    assert json.loads((tmp_path / "summary.json").read_text()) == {"scenario": "s", "tool_note": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read: No such file"),
        ('{"scenario": ', "not JSON"),
        ('{"handoffs": []}', "not a run summary: scenario: Field required"),
        ('{"scenario": "s", "handoffs": [{"index": "x"}]}', "not a run summary: handoffs.0.index"),
    ],
)
def test_a_bad_summary_is_one_line_naming_the_file(
    tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "summary.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SummaryError) as info:
        read_summary(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)
    assert "\n" not in str(info.value)


def test_handoff_fields_come_from_the_summary_definition() -> None:
    kinds = {name: kind for name, (kind, _) in catalogue.HANDOFF_FIELDS.items()}
    assert kinds["interruption_ms"] == "number" and kinds["mode"] == "text"
    assert kinds["phases_ms"] == "phases" and kinds["critical_path"] == "record"
    assert all(meaning for _, meaning in catalogue.HANDOFF_FIELDS.values())


def test_schema_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema", "summary"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "handoffs" in schema["properties"] and "Handoff" in schema["$defs"]


def test_older_summaries_read_with_the_models_defaults() -> None:
    """What a summary does not record reads as its field's default through the model: no
    reader asks whether a key is there."""
    summary = RunSummary.model_validate(
        {
            "scenario": "old",
            "handoffs": [{"index": 0, "interruption_ms": 40.0}],
            "streams": {"down": {"lost": 3, "received": 900}},
            "tcp": {"errors": 0},
        }
    )
    (handoff,) = summary.handoffs
    assert (handoff.probed, handoff.cut_short, handoff.run, handoff.phases_ms) == (
        True,
        False,
        0,
        {},
    )
    assert handoff.interruptions() == {"down": None, "up": None} and handoff.lost("down") is None
    assert summary.streams["down"].sent is None and summary.streams["down"].owd_ms == {}
    assert summary.tcp is not None and summary.tcp.bytes is None
    assert (summary.verdict, summary.baseline, summary.repeat, summary.runs) == (None, None, 1, 0)


def test_the_mobile_node_as_recorded_or_as_older_summaries_say() -> None:
    def mobile(**data: object) -> str:
        return RunSummary.model_validate({"scenario": "s", **data}).mobile_node

    assert mobile(mobile="mn03", signalling_nodes=["mn"]) == "mn03"
    # from before it was recorded: the first signalling node, else the probes' mobile end
    assert mobile(signalling_nodes=["mb", "ha"]) == "mb"
    assert mobile(streams={"down": {"from": "cn", "to": "m2"}}) == "m2"
    assert mobile(streams={"up": {"from": "m3", "to": "cn"}}) == "m3"
    assert mobile() == "mn"


def test_fields_by_their_summary_names_and_keys_tools_added() -> None:
    handoff = Handoff.model_validate(
        {"index": 1, "from": "home", "interruption_x_ms": 7.5, "lost_x": 2, "note": "n"}
    )
    assert handoff.value_of("from") == "home" and handoff.value_of("note") == "n"
    with pytest.raises(KeyError):
        handoff.value_of("from_")  # the attribute's name is not the file's
    # a stream a tool added is one more stream, after down and up
    assert handoff.interruptions() == {"down": None, "up": None, "x": 7.5}
    assert handoff.lost("x") == 2 and handoff.lost("y") is None


def test_the_runner_writes_what_it_set_and_gets_the_model_back(tmp_path: Path) -> None:
    model = RunSummary.model_validate({"scenario": "s", "handoffs": [{"index": 0, "to": "x"}]})
    model.verdict = "passed"
    written = write_summary(tmp_path / "summary.json", model)
    assert written is model
    assert json.loads((tmp_path / "summary.json").read_text()) == {
        "scenario": "s",
        "handoffs": [{"index": 0, "to": "x"}],
        "verdict": "passed",
    }
