"""summary.json's one definition: what the runner may write and every reader gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from testbed import cli
from testbed.results.sample import write_sample_run
from testbed.scenario import catalogue
from testbed.summary import SummaryError, read_summary, write_summary


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
