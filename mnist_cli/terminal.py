"""Writing to a terminal or pipe that may go away: progress is not essential, messages are.

`mnist train | head -3` closes the pipe after three lines, and Ctrl-C in `mnist train 2>&1 |
tee log` kills `tee` too. Then a write raises `BrokenPipeError`, and even Python's last
flush at exit fails (exit code 120). `Output` stops writing to a stream whose reader left
and points its file descriptor at the null device, so training goes on quietly to the end;
`say_error` falls back to the controlling terminal, so the resume command still reaches the
user when it can. Imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from typing import TextIO

# The reader left: a closed pipe, or a terminal that is gone (a closed SSH session).
_GONE = (errno.EPIPE, errno.EIO, errno.EBADF)


def _stream(err: bool) -> TextIO:
    return sys.stderr if err else sys.stdout


def _silence(stream: TextIO) -> None:
    """Point `stream`'s file descriptor at the null device, so later writes and the final
    flush at exit succeed silently."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)


class Output:
    """Lines to stdout (or stderr) until the reader goes away, then nothing."""

    def __init__(self, err: bool = False) -> None:
        self.err = err
        self.closed = False

    def __call__(self, text: str = "") -> None:
        self.write(text + "\n")

    def write(self, text: str) -> None:
        if self.closed:
            return
        stream = _stream(self.err)
        try:
            stream.write(text)
            stream.flush()
        except OSError as error:
            if error.errno not in _GONE:
                raise
            self.closed = True
            _silence(stream)

    def isatty(self) -> bool:
        with contextlib.suppress(ValueError, AttributeError):
            return not self.closed and _stream(self.err).isatty()
        return False


def say_error(text: str) -> None:
    """A message that matters (an error, how to resume): stderr, else the controlling
    terminal, else nowhere."""
    output = Output(err=True)
    output(text)
    if not output.closed:
        return
    with contextlib.suppress(OSError):
        with open("/dev/tty", "w", encoding="utf-8") as terminal:
            terminal.write(text + "\n")


def progress_on_stderr(label: str, minimum: int = 20):
    """A `(done, total)` callback drawing a bar on stderr for work of at least `minimum`
    items, when stderr is a terminal (stdout keeps the command's results); else None. The
    bar erases itself when the work is done."""
    output = Output(err=True)
    if not output.isatty():
        return None
    bar = ProgressBar(output)

    def report(done: int, total: int) -> None:
        if total < minimum:
            return
        bar.update(label, done, total)
        if done >= total:
            bar.clear()

    return report


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class ProgressBar:
    """`epoch 3/20 [#########.........] 412/600 0:04 left` on one terminal line, redrawn at
    most `refresh` times a second; `clear` erases it for the epoch's summary line."""

    WIDTH = 24

    def __init__(self, output: Output, refresh: float = 10.0) -> None:
        self.output = output
        self.interval = 1.0 / refresh
        self.started = time.perf_counter()
        self.last_drawn = 0.0

    def start(self) -> None:
        self.started = time.perf_counter()
        self.last_drawn = 0.0

    def update(self, label: str, done: int, total: int, unit: str = "") -> None:
        now = time.perf_counter()
        if now - self.last_drawn < self.interval and done < total:
            return
        self.last_drawn = now
        filled = self.WIDTH * done // max(total, 1)
        elapsed = now - self.started
        bar = "#" * filled + "." * (self.WIDTH - filled)
        # The first batches include compiling: no estimate from them.
        left = (f"{_duration(elapsed / done * (total - done))} left" if done >= 3
                else "estimating")
        self.output.write(f"\r{label} [{bar}] {done}/{total}{unit} {left}\033[K")

    def clear(self) -> None:
        """Erase the bar, so that the next line is written where it was."""
        self.output.write("\r\033[K")
