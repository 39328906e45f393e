"""
What the grader prints and writes: the per-test lines, the total, Gradescope's
results.json (written atomically, after every test) and the batch CSV.

The submission's printed output only ever appears inside a test's output, indented and
with control characters escaped, so it cannot pass for the grader's own lines.
"""
import csv
import json
import re
import time
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

    def __post_init__(self):
        # the one place every result passes: whatever the output holds (a message of the
        # submission's, a value it returned, what it printed) reaches stdout, results.json
        # and the CSV escaped and bounded
        self.output = shown(self.output, OUTPUT_SHOWN, lines=True)


@dataclass
class Grading:
    """All results of one submission, and how they were obtained."""
    target: str
    results: list = field(default_factory=list)
    seed: int = 0
    isolation: str = ""
    isolation_level: dict = field(default_factory=dict)   # Isolation.summary(): level, full, note
    notes: list = field(default_factory=list)   # lines printed before the tests
    max_score: int = 0
    elapsed: float = 0.0
    problems: list = field(default_factory=list)   # why points were lost wholesale (batch CSV)
    paths: list = field(default_factory=list)      # [(server path, neutral name)] (`neutral`)

    def neutral(self, text):
        """`text` with the server's paths (the grader's folder, the sandbox's, the
        submission's) replaced by neutral names, for what students see."""
        for path, name in sorted(self.paths, key=lambda pair: -len(pair[0])):
            if path and len(path) > 1:
                text = text.replace(path.rstrip("/") + "/", name + "/" if name else "")
                text = text.replace(path.rstrip("/"), name or ".")
        return text

    @property
    def score(self):
        return sum(r.score for r in self.results)

    @property
    def passed(self):
        return bool(self.results) and all(r.status == "passed" for r in self.results)


# What the reader is shown escaped rather than obeyed: control characters (escape
# sequences, carriage returns, NUL), line and bidi separators, and lone surrogates (a
# non-UTF-8 byte decoded with surrogateescape; printing one would crash). Newlines and tabs
# are kept by `escape` (a test's output has lines), escaped too by `one_line`.
_UNSAFE = r"\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_ESCAPED = re.compile(f"[{_UNSAFE}]")
_ESCAPED_LINE = re.compile(f"[{_UNSAFE}\n]")

# Bounds the grader owns (the child's MAX_TEXT is the submission's to change): characters of
# text the submission controls, as shown, escapes included.
MESSAGE_SHOWN = 1000    # an exception's message
NAME_SHOWN = 200        # a type, file, function or folder name
OUTPUT_SHOWN = 8000     # a test's whole output (message, notes, printed section)


def _escaped(character):
    code = ord(character)
    if character in "\n\r":
        return "\\n" if character == "\n" else "\\r"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text):
    """Text shown, not obeyed: each unsafe character (see _UNSAFE) as \\xNN or \\uNNNN.
    Idempotent (a backslash is kept as it is), so applying it again changes nothing."""
    return _ESCAPED.sub(lambda m: _escaped(m.group()), str(text))


def one_line(text):
    """Like escape, and a newline shown as \\n: one line that cannot forge another."""
    return _ESCAPED_LINE.sub(lambda m: _escaped(m.group()), str(text))


def shown(text, limit, lines=False):
    """
    Text the submission controls as the grader shows it anywhere (stdout, results.json,
    CSV, logs): escaped (`escape`, or `one_line` unless `lines`) and cut to `limit`
    characters (escapes included, never split), a cut marked with how much was left out.
    """
    text = str(text)
    head = text[:limit]
    safe = (escape if lines else one_line)(head)
    if len(safe) <= limit and len(head) == len(text):
        return safe
    room = max(0, limit - 40)   # leave room for the marker
    kept, used = 0, 0
    for character in head:
        width = len(_escaped(character)) if (
            _ESCAPED_LINE if not lines else _ESCAPED).match(character) else 1
        if used + width > room:
            break
        kept, used = kept + 1, used + width
    return (escape if lines else one_line)(text[:kept]) + f"... ({len(text) - kept} more characters)"


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
    lines, module = [escape(note) for note in grading.notes], None
    for r in grading.results:
        if r.module != module:
            module = r.module
            lines.append(f"{module}.py")
        lines.append(f"  {r.status[:4].upper()}  {r.name:<36} {r.score}/{r.max_score}")
        if r.output and (r.status == "failed" or verbose):
            lines += ["        " + escape(line) for line in r.output.split("\n")]
    return lines + [total_line(grading)]


def visible_total_line(grading):
    """
    The total as students may see it before the due date: Gradescope shows results.json's
    "output" at once, so it counts only the tests of visibility 'visible'; the points of
    the others are only counted as available (their scores stay unsaid).
    """
    later = [r for r in grading.results if r.visibility != "visible"]
    if not later:
        return total_line(grading)
    shown_now = [r for r in grading.results if r.visibility == "visible"]
    failed = sum(r.status == "failed" for r in shown_now)
    return (f"Total of the tests shown now: {sum(r.score for r in shown_now)}/"
            f"{sum(r.max_score for r in shown_now)}"
            + (f"  ({failed} of {len(shown_now)} tests failed)" if failed else "")
            + f"; {sum(r.max_score for r in later)} more points in {len(later)} tests shown "
              f"later (after the due date or when grades are published)")


def results_json(grading, final=True):
    """Gradescope's results.json contents (see README, "Hidden tests", for what students see)."""
    return {
        "score": grading.score,
        "max_score": grading.max_score,
        "execution_time": round(grading.elapsed, 2),
        "output": "\n".join([shown(grading.neutral(note), OUTPUT_SHOWN, lines=True)
                             for note in grading.notes] + [visible_total_line(grading)]
                            + ([] if final else ["(grading still running or interrupted)"])),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {"seed": grading.seed, "isolation": grading.isolation,
                       "isolation_level": grading.isolation_level,
                       "complete": final, "tests_graded": len(grading.results),
                       "problems": [shown(p, MESSAGE_SHOWN) for p in grading.problems]},
        "tests": [{"name": r.name, "score": r.score, "max_score": r.max_score,
                   "status": r.status, "output": r.output, "visibility": r.visibility}
                  for r in grading.results],
    }


def write_results(path, grading, final=True):
    write_atomic(path, json.dumps(results_json(grading, final), indent=2, allow_nan=False))


WRITE_INTERVAL = 1.0   # seconds at least between two partial writes of results.json
WRITE_SHARE = 0.05     # and at most this share of the run's time spent writing


class ResultsWriter:
    """
    Writes results.json during a run without rewriting it whole after every test (which
    costs time quadratic in the number of tests): a partial write (complete: false) only
    once WRITE_INTERVAL s have passed since the last one and at most WRITE_SHARE of the
    time, so a killed run loses at most the last seconds; the final write always.
    """

    def __init__(self, path):
        self.path, self.next_write, self.writes = path, 0.0, 0

    def __call__(self, grading, final):
        started = time.monotonic()
        if not final and started < self.next_write:
            return False
        write_results(self.path, grading, final)
        cost = time.monotonic() - started
        self.next_write = time.monotonic() + max(WRITE_INTERVAL, cost / WRITE_SHARE)
        self.writes += 1
        return True


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A CSV cell a spreadsheet shows as text: escaped, one line, bounded, and a text cell
    that a spreadsheet would take for a formula quoted with ' (OWASP CSV injection)."""
    if isinstance(value, (int, float)) or value is None:
        return "" if value is None else value
    text = shown(value, MESSAGE_SHOWN)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_csv(path, rows):
    """rows: (student folder, score, max_score, failed test names, note)."""
    import io
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student", "score", "max_score", "failed_tests", "note"])
    for row in rows:
        writer.writerow([csv_cell(cell) for cell in row])
    write_atomic(path, buffer.getvalue())
