"""Grading a student's answers against a run (testbed/answers.py) and every lab's key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from testbed import answers, labcheck
from testbed.summary import RunSummary

ROOT = Path(__file__).resolve().parents[2]
MOVE0, MOVE1 = 1_000_000_000, 5_000_000_000


def _run() -> labcheck.RunData:
    summary = {
        "scenario": "lab-x",
        "handoffs": [
            {
                "index": 0,
                "t_ns": MOVE0,
                "mode": "f",
                "interruption_ms": 47.5,
                "phases_ms": {"link_up": 3.0, "agent_discovered": 10.3},
            },
            {"index": 1, "t_ns": MOVE1, "mode": "home", "interruption_ms": None, "phases_ms": {}},
        ],
        "streams": {"down": {"sent": 100, "lost": 40}},
    }
    events = [
        {"t_ns": MOVE0 + 2_000_000, "node": "mn", "event": "registration_sent", "reason": "x"},
        {"t_ns": MOVE0 + 30_000_000, "node": "ha", "event": "binding_added"},
        {"t_ns": MOVE0 + 40_000_000, "node": "fa", "event": "visitor_added"},
        {"t_ns": MOVE0 + 1_000_000_000, "node": "runner", "event": "service_kill"},
        {
            "t_ns": MOVE0 + 3_500_000_000,
            "node": "mn",
            "event": "registration_sent",
            "reason": "renewal",
        },
        {"t_ns": MOVE1 + 1_000_000, "node": "ha", "event": "registration_denied", "code": 131},
    ]
    return labcheck.RunData(RunSummary.model_validate(summary), events)


KEY = {
    "lab": "test lab",
    "questions": {
        "q1": {
            "kind": "numeric",
            "term": "handoff[0].phases_ms.agent_discovered - handoff[0].phases_ms.link_up",
            "tolerance": 0.5,
            "ask": "discovery",
        },
        "q2": {
            "kind": "numeric",
            "term": "time(registration_sent from mn in handoff[0] with "
            "reason=renewal) - time(service_kill from runner in handoff[0])",
            "tolerance": "10%",
        },
        "q3": {"kind": "choice", "term": "handoff[0].mode", "choices": {"a": "c", "b": "f"}},
        "q4": {
            "kind": "choice",
            "choices": {
                "a": "time(visitor_added from fa in handoff[0]) < time(binding_added from ha in "
                "handoff[0])",
                "b": "time(binding_added from ha in handoff[0]) < time(visitor_added from fa in "
                "handoff[0])",
            },
        },
        "q5": {"kind": "numeric", "term": "stream.down.lost"},
        "q6": {"kind": "numeric", "term": "handoff[1].interruption_ms", "tolerance": 1},
        "q7": {
            "kind": "choice",
            "choices": {
                "a": "events contains registration_denied from ha in handoff[1] with code=131",
                "b": "events contains registration_denied from ha in handoff[1] with code=133",
            },
        },
        "q8": {
            "kind": "numeric",
            "term": "count(binding_added from ha)",
            "scenario": "scenario-other.yaml",
        },
    },
}


def _key(tmp_path: Path, raw: dict | None = None) -> answers.AnswerKey:
    path = tmp_path / "answers.yaml"
    path.write_text(yaml.safe_dump(raw or KEY))
    return answers.load_key(path)


def _grades(tmp_path: Path, given: dict) -> dict[str, answers.Grade]:
    grades = answers.grade(_key(tmp_path), given, {"scenario.yaml": _run()})
    return {g.id: g for g in grades}


def test_right_answers_are_right(tmp_path: Path) -> None:
    grades = _grades(tmp_path, {"q1": 7.5, "q2": 2600, "q3": "B", "q4": "b", "q5": 40, "q7": "a"})
    for qid in ("q1", "q2", "q3", "q4", "q5", "q7"):
        assert grades[qid].status == "right", grades[qid]
    assert grades["q2"].expected == "2500 ± 10%"
    # q6: the run never recovered, no number to compare with
    assert grades["q6"].status == "ungradable" and "null" in grades["q6"].why
    assert "q8" not in grades  # about another scenario, not answered: not listed


def test_wrong_answers_say_why(tmp_path: Path) -> None:
    grades = _grades(tmp_path, {"q1": 9, "q2": "soon", "q3": "a", "q4": "c", "q8": 1})
    assert grades["q1"].status == "wrong"
    assert "you wrote 9, your run says 7.3" in grades["q1"].why
    assert "tolerance 0.5" in grades["q1"].why
    assert grades["q2"].status == "wrong" and "not a number" in grades["q2"].why
    assert grades["q3"].status == "wrong"
    assert "your run says b" in grades["q3"].why and "handoff[0].mode is f" in grades["q3"].why
    assert grades["q4"].status == "wrong" and "not one of the choices a, b" in grades["q4"].why
    assert grades["q5"].status == "unanswered"
    assert grades["q8"].status == "other-run" and "scenario-other.yaml" in grades["q8"].why
    lines, status = answers.report(list(grades.values()))
    assert status == 1 and lines[-1].endswith("answers right")
    assert any(line.startswith("WRONG   q1") for line in lines)


def test_choice_reason_names_the_run(tmp_path: Path) -> None:
    grades = _grades(tmp_path, {"q4": "a"})
    assert grades["q4"].status == "wrong"
    assert "your run says b" in grades["q4"].why
    assert "time(visitor_added" in grades["q4"].why


def test_answers_without_a_key_are_for_the_teacher(tmp_path: Path) -> None:
    grades = _grades(tmp_path, {"q9": "because the FA decapsulates"})
    assert grades["q9"].status == "not-graded" and not grades["q9"].counts


def test_all_right_exits_zero(tmp_path: Path) -> None:
    raw = {"questions": {k: KEY["questions"][k] for k in ("q1", "q3")}}
    grades = answers.grade(_key(tmp_path, raw), {"q1": 7.3, "q3": "b"}, {"scenario.yaml": _run()})
    assert answers.report(grades)[1] == 0


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ({"kind": "essay"}, "kind must be numeric or choice"),
        ({"kind": "numeric"}, "needs a term"),
        ({"kind": "numeric", "term": "42"}, "not a metric"),
        ({"kind": "numeric", "term": "handoffs", "tolerance": "-1"}, "tolerance"),
        ({"kind": "choice", "choices": {"a": "x"}}, "two choices"),
        ({"kind": "choice", "choices": {"a": "events maybe x", "b": "handoffs = 1"}}, "events"),
        ({"kind": "numeric", "term": "handoffs", "typo": 1}, "unknown key"),
    ],
)
def test_bad_keys_are_one_line_naming_the_question(
    tmp_path: Path, question: dict, message: str
) -> None:
    with pytest.raises(answers.AnswersError, match=message) as info:
        _key(tmp_path, {"questions": {"q3": question}})
    assert "question q3" in str(info.value) and "\n" not in str(info.value)


def test_difference_keeps_dashes_inside_selectors() -> None:
    expr = answers.parse_expression(
        "time(ike_updown from mn in handoff[0] with ike=home-1) - time(step in handoff[0])"
    )
    assert expr.right is not None and "home-1" in expr.left.selector.text()  # type: ignore[union-attr]


def test_cli_grades_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    run.mkdir()
    data = _run()
    (run / "summary.json").write_text(data.summary.model_dump_json(by_alias=True))
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in data.events))
    (run / "scenario.json").write_text(json.dumps({"file": "labs/x/scenario.yaml"}))
    key = tmp_path / "lab" / "answers.yaml"
    key.parent.mkdir()
    key.write_text(yaml.safe_dump({"questions": {"q3": KEY["questions"]["q3"]}}))
    mine = tmp_path / "mine.yaml"
    mine.write_text("q3: b\n")
    assert answers.main(["--answers", str(mine), "--lab", str(key.parent), str(run)]) == 0
    mine.write_text("q3: a\n")
    assert answers.main(["--answers", str(mine), "--lab", str(key.parent), str(run)]) == 1
    out = capsys.readouterr().out
    assert "WRONG   q3" in out and "0/1 answers right" in out
    assert answers.main(["--answers", str(tmp_path / "none.yaml"), str(run)]) == 2


LAB_KEYS = sorted(ROOT.glob("labs/*/answers.yaml"))


def test_every_lab_has_a_key_and_solutions() -> None:
    labs = [p for p in (ROOT / "labs").iterdir() if (p / "README.md").exists()]
    for lab in labs:
        assert (lab / "answers.yaml").exists(), f"{lab.name} has no answers.yaml"
        assert (lab / "SOLUTIONS.md").exists(), f"{lab.name} has no SOLUTIONS.md"


@pytest.mark.parametrize("path", LAB_KEYS, ids=lambda p: p.parent.name)
def test_lab_keys_parse_and_name_the_labs_scenarios(path: Path) -> None:
    key = answers.load_key(path)
    assert len(key.questions) >= 4
    for question in key.questions.values():
        assert (path.parent / question.scenario).exists(), question
        assert question.ask, f"{question.id}: no ask"
    readme = (path.parent / "README.md").read_text()
    solutions = (path.parent / "SOLUTIONS.md").read_text()
    for qid in key.questions:
        number = qid.lstrip("q").rstrip("abcd")
        assert f"\n{number}. " in readme, f"{path.parent.name}: no question {number} in README"
        assert f"{number}." in solutions
