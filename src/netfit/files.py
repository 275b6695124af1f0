"""Opening the files users and run folders hand to netfit: regular files only, sizes checked first.

Every file netfit reads (a data file, a spec, a run's weights) comes through here, because a
path can name things that are not files: a FIFO (reading it waits for a writer that may never
come), ``/dev/zero`` (reading it never ends), a folder, or a symlink loop. Each of those gets one
line naming the path and what it is, before a byte is read. Whole-file reads are capped, so a
file far larger than its kind can be is refused by its size, not by running out of memory.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from .errors import NetfitError

__all__ = ["open_regular", "read_regular", "refuse_special_output", "available_memory", "require_memory",
           "describe_bytes"]

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def open_regular(path: str | Path, what: str) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file (symlinks followed), else a NetfitError.

    ``what`` names the file in messages ("data file", "spec file", "weights file").
    """
    path = Path(path).expanduser()
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer before fstat can look.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise NetfitError(f"{what} {str(path)!r} does not exist; check the path") from None
    except PermissionError:
        raise NetfitError(f"cannot read {what} {str(path)!r}: permission denied; check its permissions") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise NetfitError(f"{what} {str(path)!r} is a symlink loop; point it at a real file") from None
        raise NetfitError(f"cannot open {what} {str(path)!r} ({err.strerror or err}); check the path") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
            raise NetfitError(f"{what} {str(path)!r} is {kind}, not a regular file; give the path of a file")
        if flags & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def refuse_special_output(path: str | Path) -> None:
    """Refuse an output path that names a FIFO, a device or a socket, even with --force.

    netfit writes its outputs to a temporary file renamed onto the path, so writing "into"
    ``/dev/null`` or a named pipe would replace that node with a regular file (as root, /dev/null
    itself) and leave a reader of the pipe waiting forever.
    """
    try:
        mode = os.stat(Path(path).expanduser()).st_mode
    except OSError:
        return  # missing (or unreadable): the write itself says what is wrong
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return  # a folder is refused by the caller with its own message
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise NetfitError(f"{path} is {kind}, not a regular file: netfit writes a new file and renames it onto the "
                      "path, which would replace it; give the path of a regular file (or leave out -o where the "
                      "command can write to stdout)")


def read_regular(path: str | Path, what: str, max_bytes: int) -> bytes:
    """The whole content of the regular file ``path``, refused unread if it holds more than ``max_bytes``."""
    with open_regular(path, what) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise NetfitError(f"{what} {str(path)!r} is {describe_bytes(size)}, more than a {what} can be "
                              f"({describe_bytes(max_bytes)} at most); check that it is the right file")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while being read
        raise NetfitError(f"{what} {str(path)!r} grew past {describe_bytes(max_bytes)} while being read; "
                          "wait until whatever writes it has finished")
    return data


def describe_bytes(count: int) -> str:
    """``1.5 GB`` style sizes for messages (decimal units, as file managers show them)."""
    for unit, size in (("EB", 10**18), ("PB", 10**15), ("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


def available_memory() -> int:
    """Bytes this process can still allocate: the smallest of free RAM, a cgroup's room and RLIMIT_AS."""
    limits = []
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError):
        pass
    if not limits and hasattr(os, "sysconf"):
        try:
            limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError):
            pass
    try:  # a container's own limit (cgroup v2)
        cap = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cap.isdigit():
            used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
            limits.append(int(cap) - (int(used) if used.isdigit() else 0))
    except OSError:
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append(soft - _address_space())  # the limit counts what the process has mapped already
    except (ImportError, OSError, ValueError):
        pass
    return max(min(limits), 0) if limits else 2**63


def _address_space() -> int:
    """Bytes of address space this process has mapped (what RLIMIT_AS counts); 0 where unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def require_memory(nbytes: int, what: str, fix: str) -> None:
    """Refuse, before allocating, something that needs more memory than this machine has free.

    ``what`` says what needs the memory ("the network's parameters and optimizer state"),
    ``fix`` what the user can do about it.
    """
    free = available_memory()
    if nbytes > free:
        raise NetfitError(f"{what} would need {describe_bytes(nbytes)} of memory but only {describe_bytes(free)} "
                          f"is free; {fix}")
