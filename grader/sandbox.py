"""
Where submitted code runs: a child process the grader starts, limits from outside and
kills, with nothing of the grader's in it.

- The child is `python -I -c <grader/child.py>`; it confines itself before importing
  the submission (grader/child.py: `confine`) and then answers requests over two pipes.
  While it runs a request on a trusted view it may send callbacks, which `Child.exchange`
  answers through the caller's `on_callback` within the request's deadline; a callback
  at any other time ends the child as a protocol violation.
  Its stdout and stderr go to a third pipe that the parent reads into a bounded buffer.
- Limits: the parent waits for every answer with a deadline and kills the child when it
  passes (a C call that never returns cannot escape that); in the child, RLIMIT_AS bounds
  memory, RLIMIT_NPROC processes, RLIMIT_CPU the CPU time, RLIMIT_FSIZE written files.
- Nothing outlives the submission: the parent is a child subreaper (orphans of the child
  come back to it rather than to init), and `Child.stop` kills the child's whole process
  tree, then every process that became the parent's orphan, then (as root) every process
  of the sandbox user, and reaps them all.
- As root, the child runs as an unused uid in private mount and network namespaces
  whose root holds only read-only system and Python directories and the submission's copy;
  without namespaces (a container without CAP_SYS_ADMIN), as that uid under a Landlock
  file-access allowlist when the kernel has Landlock. Not as root: the same user as the
  grader, under Landlock when available (see `Isolation.describe`).
"""
import hashlib
import json
import os
import pwd
import select
import shutil
import signal
import site
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass

from grader import child as wire

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD_SOURCE_PATH = os.path.join(HERE, "child.py")
SANDBOX_UID_BASE = 60900   # sandbox users: SANDBOX_UID_BASE + 8 * slot + k, unused uids
MAX_FILES, MAX_BYTES = 1000, 50 << 20   # what a submission folder may hold


@dataclass
class Limits:
    """Limits of one submission's grading; the defaults are the command line's."""
    time_per_test: float = 10.0     # seconds the child may take per test
    budget: float = 120.0           # seconds of child time for the whole submission
    memory: int = 2 << 30           # bytes of address space (RLIMIT_AS)
    processes: int = 32             # processes and threads of the sandbox user (RLIMIT_NPROC)
    output: int = 64 << 10          # bytes of printed output kept per test
    file_size: int = 64 << 20       # largest file the child may write (RLIMIT_FSIZE)


class ChildLost(Exception):
    """The child died, ran out of time or broke the protocol; the message says which."""


class SubmissionError(Exception):
    """The submission folder cannot be graded as it is (too large, unreadable)."""


# ------------------------------------------------------------------------ the submission

def copy_submission(source, destination, only_files=None):
    """
    Copy the regular files of `source` into `destination`: no symbolic links (they could
    point at the grader's files), no bytecode (what runs must be the source that was
    submitted); with `only_files`, just those top-level files. Returns the sha256 of the
    copied files' names and contents.
    """
    digest, files, size = hashlib.sha256(), 0, 0
    for folder, subfolders, names in os.walk(source):
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__" and only_files is None
                               and not os.path.islink(os.path.join(folder, d)))
        for name in sorted(names):
            path = os.path.join(folder, name)
            if os.path.islink(path) or not os.path.isfile(path) or name.endswith((".pyc", ".pyo")):
                continue
            if only_files is not None and name not in only_files:
                continue
            files += 1
            size += os.path.getsize(path)
            if files > MAX_FILES or size > MAX_BYTES:
                raise SubmissionError(f"the submission holds more than {MAX_FILES} files or "
                                      f"{MAX_BYTES >> 20} MiB; submit only the source files")
            relative = os.path.relpath(path, source)
            target = os.path.join(destination, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(path, "rb") as f:
                data = f.read()
            with open(target, "wb") as f:
                f.write(data)
            digest.update(relative.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


# ------------------------------------------------------------------------- isolation plan

def _free_sandbox_uid(slot):
    """An uid that no account and no running process uses, for one sandbox at a time."""
    used = {int(line.split()[1]) for pid in _pids() for line in _status_lines(pid, "Uid:")}
    for uid in range(SANDBOX_UID_BASE + 8 * slot, SANDBOX_UID_BASE + 8 * slot + 8):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            if uid not in used:
                return uid
    raise RuntimeError(f"no free sandbox uid in slot {slot}")


def _outermost(paths):
    """Existing paths, dropping those inside another one of them."""
    kept = []
    for path in sorted(set(paths), key=len):
        if os.path.lexists(path) and not any(path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


def python_directories():
    """The directories an isolated (-I) Python of ours reads: system and installation."""
    paths = ["/usr", "/bin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"]
    paths += [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    paths += [p for k, p in sysconfig.get_paths().items() if k in ("stdlib", "platstdlib", "purelib", "platlib")]
    paths += site.getsitepackages()
    paths.append(os.path.dirname(os.path.dirname(os.path.realpath(wire.np.__file__))))
    # top-level links such as /lib -> usr/lib are recreated as links in the private root
    real = [p if os.path.dirname(p) == "/" and os.path.islink(p) else os.path.realpath(p)
            for p in paths]
    return _outermost(real)


@dataclass
class Isolation:
    """How a child is confined; `privileged` means the grader runs as root."""
    privileged: bool
    uid: int = None
    gid: int = None
    private_root: bool = False
    landlock: int = 0
    note: str = ""

    def describe(self):
        """One paragraph for the grader's output and results.json."""
        if self.privileged and self.private_root:
            return (f"isolation: the submission ran as uid {self.uid} in a separate process "
                    "with private mount and network namespaces: it saw only the system and "
                    "Python directories (read-only) and its own copy of the submitted files.")
        if self.privileged:
            how = (f"under a Landlock allowlist (ABI {self.landlock}): read-only system and "
                   "Python directories, its own copy of the submitted files"
                   if self.landlock else
                   "with only file permissions between it and files other users can read")
            return (f"isolation: the submission ran as uid {self.uid} in a separate process, "
                    f"{how}. No private namespaces ({self.note or 'unavailable'}).")
        if self.landlock:
            return ("isolation WEAKER: not run as root, so the submission ran as the grader's "
                    "own user. A Landlock allowlist (ABI %d) let it read only the system and "
                    "Python directories and write only its copy of the files, open no TCP "
                    "connection and signal no other process; the limits and the clean-up "
                    "still hold, but a kernel without Landlock would let it read and write "
                    "whatever this user can. Run as root (as Gradescope does) for full "
                    "isolation." % self.landlock)
        return ("isolation WEAKER: not run as root and no Landlock in this kernel, so the "
                "submission ran as the grader's own user: it could read (and change) every "
                "file this user can, including the grader's references and other "
                "students' files. Its limits and clean-up still hold. Do not trust grades "
                "from this mode for hostile submissions: run as root (as Gradescope does).")


def plan_isolation(slot=0, same_user=False):
    """The isolation this process can give: root drops to a sandbox uid unless same_user."""
    if os.geteuid() == 0 and not same_user:
        uid = _free_sandbox_uid(slot)
        return Isolation(True, uid, uid)
    return Isolation(False)


# ------------------------------------------------------------------------- processes

def _pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _status_lines(pid, prefix):
    try:
        with open(f"/proc/{pid}/status") as f:
            return [line for line in f if line.startswith(prefix)]
    except OSError:
        return []


def _parents():
    """{pid: parent pid} of every process."""
    parents = {}
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            parents[pid] = int(fields[1])
        except (OSError, IndexError, ValueError):
            pass
    return parents


def _become_subreaper():
    import ctypes
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER


def _kill_uid(uid):
    """SIGKILL every process of `uid` (kill(-1) from a process that has become that uid)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


# ------------------------------------------------------------------------- the child

class Child:
    """
    One child process running a submission's copy. `exchange` sends a request and waits
    for the answer up to a deadline (answering the child's callbacks meanwhile, if the
    caller accepts them); `take_output` returns what the child printed since
    the last call; `stop` ends it and everything it started.
    """

    def __init__(self, workdir, new_root, isolation, limits, hidden=()):
        self.workdir, self.new_root, self.hidden = workdir, new_root, list(hidden)
        self.isolation, self.limits = isolation, limits
        self.process = None
        self.output, self.output_dropped = bytearray(), 0

    # --- start
    def start(self, timeout):
        """Start the child and wait (up to `timeout` s) for it to confine itself."""
        _become_subreaper()
        requests_r, self.requests = os.pipe()
        self.replies, replies_w = os.pipe()
        output_r, output_w = os.pipe()
        limits = self.limits
        iso = self.isolation
        chrooted = iso.privileged
        config = {
            "workdir": self.workdir, "new_root": self.new_root if chrooted else None,
            "read_only": python_directories(),
            "devices": ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"],
            "hidden": self.hidden,
            "uid": iso.uid, "gid": iso.gid, "parent": os.getpid(),
            "requests_fd": requests_r, "replies_fd": replies_w,
            "limits": {"RLIMIT_AS": limits.memory, "RLIMIT_NPROC": self._process_limit(),
                       "RLIMIT_CPU": int(limits.budget) + 5, "RLIMIT_FSIZE": limits.file_size,
                       "RLIMIT_CORE": 0, "RLIMIT_NOFILE": 256},
        }
        home = "/sandbox" if chrooted else self.workdir
        environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home,
                       "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                       "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
        with open(CHILD_SOURCE_PATH) as f:
            source = f.read()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", source, json.dumps(config)],
                stdin=subprocess.DEVNULL, stdout=output_w, stderr=output_w, env=environment,
                pass_fds=(requests_r, replies_w), start_new_session=True, cwd=self.workdir)
        finally:
            for fd in (requests_r, replies_w, output_w):
                os.close(fd)
        self.stdout = output_r
        for fd in (self.replies, self.stdout):
            os.set_blocking(fd, False)
        try:
            ready, _ = self.exchange(None, (), timeout)
        except ChildLost as e:
            printed, _ = self.take_output()
            raise ChildLost(f"the grader could not start its child process ({e}):\n"
                            f"{printed[-2000:]}") from None
        if not ready.get("ready"):
            raise ChildLost("the child did not start properly")
        iso.private_root = bool(ready.get("private_root"))
        iso.landlock = int(ready.get("landlock") or 0)
        iso.note = str(ready.get("private_root_error") or "")[:200]

    def _process_limit(self):
        if self.isolation.uid is not None:   # a fresh uid: count only the sandbox's processes
            return int(self.limits.processes)
        mine = sum(1 for pid in _pids() for line in _status_lines(pid, "Uid:")
                   if int(line.split()[1]) == os.getuid())
        return mine + int(self.limits.processes)   # RLIMIT_NPROC counts all of this user's

    # --- talk
    def exchange(self, header, buffers, timeout, on_callback=None):
        """
        Send `header` (None: send nothing) and wait up to `timeout` s for one answer.
        Returns (header, buffers) of the answer; raises ChildLost (the child is then
        stopped) if it dies, takes too long or sends something malformed.

        A message with an "op" is a request of the child's, not an answer: a callback
        ("op": "callback", see grader/child.py) is answered with
        `on_callback(header, buffers) -> (answer header, answer buffers)`, within the same
        deadline, after which the wait goes on; without `on_callback`, and for any other
        op, the message is a protocol violation.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            if header is not None:
                self._send(wire.pack(header, buffers), deadline)
            while True:
                size = struct.unpack("<Q", self._receive(8, deadline))[0]
                if size > wire.MAX_MESSAGE:
                    raise ChildLost(f"the child sent a message of {size} bytes, more than the "
                                    f"{wire.MAX_MESSAGE >> 20} MiB allowed")
                message, message_buffers = wire.unpack(self._receive(size, deadline))
                if "op" not in message:
                    return message, message_buffers
                if message.get("op") != "callback" or on_callback is None:
                    raise wire.ProtocolError(
                        f"it sent a request (op {str(message.get('op'))[:40]!r}) while the "
                        f"grader accepted none")
                answer, answer_buffers = on_callback(message, message_buffers)
                self._send(wire.pack(answer, answer_buffers), deadline)
        except wire.ProtocolError as e:
            self.stop()
            raise ChildLost(f"the child broke the grader's protocol ({e})") from None
        except ChildLost:
            self.stop()
            raise

    def _send(self, data, deadline):
        view = memoryview(data)
        while view:
            self._wait(select.POLLOUT, self.requests, deadline)
            try:
                view = view[os.write(self.requests, view):]
            except BrokenPipeError:
                raise ChildLost(self._ended()) from None

    def _receive(self, size, deadline):
        chunks = []
        while size:
            self._wait(select.POLLIN, self.replies, deadline)
            try:
                chunk = os.read(self.replies, min(size, 1 << 20))
            except BlockingIOError:
                continue
            if not chunk:
                raise ChildLost(self._ended())
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _wait(self, event, fd, deadline):
        """Wait until `fd` is ready for `event`, draining the child's output meanwhile."""
        poller = select.poll()
        poller.register(fd, event)
        poller.register(self.stdout, select.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildLost("time limit exceeded")
            ready = dict(poller.poll(left * 1000))
            if self.stdout in ready and self._drain() == "closed":
                poller.unregister(self.stdout)
            if fd in ready:
                return

    def _drain(self):
        """Read what the child printed: 'more' (read some), 'empty' or 'closed'."""
        try:
            data = os.read(self.stdout, 1 << 16)
        except BlockingIOError:
            return "empty"
        except OSError:
            return "closed"
        if not data:
            return "closed"
        room = max(0, self.limits.output - len(self.output))
        self.output += data[:room]
        self.output_dropped += len(data) - len(data[:room])
        return "more"

    def _ended(self):
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "the child closed its pipe"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else -code
            reason = {"SIGKILL": " (killed: memory or CPU limit, or by itself)",
                      "SIGXCPU": " (CPU time limit)"}.get(str(name), "")
            return f"the child process was killed by {name}{reason}"
        return f"the child process exited with code {code}"

    def take_output(self):
        """What the child printed since the last call, as text, and how much was cut."""
        while self.process is not None and self._drain() == "more":
            pass
        text, dropped = self.output.decode("utf-8", "replace"), self.output_dropped
        self.output, self.output_dropped = bytearray(), 0
        return text, dropped

    # --- stop
    def alive(self):
        return self.process is not None and self.process.poll() is None

    def stop(self):
        """Kill the child and every process it started, and reap them."""
        if self.process is None:
            return
        for _ in range(100):
            parents = _parents()
            me, tree, frontier = os.getpid(), set(), {self.process.pid}
            while frontier:
                tree |= frontier
                frontier = {p for p, pp in parents.items() if pp in frontier} - tree
            # the grader starts no other processes while a child runs, so every other
            # process whose parent is the grader is an orphan of the submission's
            orphans = {p for p, pp in parents.items() if pp == me and p != self.process.pid}
            victims = {p for p in tree | orphans if p in parents}
            if self.process.poll() is not None:
                victims.discard(self.process.pid)
            if self.isolation.uid is not None:
                _kill_uid(self.isolation.uid)
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for pid in orphans:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if not victims:
                break
        self.take_output()
        for fd in (self.requests, self.replies, self.stdout):
            try:
                os.close(fd)
            except OSError:
                pass
        self.process = None


# ------------------------------------------------------------------------- the folder

class Sandbox:
    """
    The temporary folder of one submission and the child that runs it (restarted after
    it dies). Use as a context manager: on exit, every process is killed and the folder
    removed.
    """

    def __init__(self, source, limits, isolation, hidden=(), only_files=None):
        self.limits, self.isolation = limits, isolation
        self.base = tempfile.mkdtemp(prefix="handgrad-grading-")
        self.workdir = os.path.join(self.base, "submission")
        self.new_root = os.path.join(self.base, "root")
        os.mkdir(self.workdir, 0o700)
        os.mkdir(self.new_root, 0o700)
        try:
            self.digest = copy_submission(source, self.workdir, only_files)
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise
        self.seed = int(self.digest[:15], 16)   # the default seed of the random inputs
        self.files = sorted(os.path.relpath(os.path.join(d, n), self.workdir)
                            for d, _, names in os.walk(self.workdir) for n in names)
        self.hidden = sorted({os.path.realpath(p) for p in hidden})
        if isolation.uid is not None:
            os.chmod(self.base, 0o711)   # the sandbox user may pass through, not list
            for folder, _, names in os.walk(self.workdir):
                os.chown(folder, isolation.uid, isolation.gid)
                for name in names:
                    os.chown(os.path.join(folder, name), isolation.uid, isolation.gid)
        self.child = None

    def running_child(self, timeout):
        """The live child, started anew if there is none."""
        if self.child is None or not self.child.alive():
            if self.child is not None:
                self.child.stop()
            self.child = Child(self.workdir, self.new_root, self.isolation, self.limits,
                               self.hidden)
            self.child.start(timeout)
        return self.child

    def stop_child(self):
        if self.child is not None:
            self.child.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_child()
        if self.isolation.uid is not None:
            _kill_uid(self.isolation.uid)
        shutil.rmtree(self.base, ignore_errors=True)
