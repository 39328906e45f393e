"""Writing files so that a crash never leaves a half-written one: the one atomic writer
every module of handgrad uses.

    from fileio import write_atomic, atomic_path
    write_atomic("results/run.json", json.dumps(summary, allow_nan=False))
    with atomic_path("results/loss.png") as temporary:
        figure.savefig(temporary)                 # any writer that wants a file name

A file is written to a temporary file in the same directory (named '.<name>.<random>.tmp'),
flushed and fsynced, then renamed onto its path with os.replace, which is atomic on POSIX
and Windows: the path holds either its old content or the complete new one, never a
mixture, even if the process is killed mid-write. If writing fails, the temporary file is
removed and the error names the file; a temporary file left behind by a killed process
is removed by remove_temporaries.
"""
import contextlib
import errno
import glob
import os
import tempfile

TEMPORARY_SUFFIX = ".tmp"


class WriteError(OSError):
    """Writing a file failed (full disk, no permission, ...); the message names the file."""


def _temporary_prefix(path):
    return f".{os.path.basename(path)}."


@contextlib.contextmanager
def atomic_path(path):
    """
    Context manager yielding a temporary file name in path's directory; when the block
    ends without an exception, that file replaces path atomically. On an exception it is
    removed and path is untouched. Creates missing directories.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=_temporary_prefix(path),
                                         suffix=TEMPORARY_SUFFIX)
        os.close(fd)
    except OSError as error:
        raise WriteError(error.errno, f"cannot write {path}: {error.strerror or error}") from error
    try:
        yield temporary
    except OSError as error:
        _remove(temporary)
        if error.errno in _DISK_ERRORS:
            raise WriteError(error.errno, f"cannot write {path}: {error.strerror or error} "
                                          f"(is the disk full, or the folder read-only?)") from error
        raise
    except BaseException:
        _remove(temporary)
        raise
    try:
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o644)   # mkstemp makes it owner-only; a plain file is not
        os.replace(temporary, path)
    except OSError as error:
        _remove(temporary)
        raise WriteError(error.errno, f"cannot write {path}: {error.strerror or error} "
                                      f"(is the disk full, or the folder read-only?)") from error


# errors of a write itself (not, e.g., of a download feeding it)
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG, errno.EIO}


def write_atomic(path, data):
    """Write data (bytes, or str as UTF-8) to path atomically (see the module docstring).
    Returns path."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as f:
            f.write(data)
    return path


def check_writable(directory):
    """Create directory if needed and check that a file can be written in it; raises
    WriteError naming it otherwise (e.g. before the first epoch of a long run)."""
    directory = os.fspath(directory) or "."
    try:
        os.makedirs(directory, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-test.", suffix=TEMPORARY_SUFFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise WriteError(error.errno, f"cannot write files in {directory}: "
                                      f"{error.strerror or error}") from error


def remove_temporaries(path_pattern):
    """
    Remove the temporary files that atomic writes of paths matching path_pattern (a glob,
    e.g. 'checkpoints/net_epoch_*.npz') left behind when their process was killed.
    Returns the removed names.
    """
    directory, name_pattern = os.path.split(os.fspath(path_pattern))
    leftovers = glob.glob(os.path.join(directory, "." + name_pattern + ".*" + TEMPORARY_SUFFIX))
    for leftover in leftovers:
        _remove(leftover)
    return leftovers


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass
