"""How a fit reports itself on the command line: the per-round progress (a bar on a
terminal, lines otherwise), the kernel-build notice, the JSON log of rounds.

Used by ``duhl-cl train`` (duhl_cl.cli.train) and ``duhl-cl demo``; each takes the round
records the estimators' ``callback`` hands over (duhl_cl.duhl.rounds).
"""

from __future__ import annotations

import json
import sys

__all__ = ["Progress"]


class Progress:
    """Per-round progress: one updating bar on a terminal, plain lines otherwise; feeds the log.

    Each round is printed once. A fit that stops short of converging hands its last round
    over again, completed with the stop's certificate (``"final": True``, see
    duhl_cl.duhl.rounds.Run.finish): on a terminal it replaces the bar, in plain lines it is
    not repeated (the summary prints that certificate). The log is written one record
    behind, so that its last line is the last round's record in its final state, marked
    ``"final": true`` by :meth:`close`.

    Parameters
    ----------
    log : callable, optional
        Called with each record to keep (one per round).
    stream : file, optional
        Where the lines go (default stdout).
    before_line : callable, optional
        Called before each line is printed (the command line ends its build notice there).
    """

    def __init__(self, log=None, stream=None, before_line=None):
        self.log, self.stream, self.before_line = log, stream or sys.stdout, before_line
        self.tty = self.stream.isatty()
        self.open = False
        self.pending = None  # the newest record, not yet logged

    def __call__(self, rec):
        from ..duhl.rounds import format_round

        again = self.pending is not None and rec["round"] == self.pending["round"]
        if self.pending is not None and not again and self.log is not None:
            self.log(self.pending)
        self.pending = rec
        if again and not self.tty:
            return
        if self.before_line is not None:
            self.before_line()
        line = format_round(rec)
        if self.tty:
            self.stream.write("\r\033[K" + line[:160])
            self.open = True
        else:
            self.stream.write("  " + line + "\n")
        self.stream.flush()

    def end_bar(self):
        """End the terminal's bar line (before other output, e.g. a build notice)."""
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False

    def close(self, final=None):
        """End the bar and log the last record; ``final``: a dict of what the fit ended with
        (e.g. converged, stop_reason), logged with the record and ``"final": true``; None
        where the fit did not end (it raised): the record is logged as it is."""
        self.end_bar()
        if self.pending is not None and self.log is not None:
            rec = self.pending if final is None else {**self.pending, **final, "final": True}
            self.log(rec)
        self.pending = None


class _BuildNotice:
    """``building kernels for <device> ... 1.8 s (6 programs)`` on stderr: opened as the
    first program build starts (duhl_cl.device.build.watch_builds), ended with the measured
    seconds before the next line of output (:meth:`end`). ``before_open`` is called first
    (a build mid-fit, e.g. of the float64 refinement, ends the progress bar's line)."""

    def __init__(self, stream=None, before_open=None):
        self.stream, self.before_open = stream or sys.stderr, before_open
        self.open, self.seconds, self.programs = False, 0.0, 0

    def __call__(self, device, name, origin, seconds):
        if seconds is not None:
            self.seconds += seconds
            self.programs += 1
        elif not self.open:
            if self.before_open is not None:
                self.before_open()
            what = "loading prebuilt kernels" if origin == "prebuilt" else "building kernels"
            self.stream.write(f"{what} for {device.label()} ...")
            self.stream.flush()
            self.open, self.seconds, self.programs = True, 0.0, 0

    def end(self):
        if self.open:
            n = self.programs
            self.stream.write(f" {self.seconds:.2f} s ({n} program{'s' if n != 1 else ''})\n")
            self.stream.flush()
            self.open = False


class _JsonLog:
    def __init__(self, path):
        self.f = open(path, "w") if path else None

    def __call__(self, record):
        if self.f:
            self.f.write(json.dumps(record) + "\n")
            self.f.flush()

    def close(self):
        if self.f:
            self.f.close()
