"""A student's answers to a lab's questions, graded against the student's own run.

Each lab keeps its questions' machine-readable keys in ``labs/NN-*/answers.yaml``::

    lab: lab 01                       # free text, for messages
    questions:
      q2:
        scenario: scenario.yaml       # the run it is graded against (default scenario.yaml)
        ask: ms from link_up to agent_discovered after the move
        kind: numeric
        term: handoff[0].phases_ms.agent_discovered - handoff[0].phases_ms.link_up
        tolerance: 1                  # absolute, in the term's unit; or "10%" of the run's value
      q3:
        ask: which care-of address does the MN register?
        kind: choice
        term: handoff[0].mode         # the run's value picks the right choice...
        choices: {a: home, b: f, c: c}
      q4:
        ask: what does the FA add first?
        kind: choice
        choices:                      # ...or, without a term, each choice is a labcheck line
          a: time(visitor_added from fa in handoff[0]) < time(binding_added from ha in handoff[0])
          b: time(binding_added from ha in handoff[0]) < time(visitor_added from fa in handoff[0])

A ``term`` is one of ``testbed.labcheck``'s terms (a summary metric such as
``handoff[0].interruption_ms``, ``count(SELECTOR)``, ``time(SELECTOR)``) or the difference of
two (``A - B``, spaces around the minus). The right answer is whatever the run produced, so
two students' runs may have different right answers; a choice question is right when the
letter given is one of the choices that hold for the run.

The student's file is YAML, one question id per line (questions graded by hand may be there
too, as text; they are listed as not graded)::

    q2: 7.5
    q3: b
    q4: b

``testbed labcheck --answers FILE RUN_DIR`` grades it: one line per question, what was
wrong and why, exit status 0 when every graded answer is right, 1 otherwise, 2 on errors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testbed import labcheck
from testbed.scenario.metricpath import Missing
from testbed.summary import read_summary

KEY_FILE = "answers.yaml"
KINDS = ("numeric", "choice")
ROOT = Path(__file__).resolve().parents[1]


class AnswersError(ValueError):
    """A key or answers file that cannot be read (one line naming it)."""


# --- the keys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    """A labcheck term, or ``left - right``."""

    text: str
    left: labcheck.Term
    right: labcheck.Term | None = None

    def value(self, run: labcheck.RunData) -> Any:
        a = labcheck.evaluate_term(self.left, run)
        if self.right is None:
            return a
        b = labcheck.evaluate_term(self.right, run)
        for side in (a, b):
            if isinstance(side, Missing):
                return side
        x, y = _number(a), _number(b)
        if x is None or y is None:
            return Missing(
                f"{self.text}: {labcheck._show(a)} and {labcheck._show(b)} are not both numbers"
            )
        return round(x - y, 3)


def parse_expression(text: str) -> Expression:
    text = str(text).strip()
    parts = [p for p in _split_minus(text)]
    if len(parts) > 2:
        raise labcheck.LabCheckError(f"{text!r}: one difference at most (A - B)")
    terms = [labcheck.parse_term(p) for p in parts]
    for term in terms:
        if isinstance(term, labcheck.Literal):
            raise labcheck.LabCheckError(f"{text!r}: {term.value!r} is not a metric or function")
    return Expression(text, terms[0], terms[1] if len(terms) == 2 else None)


def _split_minus(text: str) -> list[str]:
    """``A - B`` outside parentheses (a selector's values may hold a dash)."""
    depth, parts, start = 0, [], 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "-" and depth == 0 and text[i - 1 : i] == " " and text[i + 1 : i + 2] == " ":
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


@dataclass(frozen=True)
class Tolerance:
    value: float
    relative: bool = False

    def allows(self, answer: float, truth: float) -> bool:
        limit = abs(truth) * self.value / 100 if self.relative else self.value
        return abs(answer - truth) <= limit + 1e-9

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.relative else f"{self.value:g}"


def parse_tolerance(value: Any) -> Tolerance:
    if value is None:
        return Tolerance(0.0)
    if isinstance(value, str) and value.strip().endswith("%"):
        number = _float(value.strip()[:-1])
        relative = True
    else:
        number, relative = _float(value), False
    if number is None or number < 0:
        raise AnswersError(f"tolerance {value!r}: a number >= 0 or a percentage ('10%')")
    return Tolerance(number, relative)


@dataclass(frozen=True)
class Question:
    id: str
    kind: str
    ask: str = ""
    scenario: str = labcheck.DEFAULT_TARGET
    term: Expression | None = None
    tolerance: Tolerance = Tolerance(0.0)
    choices: tuple[tuple[str, Any], ...] = ()  # letter -> value, or labcheck assertion


def parse_question(qid: str, raw: Any) -> Question:
    where = f"question {qid}"
    if not isinstance(raw, Mapping):
        raise AnswersError(f"{where}: a mapping with kind, term, ...")
    unknown = set(raw) - {"kind", "ask", "scenario", "term", "tolerance", "choices"}
    if unknown:
        raise AnswersError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise AnswersError(f"{where}: kind must be numeric or choice, not {kind!r}")
    try:
        term = parse_expression(raw["term"]) if raw.get("term") is not None else None
        choices: list[tuple[str, Any]] = []
        if kind == "numeric":
            if term is None:
                raise AnswersError(f"{where}: a numeric question needs a term")
            if raw.get("choices"):
                raise AnswersError(f"{where}: a numeric question has no choices")
        else:
            given = raw.get("choices")
            if not isinstance(given, Mapping) or len(given) < 2:
                raise AnswersError(f"{where}: a choice question needs two choices or more")
            for letter, value in given.items():
                letter = str(letter).strip().lower()
                if term is None:
                    parsed = labcheck.parse_line(str(value))
                    if parsed is None:
                        raise AnswersError(f"{where}: choice {letter} is empty")
                    choices.append((letter, parsed))
                else:
                    choices.append((letter, value))
            if raw.get("tolerance") is not None:
                raise AnswersError(f"{where}: a choice question has no tolerance")
    except labcheck.LabCheckError as exc:
        raise AnswersError(f"{where}: {exc}") from None
    try:
        tolerance = parse_tolerance(raw.get("tolerance"))
    except AnswersError as exc:
        raise AnswersError(f"{where}: {exc}") from None
    return Question(
        qid,
        kind,
        str(raw.get("ask") or ""),
        str(raw.get("scenario") or labcheck.DEFAULT_TARGET),
        term,
        tolerance,
        tuple(choices),
    )


@dataclass
class AnswerKey:
    lab: str
    questions: dict[str, Question]
    path: Path | None = None

    def scenarios(self) -> set[str]:
        return {q.scenario for q in self.questions.values()}


def load_key(path: Path | str) -> AnswerKey:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise AnswersError(f"{path}: {exc}") from None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("questions"), Mapping):
        raise AnswersError(f"{path}: needs questions: {{ID: {{kind: ..., term: ...}}}}")
    try:
        questions = {str(k): parse_question(str(k), v) for k, v in raw["questions"].items()}
    except AnswersError as exc:
        raise AnswersError(f"{path}: {exc}") from None
    return AnswerKey(str(raw.get("lab") or path.parent.name), questions, path)


def load_answers(path: Path | str) -> dict[str, Any]:
    """The student's file: ``{question id: answer}``."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise AnswersError(f"{path}: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise AnswersError(f"{path}: one 'qN: answer' per line (a YAML mapping)")
    return {str(k).strip().lower(): v for k, v in raw.items()}


# --- grading ------------------------------------------------------------------------------


@dataclass
class Grade:
    """One question's outcome: ``right``, ``wrong``, ``unanswered``, ``ungradable`` (the run
    cannot say), ``other-run`` (the question is about another scenario) or ``not-graded``
    (an answer to a question without a key: graded by hand)."""

    id: str
    status: str
    answer: Any = None
    expected: str = ""
    why: str = ""
    ask: str = ""
    values: list[str] = field(default_factory=list)

    @property
    def counts(self) -> bool:
        return self.status in ("right", "wrong", "unanswered", "ungradable")

    def __str__(self) -> str:
        mark = {
            "right": "right",
            "wrong": "WRONG",
            "unanswered": "MISSING",
            "ungradable": "CANNOT",
            "other-run": "skip",
            "not-graded": "skip",
        }[self.status]
        head = f"{mark:<8}{self.id}"
        if self.ask:
            head += f"  ({self.ask})"
        return head + (f": {self.why}" if self.why else "")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(float(value)) else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        out = float(str(value).strip())
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def _same(value: Any, choice: Any) -> bool:
    a, b = _number(value), _number(choice)
    if a is not None and b is not None:
        return a == b
    if value is None or choice is None:
        return value is None and (choice is None or str(choice).lower() in ("null", "none"))
    if isinstance(value, bool) or isinstance(choice, bool):
        return str(value).lower() == str(choice).lower()
    return str(value) == str(choice)


def grade_question(q: Question, answer: Any, run: labcheck.RunData) -> Grade:
    grade = Grade(q.id, "right", answer, ask=q.ask)
    if q.kind == "numeric":
        assert q.term is not None
        truth = q.term.value(run)
        if isinstance(truth, Missing):
            return _cannot(grade, f"{q.term.text}: {truth.why}")
        number = _number(truth)
        if number is None:
            return _cannot(grade, f"{q.term.text} is {labcheck._show(truth)}, not a number")
        grade.expected = f"{number:g} ± {q.tolerance}"
        if answer is None:
            grade.status, grade.why = "unanswered", "no answer"
            return grade
        given = _float(answer)
        if given is None:
            grade.status = "wrong"
            grade.why = f"{answer!r} is not a number (your run: {q.term.text} = {number:g})"
        elif not q.tolerance.allows(given, number):
            grade.status = "wrong"
            grade.why = (
                f"you wrote {given:g}, your run says {number:g} ({q.term.text}), "
                f"off by {abs(given - number):g}, tolerance {q.tolerance}"
            )
        return grade
    holding, reasons = _holding(q, run)
    if isinstance(holding, Missing):
        return _cannot(grade, holding.why)
    grade.expected = " or ".join(holding) or "none"
    if not holding:
        return _cannot(grade, "no choice holds for this run: " + "; ".join(reasons))
    if answer is None:
        grade.status, grade.why = "unanswered", "no answer"
        return grade
    letter = str(answer).strip().lower()
    letters = [c for c, _ in q.choices]
    if letter not in letters:
        grade.status = "wrong"
        grade.why = f"{answer!r} is not one of the choices {', '.join(letters)}"
    elif letter not in holding:
        grade.status = "wrong"
        grade.why = f"you chose {letter}, your run says {grade.expected}" + (
            f" ({reasons[letters.index(letter)]})" if reasons[letters.index(letter)] else ""
        )
    return grade


def _holding(q: Question, run: labcheck.RunData) -> tuple[list[str] | Missing, list[str]]:
    """The letters that hold for the run, and per choice why (for the messages)."""
    holding: list[str] = []
    reasons: list[str] = []
    if q.term is not None:
        value = q.term.value(run)
        if isinstance(value, Missing):
            return Missing(f"{q.term.text}: {value.why}"), []
        for letter, choice in q.choices:
            if _same(value, choice):
                holding.append(letter)
            reasons.append(f"{q.term.text} is {labcheck._show(value)}")
        return holding, reasons
    for letter, assertion in q.choices:
        check = labcheck.check_assertion(assertion, run)
        if check.passed:
            holding.append(letter)
        reasons.append(check.detail or "; ".join(check.values))
    return holding, reasons


def _cannot(grade: Grade, why: str) -> Grade:
    grade.status, grade.why = "ungradable", f"the run cannot say: {why}"
    return grade


def run_scenario_file(run_dir: Path) -> str | None:
    """The file name of the scenario a run played (scenario.json's ``file``)."""
    try:
        data = json.loads((run_dir / "scenario.json").read_text())
    except (OSError, ValueError):
        return None
    file = data.get("file") if isinstance(data, Mapping) else None
    return Path(file).name if file else None


def load_run(run_dir: Path | str) -> labcheck.RunData:
    run_dir = Path(run_dir)
    summary = read_summary(run_dir / "summary.json")
    return labcheck.RunData(summary, labcheck.load_events(run_dir))


def grade(
    key: AnswerKey, answers: Mapping[str, Any], runs: Mapping[str, labcheck.RunData]
) -> list[Grade]:
    """Grade ``answers`` against the lab's runs (scenario file name -> run): each question
    against the run of its scenario; a question whose scenario has no run is skipped."""
    grades = []
    for qid, q in key.questions.items():
        run = runs.get(q.scenario)
        if run is None:
            if qid in answers:
                played = ", ".join(sorted(runs)) or "none"
                grades.append(
                    Grade(
                        qid,
                        "other-run",
                        answers[qid],
                        ask=q.ask,
                        why=f"about a run of {q.scenario} (given: {played})",
                    )
                )
            continue
        grades.append(grade_question(q, answers.get(qid), run))
    for qid in answers:
        if qid not in key.questions:
            grades.append(
                Grade(qid, "not-graded", answers[qid], why="graded by hand (SOLUTIONS.md)")
            )
    return grades


def grade_runs(
    key: AnswerKey, answers: Mapping[str, Any], run_dirs: list[Path | str]
) -> list[Grade]:
    """Grade against runs given by directory; each names its scenario in scenario.json."""
    runs: dict[str, labcheck.RunData] = {}
    for run_dir in run_dirs:
        played = run_scenario_file(Path(run_dir)) or labcheck.DEFAULT_TARGET
        if played in runs:
            raise AnswersError(f"two runs of {played}: give one")
        runs[played] = load_run(run_dir)
    return grade(key, answers, runs)


def find_lab(run_dir: Path, labs: Path = ROOT / "labs") -> Path:
    """The lab folder whose scenario a run played: scenario.json's file, or a scenario of
    ``labs`` with the run's scenario name."""
    try:
        data = json.loads((run_dir / "scenario.json").read_text())
    except (OSError, ValueError):
        data = {}
    file = data.get("file") if isinstance(data, Mapping) else None
    for base in (Path.cwd(), ROOT):
        if file and (base / file).parent.joinpath(KEY_FILE).exists():
            return (base / file).parent
    name = read_summary(run_dir / "summary.json").scenario
    for path in sorted(labs.glob("*/scenario*.yaml")):
        try:
            if (yaml.safe_load(path.read_text()) or {}).get("name") == name:
                return path.parent
        except yaml.YAMLError:
            continue
    raise AnswersError(f"{run_dir}: not a run of a lab with {KEY_FILE} (give --lab DIR)")


def report(grades: list[Grade]) -> tuple[list[str], int]:
    """Printable lines and the exit status."""
    lines = [str(g) for g in grades]
    counted = [g for g in grades if g.counts]
    right = sum(g.status == "right" for g in counted)
    if not counted:
        lines.append("no question of the key is about the run(s) given")
        return lines, 1
    lines.append(f"{right}/{len(counted)} answers right")
    return lines, 0 if right == len(counted) else 1


def main(argv: list[str] | None = None) -> int:
    """``testbed labcheck``: a lab's expected observations (README RUN_DIR), or a student's
    answers (--answers FILE RUN_DIR...)."""
    import argparse

    parser = argparse.ArgumentParser(prog="testbed labcheck", description=CLI_HELP)
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))


CLI_HELP = (
    "Check a run against a lab's expected observations (labcheck README RUN_DIR), or grade "
    "a student's answers file against the student's own runs (labcheck --answers FILE "
    "RUN_DIR [RUN_DIR...]; the lab's answers.yaml holds the keys)."
)


def add_arguments(p: Any) -> None:
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="README.md RUN_DIR, or with --answers: RUN_DIR... (a scenario's results "
        "directory means its newest run)",
    )
    p.add_argument("--scenario", default=None, help="README mode: which expected block")
    p.add_argument("--answers", metavar="FILE", help="grade this answers file (YAML: q1: 42)")
    p.add_argument("--lab", metavar="DIR", help="the lab folder (default: from the run)")
    p.add_argument("--key", metavar="FILE", help="the answer key (default: LAB/answers.yaml)")


def _run_dir(path: str) -> Path:
    """A run directory; a scenario's results directory means its newest run (``latest``)."""
    p = Path(path)
    if not (p / "summary.json").exists() and (p / "latest" / "summary.json").exists():
        return (p / "latest").resolve()
    return p


def run_cli(args: Any) -> int:
    import sys

    try:
        if args.answers is None:
            if len(args.paths) != 2:
                raise AnswersError("give README.md RUN_DIR (or --answers FILE RUN_DIR...)")
            readme, run_dir = args.paths[0], _run_dir(args.paths[1])
            target = args.scenario or run_scenario_file(run_dir) or labcheck.DEFAULT_TARGET
            checks = labcheck.check_run(readme, run_dir, target)
            for check in checks:
                print(check)
            failed = sum(not c.passed for c in checks)
            print(f"{len(checks) - failed}/{len(checks)} expected observations hold")
            return 1 if failed else 0
        run_dirs = [_run_dir(p) for p in args.paths]
        for run_dir in run_dirs:
            if not (run_dir / "summary.json").exists():
                raise AnswersError(f"{run_dir}: no summary.json (not a finished run)")
        if args.key:
            key_path = Path(args.key)
        else:
            lab = Path(args.lab) if args.lab else find_lab(run_dirs[0])
            key_path = lab / KEY_FILE
        key = load_key(key_path)
        grades = grade_runs(key, load_answers(args.answers), list(run_dirs))
    except (AnswersError, labcheck.LabCheckError, OSError, ValueError) as exc:
        print(f"testbed labcheck: {exc}", file=sys.stderr)
        return 2
    lines, status = report(grades)
    print(
        f"{key.lab}: answers in {args.answers}, graded against "
        + ", ".join(str(d) for d in run_dirs)
    )
    for line in lines:
        print(line)
    return status


def register(subparsers: Any) -> None:
    """Add ``labcheck`` to a ``testbed`` subparsers object."""
    p = subparsers.add_parser(
        "labcheck",
        help="check a run against a lab's expected observations, or grade answers",
        description=CLI_HELP,
    )
    add_arguments(p)
    p.set_defaults(func=run_cli)
