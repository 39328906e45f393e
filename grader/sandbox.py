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
import fcntl
import hashlib
import importlib.util
import json
import os
import pwd
import select
import shutil
import signal
import stat
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
SANDBOX_UID_BASE = 60900   # sandbox users: SANDBOX_UID_BASE + k, unused uids; a slot starts at k = 8 * slot
SANDBOX_UIDS = 256         # uids SANDBOX_UID_BASE .. + 255, each reserved by one grader at a time
LOCK_DIRECTORIES = ("/run/handgrad", "/var/lock/handgrad")   # root-owned: the uid reservations
WEAKEN_VARIABLE = "HANDGRAD_WEAKEN_ISOLATION"   # tests: "no-namespaces", "no-landlock" (weaker only)
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

EXTENSION_SUFFIXES = (".so", ".pyd", ".dylib")   # compiled modules (with ABI tags: *.cpython-311-...so)


def _utf8(name):
    """Whether a name os.walk gave (surrogateescape'd bytes) is valid UTF-8."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _not_copied(source, folder, name, graded, is_dir):
    """Why `name` in `folder` is not copied (None: it is): what could run instead of, or
    shadow, the submitted source of a graded module."""
    path = os.path.join(folder, name)
    if not _utf8(name):   # later steps (the digest, notes, the child) need text names
        return "a name that is not UTF-8"
    if os.path.islink(path):
        return "a symbolic link, never followed"
    if is_dir:
        if name == "__pycache__":
            return "bytecode"
        if folder == source and name in graded:
            return f"a folder named like the graded module {name}.py"
        return None
    if not os.path.isfile(path):
        return "not a regular file"
    if name.endswith((".pyc", ".pyo")):
        return "bytecode"
    if name.endswith(EXTENSION_SUFFIXES):
        return "a compiled module"
    return None


def copy_submission(source, destination, only_files=None, graded=(), ignored=None):
    """
    Copy the regular files of `source` into `destination`: no symbolic links (they could
    point at the grader's files), no bytecode and no compiled modules (what runs must be
    the source that was submitted), no top-level folder named like a graded module
    (`graded`: module names; a package `layers/` would be imported instead of layers.py);
    with `only_files`, just those top-level files. Appends (relative path, reason) of what
    it left out to `ignored`. Returns the sha256 of the copied files' names and contents.
    """
    digest, files, size = hashlib.sha256(), 0, 0
    ignored = [] if ignored is None else ignored
    for folder, subfolders, names in os.walk(source):
        kept = []
        for d in sorted(subfolders):
            why = None if only_files is None else "outside the graded files"
            why = why or _not_copied(source, folder, d, graded, True)
            if why and only_files is None:
                ignored.append((os.path.relpath(os.path.join(folder, d), source) + "/", why))
            if not why:
                kept.append(d)
        subfolders[:] = kept
        for name in sorted(names):
            path = os.path.join(folder, name)
            if only_files is not None and name not in only_files:
                continue
            why = _not_copied(source, folder, name, graded, False)
            if why:
                ignored.append((os.path.relpath(path, source), why))
                continue
            files += 1
            size += os.path.getsize(path)
            if files > MAX_FILES or size > MAX_BYTES:
                raise SubmissionError(f"the submission holds more than {MAX_FILES} files or "
                                      f"{MAX_BYTES >> 20} MiB; submit only the source files")
            relative = os.path.relpath(path, source)
            target = os.path.join(destination, relative)
            try:   # e.g. a path that is too long in the sandbox (PATH_MAX): left out, said so
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(path, "rb") as f:
                    data = f.read()
                with open(target, "wb") as f:
                    f.write(data)
            except OSError as e:
                ignored.append((relative, f"could not be copied: {e.strerror or type(e).__name__}"))
                continue
            digest.update(relative.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


# ------------------------------------------------------------------------- isolation plan

def _lock_directory():
    """A directory only root can write (the first of LOCK_DIRECTORIES that is, or can be
    made, a root-owned directory no one else may write), for the uid reservations."""
    problems = []
    for path in LOCK_DIRECTORIES:
        try:
            os.makedirs(path, 0o700, exist_ok=True)
            info = os.lstat(path)
        except OSError as e:
            problems.append(f"{path}: {e.strerror}")
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == 0 and not info.st_mode & 0o022:
            return path
        problems.append(f"{path}: not a directory of root's that only root may write")
    raise RuntimeError("no directory for the sandbox uid reservations (" + "; ".join(problems) + ")")


def _reserve_sandbox_uid(slot):
    """
    (uid, fd): an uid that no account uses, no other grader has reserved and no process
    runs as, reserved for this process until `fd` is closed or the process ends.

    A reservation is an exclusive flock on <lock directory>/uid-<uid>.lock: taking it is
    atomic across processes, so graders started at the same moment get different uids
    (checking which uids processes use and then taking one was a race), and the kernel
    drops it when its holder dies. `slot` is only where the search starts.
    """
    directory = _lock_directory()
    start = 8 * max(0, int(slot))
    for k in range(SANDBOX_UIDS):
        uid = SANDBOX_UID_BASE + (start + k) % SANDBOX_UIDS
        try:
            pwd.getpwuid(uid)
            continue   # an account's uid
        except KeyError:
            pass
        fd = os.open(os.path.join(directory, f"uid-{uid}.lock"),
                     os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:   # another grader holds it
            os.close(fd)
            continue
        # reserved; processes of this uid now are leftovers of a grader that died: skip it
        if any(int(line.split()[1]) == uid for pid in _pids() for line in _status_lines(pid, "Uid:")):
            os.close(fd)
            continue
        return uid, fd
    raise RuntimeError(f"all {SANDBOX_UIDS} sandbox uids from {SANDBOX_UID_BASE} are in use")


def _outermost(paths):
    """Existing paths, dropping those inside another one of them."""
    kept = []
    for path in sorted(set(paths), key=len):
        if os.path.lexists(path) and not any(path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


def _link_chain(path):
    """`path` and, while it is a symbolic link, what it points to: [link, ..., file]."""
    chain = []
    for _ in range(40):
        path = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
        chain.append(path)
        if not os.path.islink(path):
            break
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return chain


def package_directories(names=("numpy",)):
    """The site-packages directories (sys.path entries) holding the packages the child
    imports: NumPy, which needs nothing outside the standard library."""
    found = []
    for name in names:
        spec = importlib.util.find_spec(name)
        for location in (spec.submodule_search_locations or []) if spec else []:
            found.append(os.path.dirname(os.path.realpath(location)))
    return found


def python_directories():
    """
    What an isolated (-I) Python of ours reads, and nothing more of its installation: the
    system directories, the interpreter (its binary, the links to it, libpython), the
    standard library with lib-dynload, and the site-packages directories holding NumPy
    (package_directories). The rest of sys.prefix (a venv's other folders, another
    student's files kept there) stays out of the sandbox. The child binds these at their
    real paths wherever they are (/tmp, /var/tmp, paths with spaces or non-ASCII names).
    """
    paths = ["/usr", "/bin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"]
    paths += [sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib"),
              sysconfig.get_config_var("DESTSHARED"), os.path.join(sys.prefix, "pyvenv.cfg")]
    paths += package_directories()
    # top-level links such as /lib -> usr/lib are recreated as links in the private root,
    # and so are the links to the interpreter; everything else is bound at its real path
    real = [p if os.path.dirname(p) == "/" and os.path.islink(p) else os.path.realpath(p)
            for p in paths if p]
    links = _link_chain(sys.executable)
    library = sysconfig.get_config_var("INSTSONAME")
    if library and sysconfig.get_config_var("Py_ENABLE_SHARED"):
        links += _link_chain(os.path.join(sysconfig.get_config_var("LIBDIR") or "/", library))
    return _outermost(real + links)


def _readable_by_others(path):
    """Whether a user other than the owner may enter every folder up to `path` and read it."""
    path = folder = os.path.realpath(path)
    try:
        while True:
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                return False
            if folder == "/":
                return bool(os.stat(path).st_mode & stat.S_IROTH)
            folder = os.path.dirname(folder)
    except OSError:
        return False


def masked_directories(read_only):
    """site-packages directories inside the bound standard library that hold nothing the
    child needs (a venv's base interpreter's packages): the child hides them."""
    needed = package_directories()
    masked = []
    for directory in read_only:
        for name in ("site-packages", "dist-packages"):
            path = os.path.realpath(os.path.join(directory, name))
            if os.path.isdir(path) and not any(n == path or n.startswith(path + "/") for n in needed):
                masked.append(path)
    return masked


@dataclass
class Isolation:
    """How a child is confined; `privileged` means the grader runs as root."""
    privileged: bool
    uid: int = None
    gid: int = None
    private_root: bool = False
    landlock: int = 0
    note: str = ""
    lock_fd: int = None         # holds the reservation of `uid` (see _reserve_sandbox_uid)
    namespaces: bool = True     # False: the private root fails, as it would (WEAKEN_VARIABLE)
    allow_landlock: bool = True

    @property
    def level(self):
        """'private-root' (full), 'landlock', 'uid-only' or 'same-user' (weaker ones)."""
        if not self.privileged:
            return "same-user"
        return "private-root" if self.private_root else "landlock" if self.landlock else "uid-only"

    def summary(self):
        """For results.json's extra_data: the level, whether it is the full isolation, why not."""
        return {"level": self.level, "full": self.level == "private-root", "uid": self.uid,
                "landlock_abi": self.landlock, "note": self.note}

    def release(self):
        """Give up the sandbox uid's reservation (after the last child has been stopped)."""
        fd, self.lock_fd = self.lock_fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self):
        self.release()

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
            return (f"isolation WEAKER: no private namespaces ({self.note or 'unavailable'}), "
                    f"so the submission ran as uid {self.uid} in a separate process, {how}. "
                    f"Grade with namespaces (root with CAP_SYS_ADMIN) for full isolation.")
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
    """
    The isolation this process can give: root drops to a sandbox uid (reserved until
    `Isolation.release`, which Sandbox's exit calls) unless same_user. The environment
    variable HANDGRAD_WEAKEN_ISOLATION (comma-separated "no-namespaces", "no-landlock"),
    for tests of the fallbacks, can only take isolation away, never add any.
    """
    weaken = {w.strip() for w in os.environ.get(WEAKEN_VARIABLE, "").split(",") if w.strip()}
    if os.geteuid() == 0 and not same_user:
        uid, fd = _reserve_sandbox_uid(slot)
        isolation = Isolation(True, uid, uid, lock_fd=fd)
    else:
        isolation = Isolation(False)
    if "no-namespaces" in weaken:
        isolation.namespaces = False
    if "no-landlock" in weaken:
        isolation.allow_landlock = False
    return isolation


# ------------------------------------------------------------------------- processes

def _pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _status_lines(pid, prefix):
    try:
        with open(f"/proc/{pid}/status") as f:
            return [line for line in f if line.startswith(prefix)]
    except OSError:
        return []


def parent_pids():
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


def become_subreaper():
    import ctypes
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER


def kill_and_reap(victims, orphans=()):
    """SIGKILL every process of `victims` (one already gone is fine), then reap `orphans`
    (processes whose parent is this one: a subreaper's adopted orphans)."""
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
        become_subreaper()
        requests_r, self.requests = os.pipe()
        self.replies, replies_w = os.pipe()
        output_r, output_w = os.pipe()
        limits = self.limits
        iso = self.isolation
        chrooted = iso.privileged
        # WEAKEN_VARIABLE's no-namespaces: a root that cannot be mounted, so the child's
        # private root fails (and it falls back) the way it does without CAP_SYS_ADMIN
        new_root = self.new_root if iso.namespaces else os.path.join(self.new_root, "absent")
        read_only = python_directories()
        config = {
            "workdir": self.workdir, "new_root": new_root if chrooted else None,
            "read_only": read_only,
            "devices": ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"],
            "hidden": self.hidden + masked_directories(read_only),
            "tmp_bytes": limits.file_size, "landlock": iso.allow_landlock,
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
        if iso.note and not iso.namespaces:
            iso.note += f" (made to fail by {WEAKEN_VARIABLE})"
        stdlib = sysconfig.get_path("stdlib")
        if iso.uid is not None and not iso.private_root and not _readable_by_others(stdlib):
            iso.note += (f"; the standard library ({stdlib}) is in a folder other users "
                         f"cannot read, so the submission cannot import modules the child had "
                         f"not loaded: grade with a Python other users can read")

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
        except MemoryError:   # the grader's own memory ceiling (autograder.limit_grader_memory)
            self.stop()       # mid-message: the pipe can no longer be read in step
            raise ChildLost("the grader ran out of memory reading the child's answer") from None
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
        data = bytearray(size)   # read in place: the message is held once, not twice
        view, done = memoryview(data), 0
        while done < size:
            self._wait(select.POLLIN, self.replies, deadline)
            try:
                count = os.readv(self.replies, [view[done:done + (1 << 20)]])
            except BlockingIOError:
                continue
            if not count:
                raise ChildLost(self._ended())
            done += count
        return data

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
            parents = parent_pids()
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
            kill_and_reap(victims, orphans)
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

    def __init__(self, source, limits, isolation, hidden=(), only_files=None, graded=()):
        self.limits, self.isolation = limits, isolation
        self.ignored = []   # (relative path, reason) of what copy_submission left out
        self.base = tempfile.mkdtemp(prefix="handgrad-grading-")
        self.workdir = os.path.join(self.base, "submission")
        self.new_root = os.path.join(self.base, "root")
        os.mkdir(self.workdir, 0o700)
        os.mkdir(self.new_root, 0o700)
        try:
            self.digest = copy_submission(source, self.workdir, only_files, graded, self.ignored)
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
        self.isolation.release()   # the uid is free for another grader only now
