"""Ctrl-C as a request to stop cleanly, not as an exception in the middle of a save.

Python turns SIGINT into `KeyboardInterrupt`, raised wherever the main thread happens to be:
in the middle of an optimizer step, or between writing a checkpoint and renaming it. Training
instead treats the first Ctrl-C as a request: `stop_on_sigint()` sets a flag, the engines
look at it at their next safe point (the `fit` engine after every batch, any engine at every
epoch end through `EpochEvents.epoch_ended`, which returns True when it is set), the run
saves a checkpoint and the command exits with 130 and the exact resume command. A second
Ctrl-C means "now": it raises `KeyboardInterrupt` as usual; the last completed epoch's
checkpoint is still on disk, so `--resume` works from there.

The flag is a module-level `threading.Event`, so an engine can poll it from any thread
(`stop_requested()`) without being handed an object. This module imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

_STOP = threading.Event()

NOTICE_BATCH = (
    "\nCtrl-C: stopping at the end of the current batch and saving a checkpoint "
    "(press Ctrl-C again to quit at once).\n"
)
NOTICE_EPOCH = (
    "\nCtrl-C: stopping at the end of the current epoch and saving a checkpoint "
    "(press Ctrl-C again to quit at once).\n"
)


def stop_requested() -> bool:
    """True once the user asked training to stop (first Ctrl-C), until the next run starts."""
    return _STOP.is_set()


def request_stop() -> None:
    """Ask training to stop at its next safe point, as a first Ctrl-C does (tests use it)."""
    _STOP.set()


@contextlib.contextmanager
def stop_on_sigint(notice: str = NOTICE_BATCH) -> Iterator[None]:
    """Within the block, the first SIGINT sets the stop flag; a second raises KeyboardInterrupt.
    SIGHUP (the terminal closed) sets the flag too: the run stops cleanly, as for Ctrl-C.

    The flag is cleared on entry (a library user may train twice in one process). Outside
    the main thread, where Python cannot install signal handlers, the block runs with the
    default behaviour. The previous handler is restored on exit.
    """
    _STOP.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signal_number: int, frame: object) -> None:
        if _STOP.is_set():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        _STOP.set()
        # os.write, not print: a handler may interrupt a print to the same stream, and
        # buffered streams refuse re-entrant writes.
        with contextlib.suppress(OSError):
            os.write(2, notice.encode())

    def hang_up(signal_number: int, frame: object) -> None:
        # The terminal went away (a closed SSH session): stop as for a first Ctrl-C, with a
        # checkpoint at the next safe point; nobody is left to read a notice.
        _STOP.set()

    previous = signal.signal(signal.SIGINT, handle)
    previous_hang_up = signal.signal(signal.SIGHUP, hang_up) if hasattr(signal, "SIGHUP") \
        else None
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if previous_hang_up is not None:
            signal.signal(signal.SIGHUP, previous_hang_up)
