"""
The grader's child process, and the wire format it shares with the parent.

The parent (grader/sandbox.py) starts `python -I -c <this file's source> <config JSON>`.
The child first confines itself while it still runs only this trusted code (see
`confine`: limits, a private root, an unprivileged user), then imports the submission's
modules and answers the parent's requests until told to stop:

    import     import a graded module of the submission; with "trusted"
               ({module: [function, ...]}), import it a second time as a separate
               module object, the *trusted view* "<module>@trusted" (see below)
    call       call module.function(*args, **kwargs) (a class too: the result is then
               an instance); keep the result and the arguments
    method     getattr(obj, name)(*args, **kwargs), obj a value an earlier request of
               this test returned (sent back as a reference); kept like a call
    attribute  getattr(obj, name); the value is kept so it can be referred to
    args       send back the arguments that earlier calls received (for mutation checks)
    reset      forget the kept results (the parent does this after every test)

Trusted view. The grader can run a student's model with its own (trusted) layer
functions. For the import of the view, and while a call, method or attribute request
runs on anything that came from the view, `sys.modules` holds for each trusted module
name a *proxy module*: a copy of the student's own module of that name (an empty module
if it is missing or fails to import) whose trusted functions are replaced by proxies;
the view's own import also gets fresh copies of the student's other modules, so that
they too bind the proxies. A proxy sends {"op": "callback", "module", "function",
"args", "kwargs"} to the parent and waits for its answer, {"ok": true, "value": ...} or
{"ok": false, "error": "..."}, raising ValueError on an error. The parent answers a
callback only while it waits for a request on a trusted view, and only for the functions
of that view; any other message with an "op" is a protocol violation that ends the child.

Everything the child sends is untrusted: once the submission is imported it can rewrite
this loop, write to the pipes itself or die at any moment. The parent therefore decodes
with `decode`, which builds only plain values (None, bools, numbers, strings, tuples,
lists, dicts, NumPy arrays of numeric dtypes and `Opaque` placeholders), never
unpickles, and bounds sizes and depth.

A message is an 8-byte little-endian header length, a JSON header, then the raw bytes of
the arrays the header refers to ({"array": i, "dtype": "<f8", "shape": [2, 3]} is the
i-th buffer). This file imports only the standard library and NumPy: the child cannot
read the grader's other files.
"""
import json
import os
import struct
import sys

import numpy as np

# Bytes of one message from the child (an answer or a callback); a larger one is a
# protocol violation. The largest the suites need is 3.1 MB (cnn-rnn's ConvNet params,
# W2 of 3872 x 100); the parent's time to read an answer grows with its size (~0.1 s
# per MiB of tiny arrays), so the cap is that with a margin, not more.
MAX_MESSAGE = 8 << 20
MAX_DEPTH = 12           # nesting of tuples/lists/dicts in one value
MAX_TEXT = 4000          # characters kept of an exception message or a type name

# dtypes that may cross the pipe: .str of each (e.g. '<f8'); no object, void or datetime
SAFE_DTYPES = {np.dtype(t).str: np.dtype(t) for t in (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
    np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128)}


class ProtocolError(Exception):
    """A message that does not follow the wire format."""


class Opaque:
    """Stands for an object of the child's that is not plain data (e.g. a class instance)."""

    def __init__(self, type_name):
        self.type_name = type_name

    def __repr__(self):
        return f"<{self.type_name} object>"


# ------------------------------------------------------------------------------ encoding

def encode(value, buffers, depth=0):
    """A JSON-ready node for `value`, appending array bytes to `buffers`."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value[:MAX_TEXT * 4] if isinstance(value, str) else value
    if isinstance(value, (int, float)) and type(value) in (int, float):
        return value if type(value) is float or abs(value) < 2 ** 63 else float(value)
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.str not in SAFE_DTYPES:
            return {"object": f"array of dtype {array.dtype}"[:MAX_TEXT]}
        buffers.append(np.ascontiguousarray(array).tobytes())
        node = {"array": len(buffers) - 1, "dtype": array.dtype.str, "shape": list(array.shape)}
        if isinstance(value, np.generic):
            node["scalar"] = True
        return node
    if type(value) in (tuple, list):
        return {type(value).__name__: [encode(v, buffers, depth + 1) for v in value]}
    if type(value) is dict:
        return {"dict": [[encode(k, buffers, depth + 1), encode(v, buffers, depth + 1)]
                         for k, v in value.items()]}
    if isinstance(value, type) and issubclass(value, np.generic) and np.dtype(value).str in SAFE_DTYPES:
        return {"dtype": np.dtype(value).str}   # a scalar type such as np.float64 (a dtype argument)
    return {"object": type(value).__name__[:MAX_TEXT]}


def decode(node, buffers, resolve=None, depth=0):
    """
    The value a node stands for. Builds only plain values; raises ProtocolError on
    anything else. `resolve(call_id, path)` turns {"ref": ...} nodes into objects (child
    side only).
    """
    if depth > MAX_DEPTH:
        raise ProtocolError("value nested too deeply")
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if not isinstance(node, dict):
        raise ProtocolError(f"unexpected node of type {type(node).__name__}")
    if "array" in node:
        return _decode_array(node, buffers)
    if len(node) != 1:
        raise ProtocolError("malformed node")
    (kind, body), = node.items()
    if kind in ("tuple", "list") and isinstance(body, list):
        items = [decode(v, buffers, resolve, depth + 1) for v in body]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict" and isinstance(body, list):
        result = {}
        for item in body:
            if not (isinstance(item, list) and len(item) == 2):
                raise ProtocolError("malformed dict item")
            key = decode(item[0], buffers, resolve, depth + 1)
            if not isinstance(key, (str, int, float, bool, type(None))):
                raise ProtocolError("dict key that is not a string or a number")
            result[key] = decode(item[1], buffers, resolve, depth + 1)
        return result
    if kind == "dtype" and body in SAFE_DTYPES:
        return SAFE_DTYPES[body].type
    if kind == "object" and isinstance(body, str):
        return Opaque(body[:MAX_TEXT])
    if kind == "ref" and resolve is not None and isinstance(body, list) and len(body) == 2:
        return resolve(*body)
    raise ProtocolError(f"unexpected node {kind!r}")


def _decode_array(node, buffers):
    index, dtype, shape = node.get("array"), node.get("dtype"), node.get("shape")
    if not (type(index) is int and 0 <= index < len(buffers)):
        raise ProtocolError("array refers to a missing buffer")
    if dtype not in SAFE_DTYPES:
        raise ProtocolError(f"array of unsupported dtype {str(dtype)[:40]!r}")
    if not (isinstance(shape, list) and len(shape) <= 32
            and all(type(s) is int and 0 <= s for s in shape)):
        raise ProtocolError("malformed array shape")
    dtype = SAFE_DTYPES[dtype]
    data = buffers[index]
    if int(np.prod(shape, dtype=object)) * dtype.itemsize != len(data):
        raise ProtocolError("array buffer size does not match its shape")
    array = np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    return array[()] if node.get("scalar") else array


def pack(header, buffers=()):
    header = json.dumps(header, allow_nan=True).encode()
    sizes = struct.pack(f"<{len(buffers)}Q", *map(len, buffers))
    body = struct.pack("<QI", len(header), len(buffers)) + header + sizes + b"".join(buffers)
    return struct.pack("<Q", len(body)) + body


def unpack(body):
    """(header dict, list of buffers) from a message body (everything after its length).
    The buffers are views of `body`, not copies."""
    body = memoryview(body)
    try:
        header_size, count = struct.unpack_from("<QI", body)
        start = 12 + header_size
        if start + 8 * count > len(body):
            raise ProtocolError("truncated message")
        header = json.loads(bytes(body[12:start]))
        sizes = struct.unpack_from(f"<{count}Q", body, start)
    except (struct.error, ValueError, RecursionError) as e:
        raise ProtocolError(f"malformed message: {type(e).__name__}") from None
    if not isinstance(header, dict):
        raise ProtocolError("message header is not a JSON object")
    offset, buffers = start + 8 * count, []
    for size in sizes:
        if offset + size > len(body):
            raise ProtocolError("truncated message")
        buffers.append(body[offset:offset + size])
        offset += size
    return header, buffers


# ---------------------------------------------------------------------- the child's side

def _read_exactly(fd, size):
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _describe(error, workdir):
    """The exception as plain data: type, message, and where in the submission it was raised."""
    try:
        message = str(error)[:MAX_TEXT]
    except BaseException:
        message = "(the exception's message could not be formatted)"
    where, tb = None, error.__traceback__
    while tb is not None:   # innermost frame in the submission's files
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(workdir + os.sep):
            where = (os.path.relpath(filename, workdir), tb.tb_lineno, tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return {"type": type(error).__name__[:MAX_TEXT], "message": message,
            "value_error": isinstance(error, ValueError),
            "not_implemented": isinstance(error, NotImplementedError),
            "where": list(where) if where else None}


def _send(fd, header, buffers=()):
    """Write one message to `fd` (the replies pipe), after flushing what was printed."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    view = memoryview(pack(header, buffers))
    while view:
        view = view[os.write(fd, view):]


def _receive(fd):
    """One message from `fd` (the requests pipe): (header, buffers); EOFError at its end."""
    size, = struct.unpack("<Q", _read_exactly(fd, 8))
    return unpack(_read_exactly(fd, size))


def _numbers(node):
    """How many numbers the arrays of an encoded value hold."""
    if isinstance(node, dict):
        if "array" in node:
            count = 1
            for length in node.get("shape", ()):
                count *= length
            return count
        return sum(map(_numbers, node.values()))
    return sum(map(_numbers, node)) if isinstance(node, list) else 0


def _proxy(module, function, requests_fd, replies_fd):
    """A stand-in for the parent's trusted `module.function`: a callback to the parent."""
    def trusted(*args, **kwargs):
        out = []
        header = {"op": "callback", "module": module, "function": function,
                  "args": encode(args, out), "kwargs": encode(kwargs, out)}
        size = sum(map(len, out)) + len(json.dumps(header)) + 12 + 8 * len(out)
        if size > MAX_MESSAGE:   # the parent would stop the child: refuse here, politely
            raise ValueError(f"trusted {module}.{function}: refused: the arguments hold "
                             f"{_numbers(header)} numbers ({size} bytes), more than the "
                             f"{MAX_MESSAGE >> 20} MiB the grader reads")
        _send(replies_fd, header, out)
        answer, buffers = _receive(requests_fd)
        if answer.get("ok") is not True:
            raise ValueError(f"trusted {module}.{function}: {str(answer.get('error'))[:MAX_TEXT]}")
        return decode(answer.get("value"), buffers)
    trusted.__name__ = trusted.__qualname__ = function
    trusted.__module__ = module
    trusted.__doc__ = f"The grader's trusted {module}.{function}, computed by the grader."
    return trusted


class _TrustedView:
    """The proxy modules of one trusted view and the view's own copy of the graded module."""

    def __init__(self, trusted, requests_fd, replies_fd, workdir):
        import importlib
        import types
        self.workdir, self.proxies = workdir, {}
        for name, functions in trusted.items():
            proxy = types.ModuleType(name, f"{name} with the grader's trusted functions")
            try:   # the student's own module, for what the grader does not replace
                proxy.__dict__.update({k: v for k, v in vars(importlib.import_module(name)).items()
                                       if not k.startswith("__") or k == "__all__"})
            except Exception:
                pass
            for function in functions:
                setattr(proxy, function, _proxy(name, function, requests_fd, replies_fd))
            self.proxies[name] = proxy
        self.module = None

    def _submitted(self):
        """The names in sys.modules of the submission's own modules."""
        prefix = self.workdir + os.sep
        return [name for name, module in list(sys.modules.items())
                if str(getattr(module, "__file__", None) or "").startswith(prefix)]

    def load(self, name):
        """Import `name` afresh with the proxies (and fresh copies of the submission's
        other modules) in sys.modules; sys.modules is as before afterwards."""
        import importlib
        saved = {n: sys.modules.pop(n) for n in self._submitted()}
        try:
            with self.installed():
                self.module = importlib.import_module(name)
        finally:
            for n in self._submitted():
                sys.modules.pop(n, None)
            sys.modules.update(saved)
        return self.module

    def installed(self):
        """A context in which sys.modules holds the proxy modules."""
        import contextlib

        @contextlib.contextmanager
        def context():
            saved = {name: sys.modules.get(name) for name in self.proxies}
            sys.modules.update(self.proxies)
            try:
                yield
            finally:
                for name, module in saved.items():
                    if module is None:
                        sys.modules.pop(name, None)
                    else:
                        sys.modules[name] = module
        return context()


MISSING = object()


def _source_only_imports(workdir):
    """
    Make imports from the submission's folder (and folders inside it) read only .py
    source: a regular file `<name>.py` is taken before a package `<name>/` of that name,
    a `<name>.py` that is not a regular file (a symbolic link) is not imported, and no
    extension module or bytecode (__pycache__/*.pyc, *.pyc) of the folder is ever
    loaded, nor bytecode written, even for files the submission creates as it runs.
    """
    import importlib.machinery as machinery
    import importlib.util
    import stat

    class SourceOnly(machinery.SourceFileLoader):
        def get_code(self, fullname):   # compile the source itself: no bytecode cache
            return self.source_to_code(self.get_data(self.path), self.path)

    class Finder(machinery.FileFinder):
        def find_spec(self, fullname, target=None):
            path = os.path.join(self.path, fullname.rpartition(".")[2] + ".py")
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                mode = None
            if mode is not None:
                if not stat.S_ISREG(mode):
                    return None
                return importlib.util.spec_from_file_location(
                    fullname, path, loader=SourceOnly(fullname, path))
            return super().find_spec(fullname, target)   # a helper package, or nothing

    def hook(path):
        if path == workdir or path.startswith(workdir + os.sep):
            return Finder(path, (SourceOnly, machinery.SOURCE_SUFFIXES))
        raise ImportError("not the submission's folder")

    sys.path_hooks.insert(0, hook)
    sys.path_importer_cache.clear()


def serve(requests_fd, replies_fd, workdir):
    """Answer the parent's requests until it closes the pipe."""
    import contextlib
    import importlib
    sys.path.insert(0, workdir)
    sys.dont_write_bytecode = True
    _source_only_imports(workdir)
    modules, views, kept = {}, {}, {}

    def resolve(call_id, path):
        value = kept[call_id]["result"]
        for index in path:
            value = value[index]
        return value

    def reply(header, buffers=()):
        _send(replies_fd, header, buffers)

    def running(key):
        """The context of a request on a value of module view `key`."""
        view = views.get(key)
        return view.installed() if view is not None else contextlib.nullcontext()

    while True:
        try:
            request, buffers = _receive(requests_fd)
        except EOFError:
            return
        op, out = request.get("op"), []
        try:
            if op == "import":
                name, trusted = request["module"], request.get("trusted")
                key = request.get("view") or (f"{name}@trusted" if trusted else name)
                if key not in modules:
                    if trusted:
                        view = _TrustedView(trusted, requests_fd, replies_fd, workdir)
                        modules[key] = view.load(name)
                        views[key] = view
                    else:
                        modules[key] = importlib.import_module(name)
                reply({"ok": True})
            elif op in ("call", "method", "attribute"):
                args = decode(request.get("args", {"tuple": []}), buffers, resolve)
                kwargs = decode(request.get("kwargs", {"dict": []}), buffers, resolve)
                key = request.get("view") or request.get("module")
                with running(key):
                    if op == "call":
                        target = getattr(modules[key], request["function"], None)
                    else:
                        owner = decode(request["object"], buffers, resolve)
                        try:
                            target = getattr(owner, request["name"])
                        except AttributeError:
                            target = MISSING
                    if target is MISSING or (op != "attribute" and not callable(target)):
                        reply({"ok": False, "missing": True})
                        continue
                    kept[request["id"]] = {"args": (args, kwargs)}
                    result = target if op == "attribute" else target(*args, **kwargs)
                kept[request["id"]]["result"] = result
                reply({"ok": True, "value": encode(result, out)}, out)
            elif op == "args":
                received = [kept[i]["args"] if i in kept else None for i in request["ids"]]
                reply({"ok": True, "value": encode(received, out)}, out)
            elif op == "reset":
                kept.clear()
                reply({"ok": True})
            else:
                reply({"ok": False, "error": {"type": "ProtocolError", "message": f"op {op!r}"}})
        except BaseException as error:   # SystemExit and KeyboardInterrupt too: report them
            reply({"ok": False, "error": _describe(error, workdir)})


# ------------------------------------------------------------------------- confinement

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNET = 0x20000, 0x4000000, 0x8000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 32, 4096, 16384, 1 << 18)
PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG = 38, 1


def _libc():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    return ctypes, libc


def _check(ctypes, result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _private_root(config):
    """
    New mount and network namespaces whose root holds only read-only binds of the
    system and Python directories, the devices Python needs, and the submission's copy
    (read-write) at /sandbox. Everything else, the grader's files included, is absent.
    Needs root (CAP_SYS_ADMIN); raises OSError otherwise.
    """
    ctypes, libc = _libc()
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    _check(ctypes, libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS),
           "unshare")

    def mount(source, target, fstype, flags, data=None):
        _check(ctypes, libc.mount(source and os.fsencode(source), os.fsencode(target),
                                  fstype and fstype.encode(), flags, data and data.encode()),
               f"mount {source} on {target}")

    mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = config["new_root"]
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV)
    # A private, small /tmp, made before the binds: the Python directories that live
    # under /tmp (a venv in a clone there) are bound at their real paths inside it.
    os.mkdir(root + "/tmp")
    mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
          "mode=1777,nr_inodes=4096,size=%d" % max(1 << 20, int(config.get("tmp_bytes") or 0)))
    read_only = [p for p in config["read_only"] if p not in ("/", "/tmp")]

    def bind(source, read_only, device=False):
        target = root + source if source != config["workdir"] else root + "/sandbox"
        if os.path.islink(source):   # e.g. /lib -> usr/lib on a merged-/usr system
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            os.symlink(os.readlink(source), target)
            return
        if os.path.isdir(source):
            os.makedirs(target, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            open(target, "a").close()
        mount(source, target, None, MS_BIND)
        flags = MS_BIND | MS_REMOUNT | MS_NOSUID | (0 if device else MS_NODEV)
        mount(None, target, None, flags | (MS_RDONLY if read_only else 0))

    def inside(path, folder):
        return path == folder or path.startswith(folder.rstrip("/") + "/")

    for path in read_only:
        bind(path, True)
    for path in config["devices"]:
        bind(path, False, device=True)
    bind(config["workdir"], False)
    # grader files (and unneeded site-packages) that lie inside a bound directory; one
    # that only holds bound directories (a clone holding its venv) shows nothing else
    for path in config["hidden"]:
        if not any(inside(path, p) for p in read_only):
            continue
        if os.path.isdir(root + path):
            mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
            for needed in read_only:   # a Python directory inside it (a venv in the clone)
                if needed != path and inside(needed, path):
                    bind(needed, True)
            mount(None, root + path, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        elif os.path.exists(root + path):
            mount("/dev/null", root + path, None, MS_BIND)
    os.chroot(root)
    os.chdir("/sandbox")
    return "/sandbox"


def confine(config):
    """
    Limit this process before any submitted code runs, from the most to the least
    privileged step: private root (when root), resource limits, the unprivileged user,
    no new privileges. Returns the directory holding the submission's copy.
    """
    import resource
    workdir, report = config["workdir"], {"private_root": False, "landlock": 0}
    if config.get("new_root"):
        try:
            workdir = _private_root(config)
            report["private_root"] = True
        except OSError as e:   # no CAP_SYS_ADMIN (e.g. a container): permissions only
            report["private_root_error"] = str(e)
    if not report["private_root"]:
        os.chdir(workdir)
        os.environ["HOME"] = os.environ["TMPDIR"] = workdir   # no /sandbox without the root
        if "tempfile" in sys.modules:
            sys.modules["tempfile"].tempdir = None
        if config.get("landlock", True):
            report["landlock"] = _landlock(config["read_only"] + config["devices"],
                                           [workdir] + config["devices"])
    for name, value in config["limits"].items():
        limit = getattr(resource, name)
        hard = resource.getrlimit(limit)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(limit, (value, value))
    if config.get("uid") is not None:
        # what this file imports after confining, loaded while root can still read it:
        # without the private root, a Python in a folder only root may enter (pyenv in
        # /root) is unreadable to the sandbox uid (3.10 and 3.13 load importlib._abc late)
        import importlib.machinery, importlib.util, stat  # noqa: E401,F401
        os.setgroups([])
        os.setgid(config["gid"])
        os.setuid(config["uid"])
    ctypes, libc = _libc()
    _check(ctypes, libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    # The parent kills us when a test runs out of time; should the parent itself die,
    # the kernel kills us too (after setuid, which clears this setting).
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    if os.getppid() != config["parent"]:
        os._exit(70)
    return workdir, report


# Landlock (Linux >= 5.13): an unprivileged process can give up file access for good.
LANDLOCK_FS_READ = 1 | 4 | 8              # execute, read file, read directory
LANDLOCK_FS_ALL = (1 << 16) - 1           # every file right of ABI 5
LANDLOCK_NET_TCP = 1 | 2                  # bind, connect (ABI >= 4)
LANDLOCK_SCOPE_SIGNAL_AND_SOCKETS = 1 | 2  # abstract unix sockets, signals (ABI >= 6)
FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}


def _landlock(read_only, writable):
    """
    Allow this process and its descendants to read only `read_only`, to write only
    `writable`, to open no TCP connection and to signal no process outside them.
    Returns the Landlock ABI version applied, 0 where the kernel has none.
    """
    ctypes, libc = _libc()
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(444, None, 0, 1)   # landlock_create_ruleset(NULL, 0, VERSION)
    if abi < 1:
        return 0
    fs_all = FS_RIGHTS_BY_ABI.get(abi, LANDLOCK_FS_ALL)
    attr = struct.pack("<QQQ", fs_all, LANDLOCK_NET_TCP if abi >= 4 else 0,
                       LANDLOCK_SCOPE_SIGNAL_AND_SOCKETS if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = libc.syscall(444, attr, size, 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    for paths, rights in ((read_only, LANDLOCK_FS_READ), (writable, fs_all)):
        for path in paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            is_dir = os.path.isdir(path)
            allowed = rights if is_dir else rights & (1 | 2 | 4 | (1 << 14) | (1 << 15))
            rule = struct.pack("<Qi", allowed & fs_all, fd)
            result = libc.syscall(445, ruleset, 1, rule, 0)   # LANDLOCK_RULE_PATH_BENEATH
            os.close(fd)
            if result != 0:
                raise OSError(ctypes.get_errno(), f"landlock_add_rule {path} failed")
    _check(ctypes, libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    if libc.syscall(446, ruleset, 0) != 0:   # landlock_restrict_self
        raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    os.close(ruleset)
    return abi


def main(argv):
    config = json.loads(argv[1])
    workdir, report = confine(config)
    # Sent before any submitted code runs, so the parent can trust it.
    ready = pack({"ready": True, **report})
    os.write(config["replies_fd"], ready)
    serve(config["requests_fd"], config["replies_fd"], workdir)


if __name__ == "__main__":
    main(sys.argv)
