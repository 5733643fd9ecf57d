"""The live progress line of a run: sent, done, failed, in flight, req/s,
output tok/s, elapsed.  Written to stderr so stdout stays for the report.

`sent` counts rows (each attempt with --retries is a row) plus requests in
flight, and `failed` the rows that failed: at the end, with nothing in
flight, they are the database's counts."""
from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    def __init__(self, label: str, total: int | None, enabled: bool = True):
        self.done = self.failed = self.output_tokens = self.in_flight = 0
        self.rows = 0  # results and retried attempts
        self.enabled = enabled
        self._t0 = time.monotonic()
        self._bar = tqdm(total=total, desc=label, unit="req", file=sys.stderr, disable=not enabled,
                         dynamic_ncols=True, mininterval=0.5, smoothing=0.1,
                         bar_format="{desc} {n_fmt}/{total_fmt} |{bar:20}| {elapsed}<{remaining} {postfix}")

    def on_done(self, success: bool, output_tokens: int | None) -> None:
        """A request's final row."""
        self.done += 1
        self.rows += 1
        if not success:
            self.failed += 1
        self.output_tokens += output_tokens or 0
        self._bar.update(1)
        if self.done % 16 == 0:
            self.refresh()

    def on_attempt(self, success: bool) -> None:
        """The row of an attempt that --retries repeats."""
        self.rows += 1
        if not success:
            self.failed += 1

    def refresh(self, in_flight: int | None = None) -> None:
        if in_flight is not None:
            self.in_flight = in_flight
        # the slots are read a moment before the records are: cap at what is left
        if self._bar.total:
            self.in_flight = max(0, min(self.in_flight, self._bar.total - self.done))
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        self._bar.set_postfix_str(
            f"sent {self.rows + self.in_flight} | failed {self.failed} | in flight {self.in_flight} | "
            f"{self.done / elapsed:.1f} req/s | {self.output_tokens / elapsed:.0f} tok/s", refresh=False)

    def note(self, line: str) -> None:
        """One line on stderr, above the progress bar rather than through it."""
        self._bar.write(line, file=sys.stderr)

    def close(self) -> None:
        """After every request is accounted for: nothing is in flight."""
        self.refresh(in_flight=0)
        self._bar.close()
