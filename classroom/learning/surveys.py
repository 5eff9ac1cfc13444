"""需求调研: surveys of single-choice, multiple-choice and free-text questions,
sent to chosen learners through their personal links, one answer per
learner (editable until the survey closes), tallied and exported.

The questions are fixed when the survey is made (answers are kept as indexes
into them). Tallies and exports count only the answers of learners in the
caller's part of the tree, as every other learner list does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from classroom.access.roles import Scope
from classroom.catalog import MAX_NAME, Fields
from classroom.db import Database
from classroom.errors import Forbidden, Invalid, Missing, StateConflict

KINDS = ("single", "multiple", "text")
MAX_QUESTIONS = 60
MAX_CHOICES = 20
MAX_QUESTION_TEXT = 500
MAX_CHOICE_TEXT = 200
MAX_ANSWER_TEXT = 2000


def _questions(raw: object) -> list[dict[str, Any]]:
    """The questions of a new survey, checked (Invalid naming the first bad one)."""
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_QUESTIONS:
        raise Invalid({"questions": "error.survey_questions"})
    questions = []
    for number, question in enumerate(raw, start=1):
        bad = Invalid({f"question {number}": "error.survey_question"})
        if not isinstance(question, dict) or question.get("kind") not in KINDS:
            raise bad
        text = question.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_QUESTION_TEXT:
            raise bad
        choices = question.get("choices", [])
        if question["kind"] == "text":
            if choices:
                raise bad
        elif not isinstance(choices, list) or not 2 <= len(choices) <= MAX_CHOICES or any(
                not isinstance(c, str) or not c.strip() or len(c) > MAX_CHOICE_TEXT
                for c in choices) or len({c.strip() for c in choices}) != len(choices):
            raise bad
        questions.append({"kind": question["kind"], "text": text.strip(),
                          "choices": [c.strip() for c in choices]})
    return questions


def check_answers(questions: list[dict[str, Any]], raw: object) -> list[Any]:
    """One answer per question: a choice's index, a list of distinct indexes,
    a text, or null (not answered)."""
    if not isinstance(raw, list) or len(raw) != len(questions):
        raise Invalid({"answers": "error.survey_answers"})
    for number, (question, answer) in enumerate(zip(questions, raw, strict=True), start=1):
        if answer is None:
            continue
        count = len(question["choices"])
        kind = question["kind"]
        ok = (kind == "single" and isinstance(answer, int) and not isinstance(answer, bool)
              and 0 <= answer < count) or \
             (kind == "multiple" and isinstance(answer, list) and len(set(answer)) == len(answer)
              and all(isinstance(a, int) and not isinstance(a, bool) and 0 <= a < count
                      for a in answer)) or \
             (kind == "text" and isinstance(answer, str) and len(answer) <= MAX_ANSWER_TEXT)
        if not ok:
            raise Invalid({f"answer {number}": "error.survey_answer"})
    return [a.strip() if isinstance(a, str) else a for a in raw]


class Surveys:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    def _row(self, survey_id: int) -> dict[str, Any]:
        row = self.db.one("SELECT * FROM surveys WHERE id = ?", (survey_id,))
        if row is None:
            raise Missing("no such survey")
        row["questions"] = json.loads(row["questions"])
        return row

    def create(self, data: Mapping[str, Any]) -> dict[str, Any]:
        fields = Fields(data)
        fields.text("title", required=True, max_length=MAX_NAME)
        fields.reference("unit_id", lambda n: self.db.one(
            "SELECT 1 FROM units WHERE id = ?", (n,)) is not None)
        values = fields.check()
        questions = _questions(data.get("questions"))
        survey_id = self.db.execute(
            "INSERT INTO surveys (unit_id, title, questions, created_at) VALUES (?, ?, ?, ?)",
            (values.get("unit_id"), values["title"], json.dumps(questions, ensure_ascii=False),
             self._clock()))
        return self._row(survey_id)

    def surveys(self) -> list[dict[str, Any]]:
        rows = self.db.all("SELECT id FROM surveys ORDER BY id DESC")
        return [self._row(r["id"]) for r in rows]

    def close(self, survey_id: int) -> dict[str, Any]:
        self._row(survey_id)
        self.db.execute("UPDATE surveys SET state = 'closed', closed_at = ? "
                        "WHERE id = ? AND state = 'open'", (self._clock(), survey_id))
        return self._row(survey_id)

    def add_recipients(self, survey_id: int, learner_ids: list[int]) -> int:
        """Send the survey to learners (already chosen within the caller's scope)."""
        if self._row(survey_id)["state"] != "open":
            raise StateConflict("this survey is closed")
        count = "SELECT COUNT(*) AS n FROM survey_recipients WHERE survey_id = ?"
        with self.db.transaction():
            before = self.db.one(count, (survey_id,))
            for learner_id in learner_ids:
                self.db.execute("INSERT OR IGNORE INTO survey_recipients (survey_id, learner_id) "
                                "VALUES (?, ?)", (survey_id, learner_id))
            after = self.db.one(count, (survey_id,))
        assert before is not None and after is not None
        return int(after["n"]) - int(before["n"])

    # ------------------------------------------------------------ learners

    def for_learner(self, learner_id: int) -> list[dict[str, Any]]:
        """The surveys sent to a learner, each with its own answers (or None)."""
        rows = self.db.all(
            "SELECT s.id, a.answers FROM survey_recipients r JOIN surveys s ON s.id = r.survey_id"
            " LEFT JOIN survey_answers a ON a.survey_id = s.id AND a.learner_id = r.learner_id"
            " WHERE r.learner_id = ? ORDER BY s.id", (learner_id,))
        found = []
        for row in rows:
            survey = self._row(row["id"])
            found.append({k: survey[k] for k in ("id", "title", "unit_id", "questions", "state")}
                         | {"answers": json.loads(row["answers"]) if row["answers"] else None})
        return found

    def answer(self, learner_id: int, survey_id: int, raw: object) -> list[Any]:
        survey = self._row(survey_id)
        if self.db.one("SELECT 1 FROM survey_recipients WHERE survey_id = ? AND learner_id = ?",
                       (survey_id, learner_id)) is None:
            raise Forbidden("this survey was not sent to this learner")
        answers = check_answers(survey["questions"], raw)
        if survey["state"] != "open":
            raise StateConflict("this survey is closed")
        self.db.execute(
            "INSERT INTO survey_answers (survey_id, learner_id, answers, answered_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (survey_id, learner_id) DO UPDATE SET "
            "answers = excluded.answers, answered_at = excluded.answered_at",
            (survey_id, learner_id, json.dumps(answers, ensure_ascii=False), self._clock()))
        return answers

    # ------------------------------------------------------------ results

    def answers(self, survey_id: int, scope: Scope) -> list[dict[str, Any]]:
        """Every answer of a learner in ``scope``, with who gave it."""
        self._row(survey_id)
        rows = self.db.all(
            "SELECT a.learner_id, l.name, l.org_node_id, a.answers, a.answered_at "
            "FROM survey_answers a JOIN learners l ON l.id = a.learner_id "
            "WHERE a.survey_id = ? ORDER BY l.org_node_id, l.name", (survey_id,))
        return [r | {"answers": json.loads(r["answers"])} for r in rows
                if scope.covers(r["org_node_id"])]

    def results(self, survey_id: int, scope: Scope) -> dict[str, Any]:
        """The survey with, per question, the count of each choice (or of
        text answers), over the answers of learners in ``scope``."""
        survey = self._row(survey_id)
        answers = self.answers(survey_id, scope)
        recipients = [r for r in self.db.all(
            "SELECT l.org_node_id FROM survey_recipients r JOIN learners l ON l.id = r.learner_id"
            " WHERE r.survey_id = ?", (survey_id,)) if scope.covers(r["org_node_id"])]
        tallies = []
        for index, question in enumerate(survey["questions"]):
            given = [a["answers"][index] for a in answers if a["answers"][index] is not None]
            if question["kind"] == "text":
                tallies.append({"answered": len(given), "counts": [],
                                "texts": [str(t) for t in given if t]})
                continue
            counts = [0] * len(question["choices"])
            for answer in given:
                for choice in (answer if isinstance(answer, list) else [answer]):
                    counts[choice] += 1
            tallies.append({"answered": len(given), "counts": counts, "texts": []})
        return {k: survey[k] for k in ("id", "title", "unit_id", "questions", "state",
                                       "created_at", "closed_at")} | {
            "recipients": len(recipients), "answered": len(answers), "tallies": tallies}
