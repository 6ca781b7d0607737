"""The instructions MedGemma gets for the patient summary and for a question about the chart.
Changing a prompt changes its version, which is recorded with every result written from it."""

from __future__ import annotations

from plugin.pipelines.summary.digest import Digest

SUMMARY_PROMPT_VERSION = "summary-prompt-1"
ANSWER_PROMPT_VERSION = "ask-prompt-1"

_RULES = """Rules:
- Use only the chart lines below. Each line starts with its id (L1, L2, ...) and the FHIR
  resources it was read from.
- Every sentence cites the ids of the lines it rests on. Copy numbers, units and dates exactly as
  the lines give them; do not compute new ones.
- Lines marked [chartlight AI result ...] are preliminary machine output: say so if you use them.
- Answer with JSON only: a list of objects {"problem": "...", "text": "one sentence",
  "cites": ["L1", ...]}."""


def summary_prompt(digest: Digest) -> str:
    return ("You are writing a problem-oriented summary of a patient's chart for their clinician. "
            "Group sentences by problem (active problems first, then medications and allergies, "
            "then recent results).\n" + _RULES + "\n\nChart lines:\n" + digest.text)


def question_prompt(digest: Digest, question: str) -> str:
    return ("A clinician asks a question about this patient's chart. Answer it in a few sentences "
            "from the chart lines only; if the chart does not say, answer with one sentence saying "
            "so and cite nothing else. Use \"problem\": \"Answer\".\n" + _RULES
            + "\n\nChart lines:\n" + digest.text + "\nQuestion: " + " ".join(question.split()))
