"""`dates`: human-readable dates -> ISO ``YYYY-MM-DD`` (synthetic, character level, no file).

Generated in process from `seed`. Every calendar day from 1950-01-01 to 2049-12-31 is assigned
to exactly one split (a seeded permutation of the days cut by `fractions`), and each example
draws a day from its split's pool, so **the same date is never in two splits** whatever its
surface form. Each example picks one of `FORMATS` and one casing (upper, lower, title)
uniformly::

    9 May 2018 | Wednesday 9 May 2018 | May 9, 2018 | Wed, May 9th 2018 | 9th of May 2018
    2018/05/09 | 09.05.2018 (day.month.year) | 09 May 2018 | Wednesday, May 9, 2018 | May 9 2018

(the weekday is the real one; ``title`` capitalizes each word that starts with a letter,
``9th Of May 2018``). `test_path`: a ``human<TAB>YYYY-MM-DD`` file used as the test split; its
dates are taken out of the train / validation pools.

Element: ``((src_ids [B, Ts], tgt_in_ids [B, 11]), tgt_out_ids [B, 11])``, int32, see
`pipelines.seq2seq`; the target vocabulary holds the digits and ``-``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from pipelines import _checks, seq2seq
from pipelines.files import bad_line, non_blank, read_lines, skip
from pipelines.splits import Splits
from pipelines.text import Vocabulary

FIRST_DAY, LAST_DAY = dt.date(1950, 1, 1), dt.date(2049, 12, 31)
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
CASINGS = ("upper", "lower", "title")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}")


def ordinal(day: int) -> str:
    """``1 -> "1st"``, ``2 -> "2nd"``, ``11 -> "11th"``, ``23 -> "23rd"``."""
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _parts(d: dt.date) -> dict[str, str]:
    month, weekday = MONTHS[d.month - 1], WEEKDAYS[d.weekday()]
    return dict(
        d=str(d.day),
        dd=f"{d.day:02d}",
        th=ordinal(d.day),
        mm=f"{d.month:02d}",
        Y=str(d.year),
        Month=month,
        Mon=month[:3],
        Weekday=weekday,
        Wkd=weekday[:3],
    )


FORMATS: tuple[Callable[[dt.date], str], ...] = tuple(
    (lambda pattern: lambda d: pattern.format(**_parts(d)))(p)
    for p in (
        "{d} {Month} {Y}",  # 9 May 2018
        "{Weekday} {d} {Month} {Y}",  # Wednesday 9 May 2018
        "{Month} {d}, {Y}",  # May 9, 2018
        "{Wkd}, {Mon} {th} {Y}",  # Wed, May 9th 2018
        "{th} of {Month} {Y}",  # 9th of May 2018
        "{Y}/{mm}/{dd}",  # 2018/05/09
        "{dd}.{mm}.{Y}",  # 09.05.2018 (day.month.year)
        "{dd} {Mon} {Y}",  # 09 May 2018
        "{Weekday}, {Month} {d}, {Y}",  # Wednesday, May 9, 2018
        "{Mon} {d} {Y}",  # May 9 2018
    )
)


def apply_casing(text: str, casing: str) -> str:
    """``upper`` / ``lower`` / ``title`` (each word starting with a letter capitalized)."""
    if casing == "upper":
        return text.upper()
    if casing == "lower":
        return text.lower()
    return " ".join(
        w[:1].upper() + w[1:].lower() if w[:1].isalpha() else w for w in text.split(" ")
    )


def humanize(d: dt.date, form: int, casing: str) -> str:
    """One date written in format number `form` and `casing`."""
    return apply_casing(FORMATS[form](d), casing)


def all_days() -> list[dt.date]:
    """Every day from 1950-01-01 to 2049-12-31 (36,525 days)."""
    n = (LAST_DAY - FIRST_DAY).days + 1
    return [FIRST_DAY + dt.timedelta(days=i) for i in range(n)]


def generate(
    days: Sequence[dt.date], n: int, rng: np.random.Generator
) -> tuple[list[str], list[str]]:
    """`n` (human, ISO) pairs with days drawn from `days`, format and casing uniform."""
    if n == 0:
        return [], []
    day_idx = rng.integers(len(days), size=n)
    forms = rng.integers(len(FORMATS), size=n)
    casings = rng.integers(len(CASINGS), size=n)
    human = [
        humanize(days[i], f, CASINGS[c]) for i, f, c in zip(day_idx, forms, casings, strict=True)
    ]
    return human, [days[i].isoformat() for i in day_idx]


def read_pairs(path: str | Path, *, strict: bool = False) -> tuple[list[str], list[str], Counter]:
    """(human, iso) pairs of a ``human<TAB>YYYY-MM-DD`` file; bad lines counted."""
    lines = read_lines(path, "a dates file (human<TAB>YYYY-MM-DD)", strict=strict)
    human, iso, dropped = [], [], Counter(lines.dropped)
    for number, line in non_blank(lines, dropped, lines.path):
        fields = line.split("\t")
        ok = len(fields) == 2 and fields[0].strip() and _ISO.fullmatch(fields[1].strip())
        if ok:
            try:
                dt.date.fromisoformat(fields[1].strip())
            except ValueError:
                ok = False
        if not ok:
            if strict:
                raise bad_line(lines.path, number, "expected human<TAB>YYYY-MM-DD", line)
            skip(dropped, "malformed", lines.path, number, line)
            continue
        human.append(fields[0].strip())
        iso.append(fields[1].strip())
    if not human:
        raise ValueError(
            f"Expected date pairs in {str(lines.path)!r}, but no line is usable "
            f"(dropped: {dict(dropped)})."
        )
    return human, iso, dropped


def load(
    *,
    data_dir: str | None = None,
    seed: int = 0,
    batch_size: int = 64,
    test_path: str | None = None,
    num_train: int = 20_000,
    num_validation: int = 2_000,
    num_test: int = 2_000,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    strict: bool = False,
    vocabularies: Mapping[str, Vocabulary] | None = None,
) -> Splits:
    """Synthetic date pairs as batched datasets (`data_dir` is not used)."""
    seed = _checks.seed("seed", seed)
    strict = _checks.boolean("strict", strict)
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_int("num_train", num_train)
    _checks.positive_int("num_validation", num_validation)
    _checks.non_negative_int("num_test", num_test)
    fr = _checks.fractions("fractions", fractions)
    rng = np.random.default_rng(seed)
    days = all_days()
    order = rng.permutation(len(days))
    n_train, n_val = int(len(days) * fr[0]), int(len(days) * fr[1])
    if fr[2] == 0:  # the days left by rounding down are not a test pool of one or two days
        n_val = len(days) - n_train
    pools = {
        "train": [days[i] for i in sorted(order[:n_train])],
        "validation": [days[i] for i in sorted(order[n_train : n_train + n_val])],
        "test": [days[i] for i in sorted(order[n_train + n_val :])],
    }
    dropped: Counter = Counter()
    external = None
    if test_path is not None:
        human, iso, dropped = read_pairs(test_path, strict=strict)
        dropped = Counter({f"test_{k}": v for k, v in dropped.items()})
        external = (human, iso)
        taken = {dt.date.fromisoformat(s) for s in iso}
        pools = {k: [d for d in v if d not in taken] for k, v in pools.items()}
    sizes = {"train": num_train, "validation": num_validation, "test": num_test}
    for name in ("train", "validation"):
        if not pools[name]:
            raise _checks.invalid("fractions", f"a non-empty {name} share of the days", fractions)
    children = np.random.SeedSequence(seed).spawn(3)
    groups = {}
    for (name, pool), child in zip(pools.items(), children, strict=True):
        n = sizes[name] if pool else 0
        groups[name] = generate(pool, n, np.random.default_rng(child))
    if external is not None:
        groups["test"] = external
    options = dict(
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
        fractions=fr,
        test_path=test_path,
    )
    return seq2seq.assemble(
        name="dates",
        splits=groups,
        source_options=dict(level="char"),
        target_options=dict(level="char"),
        batch_size=batch_size,
        seed=seed,
        dropped=dropped,
        options=options,
        extra={"days": {k: len(v) for k, v in pools.items()}, "formats": len(FORMATS)},
        vocabularies=vocabularies,
    )
