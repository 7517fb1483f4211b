"""What Linux says about a process and the machine, for the bench scripts and
their workers (not part of the s3dlio package).  Standard library only: the
workers import it, under whichever interpreter runs them, before their clock
starts."""
from __future__ import annotations

import os
import resource
from typing import Optional, Union

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads) and of its
    waited-for children (dd and other subprocesses)."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def proc_cpu(pid: int) -> Optional[float]:
    """User + system CPU seconds of process `pid` (all its threads), or None
    when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def _kib_field(path: str, name: str) -> Optional[int]:
    """The `name:  N kB` line of a /proc file, in bytes; None when absent or
    unreadable."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def status(name: str, pid: Union[int, str] = "self") -> Optional[int]:
    """A memory field of /proc/PID/status (VmRSS, VmHWM...) in bytes."""
    return _kib_field(f"/proc/{pid}/status", name)


def meminfo(name: str) -> Optional[int]:
    """A field of /proc/meminfo (MemTotal, MemAvailable...) in bytes."""
    return _kib_field("/proc/meminfo", name)


def mem_available() -> int:
    return meminfo("MemAvailable") or 0


def reset_hwm() -> bool:
    """Sets this process's VmHWM back to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
