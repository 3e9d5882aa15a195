"""Reading tab-separated text files with a header, bad rows counted or (``strict``) fatal."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pipelines.files import bad_line, non_blank, read_lines, skip

_INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits: str.isdigit() also takes "²"


def read_labeled(
    path: str | Path,
    *,
    what: str,
    header: Sequence[str],
    text_column: str,
    label_column: str,
    num_labels: int,
    strict: bool = False,
) -> tuple[list[str], list[int], Counter]:
    """(texts, labels, dropped) of a TSV whose first line is `header`, or already a well-formed
    row (a header-less file, e.g. rows cut out of one with a header).

    Dropped rows, by reason: ``"non_utf8"``, ``"empty"`` (a blank line), ``"malformed"`` (wrong
    number of fields, empty text), ``"bad_label"`` (not an integer in ``[0, num_labels)``).

    Raises:
        FileNotFoundError: no such file. ValueError: empty file, wrong header, no usable row,
        or with `strict` the first bad row (file, line, problem).
    """
    lines = read_lines(path, what, strict=strict)
    text_at, label_at = header.index(text_column), header.index(label_column)
    rows = list(lines)
    if not _is_row(lines, header, label_at, num_labels):  # a header-less file starts with data
        _header(lines, what, header)
        rows = rows[1:]
    texts, labels, dropped = [], [], Counter(lines.dropped)
    for number, line in non_blank(rows, dropped, lines.path):
        fields = line.split("\t")
        text = fields[text_at].strip() if len(fields) == len(header) else ""
        if not text:
            if strict:
                raise bad_line(
                    lines.path,
                    number,
                    f"expected {len(header)} tab-separated "
                    f"fields {list(header)} with a non-empty {text_column}",
                    line,
                )
            skip(dropped, "malformed", lines.path, number, line)
            continue
        raw_label = fields[label_at].strip()
        label = int(raw_label) if _INTEGER.fullmatch(raw_label) else -1
        if not 0 <= label < num_labels:
            if strict:
                raise bad_line(
                    lines.path,
                    number,
                    f"expected a {label_column} in {list(range(num_labels))}, got {raw_label!r}",
                    line,
                )
            skip(dropped, "bad_label", lines.path, number, line)
            continue
        texts.append(text)
        labels.append(label)
    if not texts:
        raise ValueError(
            f"Expected {what} at {str(lines.path)!r}, but no row is usable "
            f"(dropped: {dict(dropped)})."
        )
    return texts, labels, dropped


def read_column(
    path: str | Path, *, what: str, header: Sequence[str], column: str, strict: bool = False
) -> tuple[list[str], Counter]:
    """One text column of a TSV with `header` (e.g. GLUE's unlabeled ``index<TAB>sentence``)."""
    lines = read_lines(path, what, strict=strict)
    columns = _header(lines, what, header)
    at = columns.index(column)
    texts, dropped = [], Counter(lines.dropped)
    for number, line in non_blank(list(lines)[1:], dropped, lines.path):
        fields = line.split("\t")
        if len(fields) != len(columns) or not fields[at].strip():
            if strict:
                raise bad_line(lines.path, number, f"expected fields {list(columns)}", line)
            skip(dropped, "malformed", lines.path, number, line)
            continue
        texts.append(fields[at].strip())
    return texts, dropped


def _is_row(lines, header: Sequence[str], label_at: int, num_labels: int) -> bool:
    """Whether the file's first line is already a well-formed labeled row."""
    if not len(lines) or lines.numbers[0] != 1:
        return False
    fields = lines.texts[0].split("\t")
    return (
        len(fields) == len(header)
        and all(f.strip() for f in fields)
        and fields[label_at].strip() in {str(i) for i in range(num_labels)}
    )


def _header(lines, what: str, header: Sequence[str]) -> list[str]:
    if not len(lines) or lines.numbers[0] != 1:
        raise ValueError(
            f"Expected {what} at {str(lines.path)!r} starting with the header "
            f"{chr(9).join(header)!r}, but its first line is missing or not UTF-8."
        )
    got = [c.strip() for c in lines.texts[0].split("\t")]
    if got != list(header):
        raise ValueError(
            f"Expected {what} at {str(lines.path)!r} with the header "
            f"{chr(9).join(header)!r}. Received: {lines.texts[0]!r}"
        )
    return got
