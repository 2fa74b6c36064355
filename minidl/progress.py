"""A small, dependency-free progress bar (in the spirit of tqdm).

Used by the data downloads and the training loop::

    with ProgressBar(total=len(loader), desc="epoch 1/5", unit="batch") as bar:
        for x, y in loader:
            ...
            bar.update(1, loss=0.1234, acc="98.1%")

What it prints depends on where it prints to:

* on a terminal (``stream.isatty()``) one line is redrawn in place with ``\\r``, at most
  ``1 / TTY_INTERVAL`` times a second, and ended with a newline by :meth:`ProgressBar.close`;
* anywhere else (a CI log, a file, a pipe) a plain line is printed at most every
  ``LOG_INTERVAL`` seconds, plus one final line on :meth:`ProgressBar.close`, so logs stay short.

A line reads ``desc: 45%|#####     | 450/1000 [00:12<00:15, 36.2 batch/s] loss=0.123`` (without a
known ``total``: ``desc: 450 batch [00:12, 36.2 batch/s] ...``).  With ``unit="B"`` counts and
rates are written in binary multiples (KiB, MiB, ...), see :func:`format_bytes`.
"""
from __future__ import annotations

import math
import sys
import time

__all__ = ["ProgressBar", "format_bytes", "format_duration"]

TTY_INTERVAL = 0.1  # seconds between redraws on a terminal (~10 per second)
LOG_INTERVAL = 5.0  # seconds between plain lines when the stream is not a terminal
BAR_WIDTH = 20

_now = time.monotonic  # the clock; tests replace it


def format_bytes(n: float) -> str:
    """``n`` bytes in binary multiples: ``"512 B"``, ``"1.5 KiB"``, ``"44.9 MiB"``, ``"120 MiB"``.

    Parameters
    ----------
    n : int or float, a byte count (>= 0; a negative count is written with its sign).

    Returns
    -------
    str
    """
    sign = "-" if n < 0 else ""
    n = abs(float(n))
    if n < 1024:
        return f"{sign}{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024.0
        if n < 1024 or unit == "PiB":
            return f"{sign}{n:.0f} {unit}" if n >= 100 else f"{sign}{n:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def format_duration(seconds: float) -> str:
    """``seconds`` as ``"MM:SS"`` (or ``"H:MM:SS"`` from one hour on); ``"?"`` when unknown.

    Parameters
    ----------
    seconds : float, a non-negative duration; ``None``, NaN or infinity give ``"?"``.
    """
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _format_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class ProgressBar:
    """A progress bar over ``total`` steps (or an open-ended counter when ``total`` is None).

    Parameters
    ----------
    total : int or None
        The number of steps (batches, bytes ...) expected; None when unknown (no percentage,
        no bar, no ETA).
    desc : str
        A label printed before the bar (e.g. ``"epoch 1/5"`` or a file name).
    unit : str
        The name of one step, used in the count and the rate (``"it"``, ``"batch"``, ``"B"``).
        ``"B"`` writes counts and rates as bytes (``"1.5 MiB"``, ``"3.2 MiB/s"``).
    stream : text file or None
        Where to print; None means ``sys.stderr`` as it is when the bar is created.
    enabled : bool
        False makes the bar silent (it still counts: :attr:`n`, :attr:`postfix`).

    Attributes
    ----------
    n : int or float, steps done so far.
    total : int or None.
    postfix : dict, the latest value of every postfix key given to :meth:`update`.
    """

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it",
                 stream=None, enabled: bool = True):
        if total is not None:
            if isinstance(total, bool) or not isinstance(total, (int, float)) or total < 0:
                raise ValueError(f"total must be a non-negative number or None, got {total!r}")
        self.total = total
        self.desc = str(desc)
        self.unit = str(unit)
        self.stream = sys.stderr if stream is None else stream
        self.enabled = bool(enabled)
        self.n = 0
        self.postfix: dict = {}
        self.closed = False
        self._tty = _is_tty(self.stream) if self.enabled else False
        self._start = _now()
        self._last_print = self._start
        self._last_len = 0
        if self._tty:
            self._draw()

    # ------------------------------------------------------------------ public

    def update(self, n: int | float = 1, **postfix) -> None:
        """Advance by ``n`` steps and remember ``postfix`` values (``loss=0.123, acc="98.1%"``).

        Floats are shown with 4 significant digits; other values with ``str``.  Prints only when
        enough time has passed since the last line (see the module docstring).
        """
        if self.closed:
            raise ValueError(f"update() on a closed ProgressBar ({self.desc or 'no desc'})")
        self.n += n
        if postfix:
            self.postfix.update(postfix)
        if not self.enabled:
            return
        now = _now()
        interval = TTY_INTERVAL if self._tty else LOG_INTERVAL
        if now - self._last_print >= interval:
            self._last_print = now
            self._draw(now)

    def set_postfix(self, **postfix) -> None:
        """Replace the postfix values without advancing (shown on the next line printed)."""
        self.postfix = dict(postfix)

    def close(self) -> None:
        """Print the final state (a newline ends the terminal line); later calls do nothing."""
        if self.closed:
            return
        self.closed = True
        if not self.enabled:
            return
        if self._tty:
            self._draw()
            self._write("\n")
        else:
            self._draw()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    @property
    def elapsed(self) -> float:
        """Seconds since the bar was created."""
        return _now() - self._start

    def format_line(self, now: float | None = None) -> str:
        """The text of one progress line for the current state (without ``\\r``/newline)."""
        elapsed = max(0.0, (_now() if now is None else now) - self._start)
        rate = self.n / elapsed if elapsed > 0 else None
        count = self._fmt_count(self.n)
        rate_s = "?" if rate is None else self._fmt_rate(rate)
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            frac = min(1.0, self.n / self.total)
            filled = int(round(frac * BAR_WIDTH))
            bar = "#" * filled + " " * (BAR_WIDTH - filled)
            remaining = (self.total - self.n) / rate if rate else None
            line = (f"{head}{frac * 100:3.0f}%|{bar}| {count}/{self._fmt_count(self.total)} "
                    f"[{format_duration(elapsed)}<{format_duration(remaining)}, {rate_s}]")
        else:
            unit = "" if self.unit == "B" else f" {self.unit}"
            line = f"{head}{count}{unit} [{format_duration(elapsed)}, {rate_s}]"
        if self.postfix:
            line += " " + " ".join(f"{k}={_format_value(v)}" for k, v in self.postfix.items())
        return line

    # ------------------------------------------------------------------ helpers

    def _fmt_count(self, n) -> str:
        if self.unit == "B":
            return format_bytes(n)
        return f"{n:g}" if isinstance(n, float) else str(n)

    def _fmt_rate(self, rate: float) -> str:
        if self.unit == "B":
            return f"{format_bytes(rate)}/s"
        return f"{rate:.1f} {self.unit}/s" if rate < 1000 else f"{rate:.0f} {self.unit}/s"

    def _draw(self, now: float | None = None) -> None:
        line = self.format_line(now)
        if self._tty:
            pad = max(0, self._last_len - len(line))
            self._last_len = len(line)
            self._write("\r" + line + " " * pad)
        else:
            self._write(line + "\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (ValueError, OSError):  # a closed stream must not break training
            pass
