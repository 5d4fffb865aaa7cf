"""Progress of farm maps with tqdm: a bar in a notebook or a terminal, plain lines in a log file."""

from __future__ import annotations

import sys
import time

# Seconds of a map before its progress line appears (short maps, such as one DEAP
# generation, stay quiet instead of printing a bar per call).
_PROGRESS_AFTER = 1.0
# When the output is neither a terminal nor a notebook (a log file, a batch job's output),
# progress is plain lines, at most one per this many seconds.
_LINE_EVERY = 10.0


class _MapProgress:
    """Progress of a map with tqdm: a bar in a notebook or a terminal, plain lines elsewhere.

    Plain lines (a log file, a batch job's output, a pipe): tqdm's status text,
    one line at most every ``_LINE_EVERY`` seconds and a last one at the end, so
    a long map leaves a readable record instead of carriage returns.
    """

    def __init__(self, total: int, what: str):
        self.total, self.what, self.done = total, what, 0
        self.t0 = time.monotonic()
        self._last_line = None
        self.bar = None
        kw = dict(total=total, desc=what, unit="task", leave=True)
        if _in_notebook():
            try:
                import ipywidgets  # noqa: F401  (tqdm's notebook bar needs it)
                from tqdm.notebook import tqdm as notebook_tqdm

                self.bar = notebook_tqdm(**kw)
            except ImportError:  # Jupyter renders a terminal bar's carriage returns fine
                from tqdm import tqdm

                self.bar = tqdm(file=sys.stderr, **kw)
        elif getattr(sys.stderr, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(file=sys.stderr, **kw)

    def _line(self, done: int, final: bool = False) -> None:
        from tqdm import tqdm

        now = time.monotonic()
        if not final and self._last_line is not None and now - self._last_line < _LINE_EVERY:
            return
        self._last_line = now
        print(tqdm.format_meter(done, self.total, now - self.t0, prefix=self.what, unit="task"),
              file=sys.stderr, flush=True)

    def update(self, done: int) -> None:
        if self.bar is not None:
            if done > self.done:
                self.bar.update(done - self.done)
        elif done > self.done or self._last_line is None:
            self._line(done)
        self.done = max(self.done, done)

    def close(self, done: int) -> None:
        if self.bar is not None:
            self.update(done)
            self.bar.close()
        else:
            self._line(done, final=True)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        ip = get_ipython()
    except ImportError:  # pragma: no cover - IPython comes with ipyparallel
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"
