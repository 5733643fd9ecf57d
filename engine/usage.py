"""The one argument parser of every subcommand (run, mock, plugins,
report, compare): argparse, except that a bad flag is a one-line
UsageError (the command prints it and exits 2, no usage block, no
traceback) instead of argparse printing and calling sys.exit.

A leaf: it imports nothing of ours but engine.errors.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from engine.errors import UsageError


class _HelpShown(SystemExit):
    """argparse's exit after --help: a SystemExit still (status 0) for
    callers of parse_args, told apart from any other by `parse`."""


class CommandParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + sys.exit(2)
        raise UsageError(f"{message} (see {self.prog} --help)")

    def exit(self, status: int = 0, message: str | None = None):  # only --help reaches it: error() raises
        if message:
            self._print_message(message, sys.stderr)
        raise _HelpShown(status)

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace | None:
        """The parsed flags, or None once --help has been printed (the
        command is done: exit 0).  A bad flag raises UsageError."""
        try:
            return self.parse_args(list(argv) if argv is not None else None)
        except _HelpShown:
            return None
