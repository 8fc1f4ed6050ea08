"""Progress a person can read: a tqdm bar on a terminal; in a log (stderr not a terminal: `dvc repro > log`, CI) one
plain line every `every` seconds and one at the end, instead of hundreds of carriage-return updates.

    with Progress(total=n, desc="filter", unit="row") as bar:
        bar.update(rows_done)
    for shard in progress(shards, desc="download", unit="shard"):
        ...
    with Progress(total=max_steps, desc="train", unit="step") as bar:   # a training loop's callback
        bar.update(1, loss=0.53, tok_s=190)

A log line reads `filter: 40000/119287 row (34%), 21000 row/s, ETA 4s` (plus `, loss 0.53, tok_s 190` when
`update` is given fields). `GEMMA_TOOLCALL_PROGRESS_EVERY` (seconds) overrides `every` everywhere.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TextIO

from tqdm import tqdm

EVERY_ENV = "GEMMA_TOOLCALL_PROGRESS_EVERY"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s" if rest >= 60 else f"{rest}s"


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    """`update(n, **fields)` counts `n` more units done and shows the latest `fields` (loss=..., tok_s=...)."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", every: float = 30.0,
                 stream: TextIO | None = None, terminal: bool | None = None, initial: int = 0):
        self.total, self.desc, self.unit = total, desc, unit
        self.every = float(os.environ.get(EVERY_ENV, every))
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.done, self.fields = initial, {}
        self.initial = initial  # done before this run (a resumed one): not part of its rate
        self.start = self.last = time.monotonic()
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, initial=initial) if self.terminal else None
        self.closed = False

    def update(self, n: int = 1, **fields) -> None:
        self.done += n
        self.fields.update(fields)
        if self.bar is not None:
            if fields:
                self.bar.set_postfix({k: _number(v) for k, v in self.fields.items()}, refresh=False)
            self.bar.update(n)
        elif time.monotonic() - self.last >= self.every:
            self._print()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = (self.done - self.initial) / elapsed
        done = f"{self.done}/{self.total} {self.unit}" if self.total else f"{self.done} {self.unit}"
        parts = [f"{self.desc}: {done}" + (f" ({100 * self.done / self.total:.0f}%)" if self.total else ""),
                 f"{rate:.4g} {self.unit}/s"]
        if self.total and self.done < self.total and rate > 0:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        elif self.done and self.total and self.done >= self.total:
            parts.append(f"done in {_duration(elapsed)}")
        parts += [f"{k} {_number(v)}" for k, v in self.fields.items()]
        return ", ".join(parts)

    def _print(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self.last = time.monotonic()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        else:
            self._print()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def quiet_hub_bars() -> None:
    """In a log, turn off huggingface_hub's byte-level download bars (hundreds of updates per file); the stage's own
    Progress still prints a line per file."""
    if not sys.stderr.isatty():
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def progress(items: Iterable, total: int | None = None, **kwargs) -> Iterator:
    """`items`, counted one by one as they are taken (like `tqdm(items)`)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with Progress(total=total, **kwargs) as bar:
        for item in items:
            yield item
            bar.update(1)
