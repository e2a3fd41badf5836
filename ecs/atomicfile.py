"""Atomic replacement of a file: save() writes a temporary beside its target, fsyncs it, renames
it over the target and fsyncs the directory, so a crash at any point leaves the old file or the
new. Each call has its own temporary (two threads may save to one path: the last rename wins); a
path that is a symlink is followed, so the target is replaced and the link kept; temporaries of
writers that died are removed by the next save of the same name."""

from __future__ import annotations

import os
import secrets
import stat

from .errors import InvalidArgumentError


def save_target(given: str) -> tuple[str, int | None]:
    """The file save() replaces (through a symlink: its target, so the link stays) and its
    permission bits (None: a new file). InvalidArgumentError, before anything is written, for a
    directory, a path that ends in a separator, a symlink loop, or anything but a regular file
    (a FIFO or a device would be replaced by a file: /dev/null too)."""
    if given.endswith(os.sep):
        raise InvalidArgumentError(f"save({given!r}): the path names a directory; name a file in it")
    path = os.path.realpath(given)
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return path, None
    except OSError as exc:   # ELOOP, ENOTDIR, EACCES
        raise InvalidArgumentError(f"save({given!r}): cannot use the path: {exc.strerror or exc}") from None
    if stat.S_ISDIR(status.st_mode):   # refused before a temporary is made beside it (in its parent)
        raise InvalidArgumentError(f"save({path!r}): the path is a directory; name a file in it")
    if not stat.S_ISREG(status.st_mode):
        raise InvalidArgumentError(f"save({path!r}): the path is not a regular file (a device, a FIFO or a "
                                   f"socket), which a save would replace; name a file")
    return path, stat.S_IMODE(status.st_mode)


def create_temporary(path: str, mode: int | None) -> tuple[int, str]:
    """Create save()'s temporary beside `path` (mode: the permission bits of the file it will
    replace, None: the umask's) and remove orphans of earlier saves. An OSError (no such directory,
    no permission) names the file saved and its directory, not the temporary."""
    directory, name = os.path.split(path)
    # unique per call (two threads saving to one path must not share one), pid first: see
    # _remove_orphaned_temporaries
    temporary = os.path.join(directory, f".{name}.tmp-{os.getpid()}-{secrets.token_hex(8)}")
    try:
        _remove_orphaned_temporaries(directory, name)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise type(exc)(exc.errno, f"save({path!r}): cannot create a file in {directory!r}: "
                                   f"{exc.strerror or exc}") from None
    try:
        if mode is not None:   # the file it replaces keeps its permissions
            os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        os.unlink(temporary)
        raise
    return fd, temporary


def replace_with(temporary: str, path: str) -> None:
    """Rename the written and fsynced `temporary` over `path`, then fsync their directory."""
    os.replace(temporary, path)
    dir_fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _remove_orphaned_temporaries(directory: str, name: str) -> None:
    """Delete temporaries of earlier saves of `name` whose writer died (killed mid-save): named
    `.{name}.tmp-{pid}-{random}` (`.{name}.tmp-{pid}` before)."""
    prefix = f".{name}.tmp-"
    for entry in os.listdir(directory):
        pid = entry[len(prefix):].split("-", 1)[0]
        if entry.startswith(prefix) and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                os.unlink(os.path.join(directory, entry))
            except FileNotFoundError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
