"""
What the grader prints and writes: the per-test lines, the total, Gradescope's
results.json (written atomically, after every test) and the batch CSV.

The submission's printed output only ever appears inside a test's output, indented and
with control characters escaped, so it cannot pass for the grader's own lines.
"""
import csv
import json
import re
from dataclasses import dataclass, field

from fileio import write_atomic

VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
PRINTED_SHOWN = 2000   # characters of a test's printed output shown in its result


@dataclass
class Result:
    name: str
    module: str
    score: int
    max_score: int
    status: str            # 'passed' or 'failed'
    output: str
    visibility: str = "visible"


@dataclass
class Grading:
    """All results of one submission, and how they were obtained."""
    target: str
    results: list = field(default_factory=list)
    seed: int = 0
    isolation: str = ""
    notes: list = field(default_factory=list)   # lines printed before the tests
    max_score: int = 0
    elapsed: float = 0.0

    @property
    def score(self):
        return sum(r.score for r in self.results)

    @property
    def passed(self):
        return bool(self.results) and all(r.status == "passed" for r in self.results)


def escape(text):
    """Control characters (escape sequences, carriage returns) shown, not obeyed."""
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]",
                  lambda m: repr(m.group())[1:-1], text)


def printed_section(text, dropped):
    """A test's captured output, cut to PRINTED_SHOWN characters, each line marked."""
    if not text and not dropped:
        return ""
    cut = max(0, len(text) - PRINTED_SHOWN) + dropped
    text = text[:PRINTED_SHOWN]
    lines = ["printed by the submission:"] + ["| " + line for line in escape(text).split("\n")]
    if cut:
        lines.append(f"| ... ({cut} more characters not shown)")
    return "\n".join(lines)


def total_line(grading):
    failed = sum(r.status == "failed" for r in grading.results)
    return (f"Total: {grading.score}/{grading.max_score}"
            + (f"  ({failed} of {len(grading.results)} tests failed)" if failed else ""))


def report_lines(grading, verbose=False):
    """The results as printed: one line per test, failure details indented below."""
    lines, module = list(grading.notes), None
    for r in grading.results:
        if r.module != module:
            module = r.module
            lines.append(f"{module}.py")
        lines.append(f"  {r.status[:4].upper()}  {r.name:<36} {r.score}/{r.max_score}")
        if r.output and (r.status == "failed" or verbose):
            lines += ["        " + escape(line) for line in r.output.split("\n")]
    return lines + [total_line(grading)]


def results_json(grading, final=True):
    """Gradescope's results.json contents."""
    return {
        "score": grading.score,
        "max_score": grading.max_score,
        "execution_time": round(grading.elapsed, 2),
        "output": "\n".join(grading.notes + [total_line(grading)]
                            + ([] if final else ["(grading still running or interrupted)"])),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {"seed": grading.seed, "isolation": grading.isolation,
                       "complete": final, "tests_graded": len(grading.results)},
        "tests": [{"name": r.name, "score": r.score, "max_score": r.max_score,
                   "status": r.status, "output": r.output, "visibility": r.visibility}
                  for r in grading.results],
    }


def write_results(path, grading, final=True):
    write_atomic(path, json.dumps(results_json(grading, final), indent=2, allow_nan=False))


def write_csv(path, rows):
    """rows: (student folder, score, max_score, failed test names, note)."""
    import io
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student", "score", "max_score", "failed_tests", "note"])
    for row in rows:
        writer.writerow(row)
    write_atomic(path, buffer.getvalue())
