"""
Calling a submission's functions from the grader, and running graded tests on them.

A test receives `RemoteFunction`s: calling one sends the arguments to the child
(grader/sandbox.py), which calls the submission's function and sends back plain values.
The cache a forward returns stays in the child; the grader gets a plain copy of it, and
passing that copy back (e.g. to the backward) passes the child's own object. The
grader keeps its own copy of every argument it sent, so `Submission.modified_arguments`
can tell at the end of a test whether any call changed its inputs.

Time: each test may use `Limits.time_per_test` seconds of the child's time and the whole
submission `Limits.budget`; only waiting for the child's answers counts, not the grader's
own reference computations nor starting a child (which runs no submitted code).
"""
import copy
import time
from dataclasses import dataclass

import numpy as np

from grader import child as wire
from grader.sandbox import ChildLost

STARTUP_TIMEOUT = 60   # seconds for a new child to confine itself, even on a loaded machine


class StudentError(Exception):
    """A submitted function raised; carries the child's description of the exception."""

    def __init__(self, function, info):
        self.function = function
        self.type = str(info.get("type", "Exception"))
        self.message = str(info.get("message", ""))
        self.value_error = info.get("value_error") is True
        self.not_implemented = info.get("not_implemented") is True
        where = info.get("where")
        self.where = (f"{where[0]}:{where[1]}, in {where[2]}"
                      if isinstance(where, list) and len(where) == 3 else None)
        super().__init__(str(self))

    def __str__(self):
        place = f" ({self.where})" if self.where else ""
        if self.not_implemented:
            return f"{self.function}: not implemented (NotImplementedError{place})"
        return f"{self.function} raised {self.type}: {self.message}{place}"


class Unavailable(Exception):
    """A module or function of the submission that cannot be called (missing, broken)."""


@dataclass
class Call:
    id: int
    name: str
    args: tuple    # the grader's own copies, as sent
    kwargs: dict


class Submission:
    """The submission in one sandbox, as the tests see it."""

    def __init__(self, sandbox, present, limits):
        self.box, self.present, self.limits = sandbox, set(present), limits
        self.budget_left = limits.budget
        self.test_left = limits.time_per_test
        self.broken = {}            # module -> why it cannot be imported (kept for the run)
        self.imported, self.child = set(), None
        self.calls, self.refs, self.next_id = [], {}, 0
        self.running = None         # what the child is doing, for messages

    def start(self):
        """Start the child now, before the first test."""
        self._running_child()

    # --- tests
    def begin_test(self):
        self.test_left = min(self.limits.time_per_test, self.budget_left)
        self.calls, self.refs = [], {}

    def end_test(self):
        """Forget the test's values in the child; return (printed text, bytes dropped)."""
        if self.child is not None and self.child.alive() and self.calls:
            try:
                self._exchange({"op": "reset"}, (), "resetting")
            except ChildLost:
                pass
        return self.child.take_output() if self.child is not None else ("", 0)

    def function(self, module, name):
        return RemoteFunction(self, module, name)

    # --- the child
    def _running_child(self):
        # Starting a child runs only the grader's code (confinement, before any import of
        # the submission), so it is not charged to the submission's time.
        if self.child is None or not self.child.alive():
            self.imported.clear()
            self.child = self.box.running_child(STARTUP_TIMEOUT)
        return self.child

    def _timeout(self):
        left = min(self.test_left, self.budget_left)
        if left <= 0:
            raise ChildLost("the submission's time budget of %g s is used up"
                            % self.limits.budget if self.budget_left <= 0 else
                            "time limit of %g s per test exceeded" % self.limits.time_per_test)
        return left

    def _charge(self, seconds):
        self.test_left -= seconds
        self.budget_left -= seconds

    def _exchange(self, header, buffers, running):
        child = self._running_child()
        self.running = running
        started = time.monotonic()
        try:
            return child.exchange(header, buffers, self._timeout())
        except ChildLost as e:
            if str(e) == "time limit exceeded":
                e = ChildLost("the submission's time budget of %g s is used up" % self.limits.budget
                              if self.budget_left <= self.test_left else
                              "time limit of %g s per test exceeded" % self.limits.time_per_test)
            raise ChildLost(f"{e} (while {running}); the grader stopped the process") from None
        finally:
            self._charge(time.monotonic() - started)

    def ensure_module(self, module):
        if module not in self.present:
            raise Unavailable(f"{module}.py not found in the submission")
        if module in self.broken:
            raise Unavailable(self.broken[module])
        self._running_child()
        if module in self.imported:
            return
        try:
            reply, _ = self._exchange({"op": "import", "module": module}, (), f"importing {module}.py")
        except ChildLost as e:
            self.broken[module] = f"could not import {module}.py: {e}"
            raise Unavailable(self.broken[module]) from None
        if reply.get("ok") is not True:
            error = StudentError(f"importing {module}.py", reply.get("error") or {})
            self.broken[module] = f"could not import {module}.py: {error.type}: {error.message}" + (
                f" ({error.where})" if error.where else "")
            raise Unavailable(self.broken[module])
        self.imported.add(module)

    # --- calls
    def call(self, module, name, args, kwargs):
        self.ensure_module(module)
        buffers = []
        header = {"op": "call", "id": self.next_id, "module": module, "function": name,
                  "args": self._encode(tuple(args), buffers),
                  "kwargs": self._encode(dict(kwargs), buffers)}
        call = Call(self.next_id, name, copy.deepcopy(tuple(args)), copy.deepcopy(dict(kwargs)))
        self.next_id += 1
        reply, buffers = self._exchange(header, buffers, f"running {name}")
        if reply.get("missing") is True:
            raise Unavailable(f"{module}.py has no function {name}")
        self.calls.append(call)
        if reply.get("ok") is not True:
            raise StudentError(name, reply.get("error") if isinstance(reply.get("error"), dict) else {})
        try:
            value = wire.decode(reply.get("value"), buffers)
        except wire.ProtocolError as e:
            raise ChildLost(f"{name} returned something the grader cannot read ({e})") from None
        self._remember(value, call.id, [])
        return value

    def _encode(self, value, buffers):
        """Like wire.encode, but a value that came from the child goes back as a reference."""
        known = self.refs.get(id(value))
        if known is not None and known[0] is value:
            return {"ref": [known[1], known[2]]}
        if type(value) in (tuple, list):
            return {type(value).__name__: [self._encode(v, buffers) for v in value]}
        if type(value) is dict:
            return {"dict": [[k, self._encode(v, buffers)] for k, v in value.items()]}
        return wire.encode(value, buffers)

    def _remember(self, value, call_id, path):
        if isinstance(value, (np.ndarray, tuple, list, dict, wire.Opaque)) and len(path) < 4:
            self.refs[id(value)] = (value, call_id, path)
            items = value.items() if isinstance(value, dict) else (
                enumerate(value) if isinstance(value, (tuple, list)) else ())
            for key, item in items:
                if isinstance(key, (int, str)):
                    self._remember(item, call_id, path + [key])

    def argument_changes(self):
        """
        [(call, argument position or keyword, value sent, value now)] of every argument
        that a call of this test changed, as the child holds them now (end of the test).
        A call whose arguments the child does not send back in form is listed once with
        position None.
        """
        if not self.calls:
            return []
        reply, buffers = self._exchange({"op": "args", "ids": [c.id for c in self.calls]}, (),
                                        "reading back the arguments")
        try:
            received = wire.decode(reply.get("value"), buffers)
        except wire.ProtocolError as e:
            raise ChildLost(f"the child sent back arguments the grader cannot read ({e})") from None
        if not (isinstance(received, list) and len(received) == len(self.calls)):
            raise ChildLost("the child did not send back the arguments it received")
        changes = []
        for call, now in zip(self.calls, received):
            if not (isinstance(now, tuple) and len(now) == 2):
                changes.append((call, None, None, now))
                continue
            args, kwargs = now
            for position, sent in enumerate(call.args):
                value = args[position] if isinstance(args, tuple) and position < len(args) else None
                if not (isinstance(args, tuple) and position < len(args) and same(value, sent)):
                    changes.append((call, position, sent, value))
            for key, sent in call.kwargs.items():
                value = kwargs.get(key) if isinstance(kwargs, dict) else None
                if not (isinstance(kwargs, dict) and key in kwargs and same(value, sent)):
                    changes.append((call, key, sent, value))
        return changes

    def modified_arguments(self):
        """
        [(function name, argument name or position)] of every argument that a call of
        this test changed, as the child holds them now (end of the test).
        """
        return [(call.name, "its arguments" if where is None else where)
                for call, where, _, _ in self.argument_changes()]


class RemoteFunction:
    """A submitted function as a test calls it."""

    def __init__(self, submission, module, name):
        self.submission, self.module, self.name = submission, module, name

    def __call__(self, *args, **kwargs):
        return self.submission.call(self.module, self.name, args, kwargs)

    def __repr__(self):
        return f"<{self.module}.{self.name} of the submission>"


def same(a, b):
    """Exact equality of the plain values the child sends (NaN equals NaN)."""
    if isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype
                and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(b, dict):
        return isinstance(a, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in b)
    if isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and (a == b or (a != a and b != b))
