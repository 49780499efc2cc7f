"""Worker processes that never outlive the process that started them.

An orphaned worker (its server killed with SIGKILL) would go on taking jobs unsupervised and
race the restarted server's workers. Two guards: on Linux the kernel kills the worker when
its parent dies (``PR_SET_PDEATHSIG``); everywhere, a watcher thread notices the parent is
gone (the worker was re-parented) and ends the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_CHECK_INTERVAL_S = 1.0


def set_parent_death_signal(signum: int = signal.SIGKILL) -> bool:
    """Ask the Linux kernel to send ``signum`` to this process when its parent thread dies.

    Returns False where that is not available (other systems, no libc); the watcher thread
    of ``die_with_parent`` still applies there.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d); relying on the parent check",
                    ctypes.get_errno())
        return False
    return True


def _watch(parent_pid: int, interval_s: float) -> None:
    while os.getppid() == parent_pid:
        threading.Event().wait(interval_s)
    log.error("worker %d: its parent process %d is gone; exiting", os.getpid(), parent_pid)
    # No clean-up on purpose: the job this worker held is re-queued by the next server.
    os._exit(70)


def die_with_parent(parent_pid: int, *, interval_s: float = PARENT_CHECK_INTERVAL_S,
                    kernel: bool = True) -> None:
    """End this process as soon as ``parent_pid`` (its parent) is gone.

    Call first thing in a child. If the parent died before the call, exits at once.
    ``kernel=False`` skips the kernel guard, which fires when the parent *thread* that
    started the child ends: only safe when that thread lives as long as the parent.
    """
    if kernel:
        set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the kernel guard was set
        os._exit(70)
    threading.Thread(target=_watch, args=(parent_pid, interval_s), name="parent-watch",
                     daemon=True).start()
