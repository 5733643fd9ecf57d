"""Reading a dataset's local files, with one-line errors that say which file
is missing or wrong and what it should be.  DatasetPluginBase's helpers
(`dataset_line_by_line`, `dataset_json_list`, ...) are these functions."""
from __future__ import annotations

import json
import os
from typing import Any, Iterator

from engine.errors import DatasetError


def lines(path: str | None, what: str | None = None) -> Iterator[str]:
    """Non-empty lines of a text file, stripped."""
    what = what or "a text file, one prompt per line"
    with _open(path, what) as f:
        for line in _text_lines(f, path, what):
            line = line.strip()
            if line:
                yield line


def json_items(path: str | None, what: str | None = None) -> Iterator[Any]:
    """Items of a JSON list file, or the objects of a JSON-lines file."""
    what = what or "a JSON list or a JSON-lines file"
    with _open(path, what) as f:
        try:
            head = f.read(1)
            while head and head.isspace():
                head = f.read(1)
            if head == "[":
                try:
                    items = json.loads(head + f.read())
                except ValueError as e:
                    raise DatasetError(f"dataset file '{path}' is not valid JSON ({e}): expected {what}") from None
                yield from items
                return
            f.seek(0)
        except UnicodeDecodeError:
            raise DatasetError(f"dataset file '{path}' is not UTF-8 text: expected {what}") from None
        for n, line in enumerate(_text_lines(f, path, what), 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError:
                    raise DatasetError(f"dataset file '{path}' line {n} is not JSON: expected {what}") from None


def folder(path: str | None, what: str) -> str:
    """An existing folder, or a DatasetError saying what it must hold."""
    if not path:
        raise DatasetError(f"this dataset reads a local folder: pass --dataset-path with {what}")
    if not os.path.isdir(path):
        raise DatasetError(f"dataset folder '{path}' not found: --dataset-path must name {what}")
    return path


def format_error(path: str | None, where: str, problem: str, what: str) -> DatasetError:
    """The error for a file that is there but not in the expected format."""
    return DatasetError(f"dataset file '{path}' {where} {problem}: expected {what}")


def _text_lines(f, path: str | None, what: str) -> Iterator[str]:
    try:
        yield from f
    except UnicodeDecodeError:
        raise DatasetError(f"dataset file '{path}' is not UTF-8 text: expected {what}") from None


def _open(path: str | None, what: str):
    if not path:
        raise DatasetError(f"this dataset reads a local file: pass --dataset-path with {what}")
    if not os.path.isfile(path):
        raise DatasetError(f"dataset file '{path}' not found: --dataset-path must name {what}")
    try:
        return open(path, encoding="utf-8")
    except OSError as e:
        raise DatasetError(f"cannot read dataset file '{path}': {e.strerror}") from None
