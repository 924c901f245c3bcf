"""A CSV file as a numeric table: column kinds, missing values, levels and log transforms.

Each column becomes numbers by one rule, fitted on the training rows once and saved with the run
(``preprocessing.json``) so that prediction applies exactly the same encoding without refitting:

- numeric columns stay as they are; numbers written for people (``"1,250"``, ``"$412,000"``,
  ``"7.5%"``, spaces around a value) are numbers: a column is numeric when every non-empty cell
  parses once those are removed (or nine in ten do: the others are then typing errors, named);
- dates (``2014-10-13``, ``20141013T000000``, ``10/13/2014``) become decimal years
  (``data.dates=decimal_year``) or are dropped (``data.dates=drop``);
- text columns whose two values are yes/no, y/n, true/false, t/f or on/off become 1/0;
- other text columns, and the columns named in ``data.categorical``, are categories: one-hot
  columns ``<column>_<level>``, the first level in sorted order dropped as the reference.
  Levels seen fewer than ``data.min_level_count`` times in the training rows are pooled into one
  ``other`` level, and so is a level never seen in them (in val/test rows or at prediction, with
  a warning). An empty cell is a level of its own (``data.missing=mean``), never the most
  frequent one; the strings ``NA`` and ``None`` in a column that also holds other text are
  levels (in the Ames data ``NA`` means "no alley"). ``data.text_columns=error`` refuses text;
- free text (more than ``data.max_levels`` values, or a different value in most rows) is an
  error that suggests ``data.drop``;
- a nameless column holding the row numbers or names (an index written by pandas or R) and a
  column with no value at all (a trailing comma on every line) are dropped with a note, and so
  is every encoded column that is constant in the training rows.

The separator (``,`` ``;`` or tab) and the decimal mark (``.`` or ``,``) are detected unless
``data.sep`` / ``data.decimal`` say them. pandas parses plain numbers (``decimal=``); columns
it leaves as text are cleaned, column by column, vectorised: thousands separators (checked to
stand between groups of three digits), currency and percent signs, spaces. A column's cells
can overrule the file's decimal mark, with a note: a mark twice in a number (``1,690,557``), or
after a currency sign before groups of three digits (``$554,549``), is that column's thousands
separator; a ``;``/tab file's column written only like ``554,549`` is read with the file's
mark, with a note saying how to have it read as thousands.
Rows are named by their number among the data rows (1 is the first row under the header).
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import re
import unicodedata
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data.column_code import MISSING, OTHER, ColumnCode
from data.table import Table
from errors import UserError, hydra_list, printable

BOOLEAN_PAIRS = ({"yes", "no"}, {"y", "n"}, {"true", "false"}, {"t", "f"}, {"on", "off"})
TRUE_WORDS = {"yes", "y", "true", "t", "on"}
FALSE_WORDS = {"no", "n", "false", "f", "off"}
# in a numeric column these mean "no value"; in a text column they are levels like any other
# what people and programs write for a missing number (R, pandas, Excel's #N/A, SAS's ".")
NA_TOKENS = (
    *("NA", "N/A", "n/a", "na", "#N/A", "#NA", "NaN", "nan", "null", "NULL", "None", "none"),
    *("?", "-", "--", ".", "missing", "Missing", "MISSING"),
)
EXCEL_ERRORS = ("#VALUE!", "#DIV/0!", "#REF!", "#NAME?", "#NUM!", "#NULL!", "#SPILL!", "#CALC!")
_CURRENCY_CODES = (
    "USD|EUR|GBP|CHF|CAD|AUD|NZD|JPY|CNY|INR|SEK|NOK|DKK|PLN|CZK|HUF|ZAR|BRL|MXN|HKD|SGD"
)
_SIGN_CODES = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR"}  # one currency each
_MONEY = rf"[{''.join(_SIGN_CODES)}]|\b(?:{_CURRENCY_CODES})\b"  # a sign or a code in a cell
# what people write around a number ("$412,000", "USD 412,000", "7.5%", "1 250"), Excel's
# text prefix ("'1200") and the Swiss thousands separator, an apostrophe between groups of
# three digits ("1'250'000"; "5'10" is no number): removed before parsing
_DECORATION = (
    rf"[\s{''.join(_SIGN_CODES)}%]|(?<=\d)['’](?=\d{{3}}(?!\d))|^'(?=[+-]?\d)"
    rf"|^(?:{_CURRENCY_CODES})(?=[\s\d+-])|(?<=[\d\s])(?:{_CURRENCY_CODES})$"
)
_FULL_WIDTH = "[\uff01-\uff5e\uffe0-\uffe6\u3000]"  # full-width ASCII, signs, space
_MONTH = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
# a day's name before a date ("Tuesday, July 8, 2014", "Tue, 08 Jul 2014"): it says nothing more
_WEEKDAY = re.compile(
    r"^(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:\.|day|nesday|rsday|urday)?,?\s+",
    re.IGNORECASE,
)
# a month written in full, in three letters, as AP style writes it ("Sept.", "Oct.", "March")
_MONTH_WORD = re.compile(
    r"\b(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b\.?",
    re.IGNORECASE,
)
DATE_FORMATS = (
    (re.compile(r"^\d{4}-\d{2}-\d{2}$"), "%Y-%m-%d"),
    # with a time, and a time zone (UTC's Z or an offset)
    (
        re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"),
        "ISO8601",
    ),
    (re.compile(r"^\d{8}T\d{6}$"), "%Y%m%dT%H%M%S"),
    (re.compile(r"^\d{4}/\d{1,2}/\d{1,2}$"), "%Y/%m/%d"),
    (re.compile(r"^\d{4}-\d{2}$"), "%Y-%m"),  # a month: its first day
    # month first unless a first number above 12 says the day is (see _date_format)
    (re.compile(r"^\d{1,2}/\d{1,2}/\d{4}$"), "%m/%d/%Y"),
    (re.compile(r"^\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}$"), "%m/%d/%Y %H:%M"),
    (re.compile(r"^\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2}$"), "%m/%d/%Y %H:%M:%S"),
    (re.compile(r"^\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2} [AP]M$"), "%m/%d/%Y %I:%M:%S %p"),
    (re.compile(r"^\d{1,2}/\d{1,2}/\d{2}$"), "%m/%d/%y"),
    (re.compile(r"^\d{1,2}\.\d{1,2}\.\d{4}$"), "%d.%m.%Y"),
    (re.compile(r"^\d{1,2}\.\d{1,2}\.\d{2}$"), "%d.%m.%y"),
    # a month's name, matched once written as its first three letters (_month_abbreviations)
    (re.compile(rf"^\d{{1,2}}-{_MONTH}-\d{{4}}$"), "%d-%b-%Y"),
    (re.compile(rf"^\d{{1,2}}-{_MONTH}-\d{{2}}$"), "%d-%b-%y"),  # Excel's d-mmm-yy
    (re.compile(rf"^\d{{1,2}} {_MONTH} \d{{4}}$"), "%d %b %Y"),
    (re.compile(rf"^{_MONTH} \d{{1,2}}, \d{{4}}$"), "%b %d, %Y"),  # Oct 13, 2014
    (re.compile(rf"^{_MONTH} \d{{1,2}} \d{{4}}$"), "%b %d %Y"),
    (re.compile(rf"^\d{{1,2}} {_MONTH}, \d{{4}}$"), "%d %b, %Y"),
    (re.compile(rf"^\d{{1,2}}/{_MONTH}/\d{{4}}$"), "%d/%b/%Y"),  # a web server's log
    (re.compile(rf"^\d{{4}}-{_MONTH}-\d{{1,2}}$"), "%Y-%b-%d"),
    # a month: its first day (Excel's mmm-yy, Jul-14)
    (re.compile(rf"^{_MONTH}-\d{{2}}$"), "%b-%y"),
    (re.compile(rf"^{_MONTH}-\d{{4}}$"), "%b-%Y"),
    (re.compile(rf"^{_MONTH} \d{{4}}$"), "%b %Y"),
)
SEPARATORS = (",", ";", "\t", "|")


@dataclass
class Encoding:
    """The fitted rules that turn a CSV's columns into the model's inputs, and how the file is
    written (``sep``, ``decimal``; the thousands separator is the other of ``.`` and ``,``)."""

    target: str
    columns: list[ColumnCode]
    log_target: bool = False
    sep: str = ","
    decimal: str = "."
    dropped_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # of the last transform, unprefixed
    target_decimal: str | None = None  # the target's own mark, as ColumnCode.decimal
    # the run's data.missing: under `mean` a new row's empty text cell is what it was in the
    # val/test rows, its own level if the training rows had one, else `other`
    missing: str = "error"

    @property
    def used_columns(self) -> list[ColumnCode]:
        """The columns with at least one output the model takes (a constant one has none)."""
        return [c for c in self.columns if c.outputs]

    @property
    def feature_names(self) -> list[str]:
        return [name for c in self.columns for name in c.outputs]

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "log_target": self.log_target,
            "sep": self.sep,
            "decimal": self.decimal,
            "dropped_columns": self.dropped_columns,
            "notes": self.notes,
            "columns": [asdict(c) for c in self.columns],
            "target_decimal": self.target_decimal,
            "missing": self.missing,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Encoding:
        return cls(
            d["target"],
            [ColumnCode(**c) for c in d["columns"]],
            d["log_target"],
            d.get("sep", ","),
            d.get("decimal", "."),
            list(d.get("dropped_columns", [])),
            list(d.get("notes", [])),
            target_decimal=d.get("target_decimal"),
            missing=d.get("missing", _missing_policy_of(d["columns"])),
        )

    def describe(self) -> str:
        """Each column's encoding, the target's, and the notes of the fit, in words (what a run
        prints), the encoding on the first line and each note on one of its own."""
        parts = []
        for c in self.columns:
            if c.kind == "onehot":
                pooled = f", {len(c.rare)} rare level(s) as {OTHER!r}" if c.rare else ""
                reference = repr(c.levels[0]) if c.levels else "none: every level is rare"
                parts.append(f"{c.name}: one-hot {c.outputs} (reference {reference}{pooled})")
            elif c.kind == "boolean":
                parts.append(f"{c.name}: yes/no as 1/0{_filled(c)}")
            elif c.kind == "date":
                parts.append(f"{c.name}: date as decimal year{_filled(c)}")
            else:
                parts.append(f"{c.name}: {'log' if c.log else 'numeric'}{_filled(c)}")
        if not self.used_columns:  # no feature columns: b alone, the mean-price baseline
            parts = ["no feature columns, the model predicts the mean target", *parts]
        parts.append(f"target {self.target}: {'log' if self.log_target else 'numeric'}")
        # a line each, a name's control characters escaped (a line break split the line)
        return printable("; ".join(parts)) + "".join(f"\nnote: {printable(n)}" for n in self.notes)

    def transform(
        self, df: pd.DataFrame, source: str, missing: str = "error", where: str = "the new rows"
    ) -> np.ndarray:
        """Encode ``df``: float32, shape (rows, len(feature_names)).

        A missing cell is filled from the training rows under ``missing=mean`` and is an error
        otherwise; ``missing="predict"`` (new rows): a cell of a column the run filled (its
        ``fill``) is filled the same way, with a line in :attr:`warnings`, an empty text cell of
        a run trained with ``missing=mean`` is what it was in that run's val/test rows (its own
        level, or ``other``), and any other is the error, with what to do; a level not seen in
        training
        counts as ``other`` and adds a line to :attr:`warnings`; a word in a numeric column and a
        non-positive value under a log are errors naming the column and row."""
        self.warnings = []
        columns = self.used_columns
        for c in columns:
            if c.name not in df.columns:
                raise UserError(
                    f"{source}: no column {c.name!r}; the model needs columns "
                    f"{', '.join(c.name for c in columns)}"
                )
        if missing == "predict":  # what the run's own val/test rows would have had
            columns_to_fill = [
                c
                for c in columns
                if c.fill is None and not (c.kind == "onehot" and self.missing == "mean")
            ]
            _refuse_missing(df, columns_to_fill, source, missing, self.decimal)
        elif missing != "mean":
            _refuse_missing(df, columns, source, missing, self.decimal)
        if missing == "predict":
            filled = {
                c.name: (int(_missing_mask(df[c.name], c, self.decimal).sum()), c.fill)
                for c in columns
                if c.fill is not None
            }
            for name, (n, fill) in filled.items():
                if n:
                    self.warnings.append(
                        f"{source}: {n} empty cell{'s' * (n > 1)} in column {name!r} "
                        f"filled with {fill:.6g}, the training rows' mean, as the run filled its "
                        "own (data.missing=mean)"
                    )
        n = len(df)
        # column by column: Fortran order keeps each column's writes contiguous
        X = np.empty((n, len(self.feature_names)), np.float32, order="F")
        j = 0
        for c in columns:
            encoded = _encode(
                df[c.name], c, source, self.decimal, self.warnings, where, missing == "predict"
            )
            for name, values in encoded:
                if name not in c.dropped:
                    X[:, j] = values
                    j += 1
        return X


def _missing_policy_of(columns: list[dict]) -> str:
    """The ``data.missing`` of a run saved before encodings recorded it: ``mean`` if it filled
    a column or learned an empty text cell as a level, else ``error`` (refuse empty cells)."""
    filled = any(c.get("fill") is not None or MISSING in c.get("levels", ()) for c in columns)
    return "mean" if filled else "error"


def _filled(c: ColumnCode) -> str:
    return "" if c.fill is None else f", missing cells filled with {c.fill:.6g} (training mean)"


def _row(col: pd.Series, position: int) -> int:
    """The data-row number (1 = first row under the header) of a cell, after dropped rows."""
    return int(col.index[position]) + 1


_cache: dict[int, tuple[object, tuple[np.ndarray, np.ndarray]]] | None = None


@contextmanager
def _caching():
    """Within: :func:`_cells` of the same column array is computed once (fitting reads each
    column several times: its kind, its missing cells, its levels, its values)."""
    global _cache
    outer = _cache
    _cache = {} if outer is None else outer
    try:
        yield
    finally:
        _cache = outer


def _cells(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, texts)``: cell ``i`` is ``texts[codes[i]]``, stripped, or empty where
    ``codes[i] == -1``. Whole numbers are written as integers (zip code 98178 is ``'98178'``
    whatever the column's dtype). Every string operation then runs on the distinct values
    (``pandas.factorize``): a column of 10^6 cells with a few levels costs one hash pass."""
    key = getattr(col.array, "_ndarray", col.array)
    if _cache is not None and id(key) in _cache:
        return _cache[id(key)][1]
    codes, uniq = pd.factorize(col, use_na_sentinel=True)
    if pd.api.types.is_bool_dtype(col):
        texts = ["True" if u else "False" for u in uniq]
    elif pd.api.types.is_numeric_dtype(col):
        values = np.asarray(uniq, np.float64)
        texts = [str(int(v)) if v == np.round(v) and np.isfinite(v) else str(v) for v in values]
    else:
        texts = [str(u).strip() for u in uniq]
    # stripping can make two values one, or a value empty
    merged, distinct = pd.factorize(
        pd.Series(texts, dtype=object).replace("", np.nan), use_na_sentinel=True
    )
    merged = np.append(merged, -1)  # code -1 (an empty cell) stays -1
    result = (merged[codes].astype(np.int64), np.asarray(distinct, dtype=object))
    if _cache is not None:
        _cache[id(key)] = (key, result)
    return result


_WHOLE_WITH_ZEROS = re.compile(r"([+-]?\d+)\.0+")


def _level_cells(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_cells` of a category column, a whole number written with zero decimals one
    level with it written without (``3.0`` is ``3``, ``98004.0`` is ``98004``), as they are in
    a column pandas reads as numbers: one text cell ('5+') among them made ``beds_3`` and
    ``beds_3.0`` two levels of different coefficients (helper-65)."""
    codes, texts = _cells(col)
    whole = [m.group(1) if (m := _WHOLE_WITH_ZEROS.fullmatch(str(t))) else t for t in texts]
    if whole == list(texts):
        return codes, texts
    merged, distinct = pd.factorize(pd.Series(whole, dtype=object))
    return np.where(codes < 0, -1, np.append(merged, -1)[codes]), np.asarray(distinct, object)


def _per_cell(per_value: np.ndarray, codes: np.ndarray, empty) -> np.ndarray:
    """A value per distinct text spread to the cells; ``empty`` where a cell is empty."""
    return np.append(per_value, empty)[codes]


def _missing_words(texts: np.ndarray) -> np.ndarray:
    """Which of a column's distinct ``texts`` (:func:`_cells`) are words for a missing value
    (:data:`NA_TOKENS`)."""
    return np.isin(texts.astype(str), NA_TOKENS)


def _parse_numbers(col: pd.Series, decimal: str) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, which cells are empty or an NA word). Cells that do not parse are NaN
    and not marked empty. Thousands separators, currency and percent signs, spaces: removed;
    the typographic minus (U+2212) and accounting's parentheses ``(1,250)`` are minus signs."""
    if pd.api.types.is_bool_dtype(col):
        values = col.to_numpy(dtype=np.float64)
        return values, np.zeros(len(col), bool)
    if pd.api.types.is_numeric_dtype(col):
        values = col.to_numpy(dtype=np.float64)
        return values, np.isnan(values)
    codes, texts = _cells(col)
    text = pd.Series(texts, dtype=object)
    na = text.isin(NA_TOKENS).to_numpy()
    text = _half_width(text)
    thousands = "," if decimal == "." else "."
    bare = text.str.replace(_DECORATION, "", regex=True)
    # the typographic minus, accounting's parentheses for a negative amount, "(1,250)", and
    # SAP's trailing minus, "1,250-"
    bare = (
        bare.str.replace("\u2212", "-", regex=False)
        .str.replace(r"^\((.*)\)$", r"-\1", regex=True)
        .str.replace(r"^(\d[\d.,]*)-$", r"-\1", regex=True)
    )
    # a thousands separator only between groups of three digits: "1,250" is 1250, but "1,5" in
    # a file whose decimal mark is "." is no number (pandas' own `thousands=` would read 15)
    t, d = re.escape(thousands), re.escape(decimal)
    # and India's lakh and crore: groups of two before the last three, "2,37,42,400"
    grouped = rf"[+-]?(?:\d{{1,3}}(?:{t}\d{{3}})+|\d{{1,2}}(?:{t}\d{{2}})+{t}\d{{3}})(?:{d}\d*)?"
    misplaced = bare.str.contains(thousands, regex=False) & ~bare.str.fullmatch(grouped)
    cleaned = bare.mask(misplaced, "not a number").str.replace(thousands, "", regex=False)
    if decimal == ",":
        cleaned = cleaned.str.replace(",", ".", regex=False)
    values = pd.to_numeric(cleaned.where(~na), errors="coerce").to_numpy(dtype=np.float64)
    return _per_cell(values, codes, np.nan), _per_cell(na, codes, True)


def _half_width(text: pd.Series) -> pd.Series:
    """``text`` (strings) with the full-width forms East Asian input methods type ("２００８",
    "１，２５０", "￥") in their ASCII and sign forms (Unicode's compatibility normalization),
    the cells without them as they are."""
    wide = text.str.contains(_FULL_WIDTH, regex=True).fillna(False).to_numpy(bool)
    if not wide.any():
        return text
    text = text.copy()
    text[wide] = [unicodedata.normalize("NFKC", t) for t in text[wide]]
    return text


def _other_mark(mark: str) -> str:
    return "," if mark == "." else "."


def _column_decimal(
    col: pd.Series, name: str, decimal: str, sep: str, path: str | None = None
) -> tuple[str, str | None]:
    """The decimal mark to read column ``col`` with, and a note for the user (or None).

    The file's mark ``decimal`` unless the column's own cells say its character is the
    thousands separator there: (a) a decimal mark appears once in a number, so a cell with it
    twice or more between groups of three digits (``1,690,557``) makes it the thousands
    separator; (b) money has no three-decimal amounts, so a cell with a currency sign whose
    digits after it are groups of three (``$554,549``) does too. A column read against the
    file's mark gets a note; so does one still ambiguous in a ``;``/tab file (every value with
    the file's mark written like ``554,549``, the others whole numbers: :func:`_thousands_like`),
    read with the file's mark: judged on the cells as the file at ``path`` writes them
    (``5,850`` and ``5,85`` are both 5.85 once read)."""
    other = _other_mark(decimal)
    if pd.api.types.is_bool_dtype(col):
        return decimal, None
    if pd.api.types.is_numeric_dtype(col):
        if sep == ",":  # a ',' file's decimal mark is '.': no ambiguity
            return decimal, None
        # pandas read every cell with the file's mark; only the values are left to judge
        v = col.to_numpy(dtype=np.float64)
        v = np.abs(v[np.isfinite(v)])
        fractions = v[v != np.round(v)]  # '3,231' read as 3.231; '903' and '4,000' are whole
        thousandths = fractions * 1000
        if (
            fractions.size
            and ((fractions >= 1) & (fractions < 1000)).all()
            and (np.abs(thousandths - np.round(thousandths)) < 1e-6 * thousandths).all()
        ):
            written = _cells_as_written(col, path, sep)
            example = None if written is None else _thousands_like(written, decimal)
            if example is not None:
                return decimal, _ambiguous_note(name, example, decimal, written)
        return decimal, None
    _, texts = _cells(col)
    text = pd.Series(texts, dtype=object)
    text = text[~text.isin(NA_TOKENS)]
    bare = _half_width(text).str.replace(_DECORATION, "", regex=True)
    mark = re.escape(decimal)
    fraction = rf"(?:{re.escape(other)}\d*)?"
    repeated = bare.str.fullmatch(rf"[+-]?\d{{1,3}}(?:{mark}\d{{3}}){{2,}}{fraction}")
    money = text.str.contains(_MONEY) & bare.str.fullmatch(rf"[+-]?\d{{1,3}}(?:{mark}\d{{3}})+")
    for rule, hits in (
        ("twice in one number", repeated),
        ("between groups of three digits after a currency sign", money),
    ):
        if hits.any():
            cell = text[hits].iloc[0]
            return other, (
                f"column {name!r}: {decimal!r} read as the thousands separator, not the "
                f"file's decimal mark ({cell!r} has it {rule})"
            )
    # '0,490' and '1250,5' can only be read with the other mark as the decimal mark: a column
    # of a ',' file quoted so ('"0,490"'), read with ',' between thousands, was 490 (helper-65)
    # (a ';' or tab file can take the other mark for its own: data.decimal, as advised)
    decisive = bare.str.fullmatch(_decisive(other)) & (sep == ",")
    if decisive.any() and not bare.str.fullmatch(_decisive(decimal)).any():
        cell = text[decisive].iloc[0]
        return other, (
            f"column {name!r}: {other!r} read as the decimal mark, not the file's {decimal!r} "
            f"({cell!r} can only be read so)"
        )
    example = _thousands_like(bare, decimal) if sep != "," else None
    if example is not None:
        return decimal, _ambiguous_note(name, str(text[bare == example].iloc[0]), decimal, bare)
    # every value '26.648' in a ';' file of no decimal comma: 26648, or 26.648 (with '903'
    # beside '3,231', numbers under a thousand are written without a group: thousands)
    every = bare.str.contains(other, regex=False).all()
    grouped = _thousands_like(bare, other) if sep != "," and every else None
    if grouped is not None:
        from errors import hydra_value

        return decimal, (
            f"column {name!r}: every value is written like "
            f"{str(text[bare == grouped].iloc[0])!r}, read with {other!r} as the thousands "
            f"separator ({grouped.replace(other, '')}); if {other!r} is the decimal mark there, "
            f"set {hydra_value('data.decimal', other)}"
        )
    return decimal, None


def _thousands_like(cells: pd.Series, mark: str) -> str | None:
    """The first of ``cells`` (non-missing, as written, decorations removed) that holds ``mark``
    when every cell holding it is written like a thousands-grouped integer (``3,231``: one to
    three digits, not a lone zero, then three) and the others are integers (``903``): the
    column reads as numbers with three decimals, or as integers. None otherwise."""
    m = re.escape(mark)
    marked = cells.str.contains(mark, regex=False)
    if not marked.any():
        return None
    if not cells[marked].str.fullmatch(rf"[+-]?[1-9]\d{{0,2}}{m}\d{{3}}").all():
        return None
    if not cells[~marked].str.fullmatch(r"[+-]?\d+").all():
        return None
    return str(cells[marked].iloc[0])


def _cells_as_written(col: pd.Series, path: str | None, sep: str) -> pd.Series | None:
    """The non-missing cells of the numeric column ``col`` (a column of the table read from
    ``path`` with separator ``sep``) as the file writes them, stripped; None when the file
    cannot be read again as it was."""
    if path is None or col.name is None:
        return None
    try:
        raw = _table_as_written(path, sep, Path(path).stat().st_mtime_ns)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    if raw.shape[0] != len(col) or col.name not in raw.attrs["names"]:
        return None
    cells = raw.iloc[:, raw.attrs["names"].index(col.name)]
    return cells[col.notna().to_numpy()].str.strip()


_AS_WRITTEN: dict = {}  # (path, sep, mtime) -> the table of strings, the last one read


def cells_as_written(path: str | Path, sep: str, *, keep_empty_rows: bool = False) -> pd.DataFrame:
    """Every cell of the file at ``path`` (separator ``sep``) as a string as the file writes
    it (``"1,250"``, ``02134``; an empty cell missing), its columns named as :func:`read_csv`
    names them: its title lines skipped, R's row names a nameless first column.

    ``keep_empty_rows``: blank lines and lines of separators only stay, as rows of missing
    cells (``predict.py`` writes one output row for each row of the file); else they are left
    out, as :func:`read_csv` leaves them out."""
    path = str(Path(path).expanduser())
    mtime_ns = Path(path).stat().st_mtime_ns
    raw = _table_as_written(path, sep, mtime_ns, keep_empty_rows).copy()
    raw.columns = raw.attrs["names"]
    return raw


def _table_as_written(
    path: str, sep: str, mtime_ns: int, keep_empty_rows: bool = False
) -> pd.DataFrame:
    """The file's cells as strings (its columns named as :func:`read_csv` names them, in
    ``attrs["names"]``), read once per file: only a ``;``/tab file with a numeric column whose
    every value has at most three decimals asks for it."""
    key = (path, sep, mtime_ns, keep_empty_rows)
    if key not in _AS_WRITTEN:
        sample, skip, _ = _without_the_separator_line(_read_sample(Path(path), "", path))
        sample, skip = _without_leading_blank_lines(sample, skip)
        titles = _title_lines(sample.splitlines()[:50], sep) or 0
        header, skip, columns = _layout(sample, skip, titles, sep, path, "", 1)
        raw = _pandas_read(
            path, sep, columns, dtype=str, skiprows=skip, keep_empty_rows=keep_empty_rows
        )
        raw.attrs["names"] = _column_names(header, raw.shape[1])
        _AS_WRITTEN.clear()
        _AS_WRITTEN[key] = raw
    return _AS_WRITTEN[key]


def _ambiguous_note(name: str, example: str, decimal: str, cells: pd.Series) -> str:
    from errors import hydra_value

    other = hydra_value("data.decimal", _other_mark(decimal))
    every = (
        "every value"
        if cells.str.contains(decimal, regex=False).all()
        else f"every value with {decimal!r}"
    )
    return (
        f"column {name!r}: {every} is written like {example!r}, read with {decimal!r} as "
        f"the decimal mark; if {decimal!r} separates thousands there, write the numbers "
        f"without it ({_half_width(pd.Series([example])).iloc[0].replace(decimal, '')}) or "
        "with a currency sign, or, if it does "
        f"in every column, set {other}"
    )


def _looks_numeric(texts: pd.Series) -> pd.Series:
    """Which cells are digits, ``.`` and ``,`` (and signs, currency, percent, spaces) only."""
    bare = texts.astype(str).str.replace(_DECORATION, "", regex=True)
    return bare.str.fullmatch(r"[+-]?[\d.,]*\d[\d.,]*-?")


def _mark_advice(decimal: str) -> str:
    from errors import hydra_value

    other = _other_mark(decimal)
    return (
        f"the column is read with {decimal!r} as the decimal mark and {other!r} as the "
        f"thousands separator; set {hydra_value('data.decimal', other)} (as written: quoted for "
        f"Hydra and the shell) if the file writes its decimals with {other!r}, or data.sep if "
        "its columns are split wrongly"
    )


def _month_abbreviations(texts) -> list[str]:
    """``texts`` with each month's name written as its first three letters, as ``%b`` reads
    it: ``October``, ``OCT``, ``Oct.`` and AP style's ``Sept.`` are ``Oct`` and ``Sep`` (a
    column mixes them: AP style writes March in full beside Sept.); a day's name before the
    date (Excel's long date, ``Tuesday, July 8, 2014``) is left out."""
    return [
        _MONTH_WORD.sub(lambda m: m[1][:3].title(), _WEEKDAY.sub("", str(t), count=1))
        for t in texts
    ]


def _date_texts(texts, fmt: str) -> tuple[list[str], str]:
    """``texts`` and ``fmt`` as ``pd.to_datetime`` reads them: month names in three letters
    (``%b``; a run saved with ``%B`` reads the same)."""
    if "%b" in fmt or "%B" in fmt:
        return _month_abbreviations(texts), fmt.replace("%B", "%b")
    return [str(t) for t in texts], fmt


def _written_as(text: str, fmt: str) -> bool:
    """Whether ``text`` (month names in three letters) has the shape of dates in ``fmt``, one
    of :data:`DATE_FORMATS` (``%d/%m/`` being ``%m/%d/``'s day-first reading)."""
    shape = "%m/%d/" + fmt[6:] if fmt.startswith("%d/%m/") else fmt
    return any(f == shape and pattern.match(text) for pattern, f in DATE_FORMATS)


def _date_format(texts: np.ndarray) -> str | None:
    """The format the texts ``texts`` (distinct, the missing-value words left out) are written
    in, if one of :data:`DATE_FORMATS`: every text's, nine in ten of them, or all but one of at
    least four (as a column of numbers with a few bad cells is numbers), so that the cells in
    no such format are errors that name them (a ``TBD``, a date in another format), not a
    column of free text to drop. ``3/4/2021`` is month first (US), unless some first number is
    above 12 and no second one is (``23/05/2021``: day first)."""
    texts = _month_abbreviations(t for t in texts if str(t) not in NA_TOKENS)
    if not texts:
        return None
    sample = texts[:10]  # a format none of the first ten texts has is not nine in ten's
    for pattern, fmt in DATE_FORMATS:
        if not any(pattern.match(t) for t in sample):
            continue
        dates = [t for t in texts if pattern.match(t)]
        n, most = len(dates), len(texts)
        if n == most or n >= 0.9 * most or (n == most - 1 and n >= 3):
            if fmt.startswith("%m/%d/"):
                first, second = _slashed_pairs(dates)
                if max(first) > 12 >= max(second):
                    fmt = "%d/%m/" + fmt[6:]
            return fmt
    return None


def _slashed_pairs(texts) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(a's, b's)`` of the ``a/b/year`` dates among ``texts`` (others left out)."""
    pairs = [tuple(map(int, t.split("/")[:2])) for t in map(str, texts) if t.count("/") == 2]
    return tuple(zip(*pairs, strict=True)) if pairs else ((), ())


def _month_or_day_first(col: pd.Series) -> bool:
    """Whether the ``a/b/year`` dates of ``col`` leave open which of ``a`` and ``b`` is the
    month: neither is ever above 12 (``03/04/2021``)."""
    first, second = _slashed_pairs(_cells(col)[1])
    return bool(first) and max(first) <= 12 and max(second) <= 12


def _century(texts, fmt: str, this_year: int | None = None) -> int:
    """The first of the hundred years two-digit years are read in, for a column whose dates
    ``texts`` are written in ``fmt``: the hundred years that end ``this_year`` (today's), or,
    where the column's own years reach back further, those that begin with its earliest. Its
    years are taken as one run, beginning after the widest gap between the years written (on
    a circle of 100), in the last century that ends them no later than ``this_year``: ``55``
    to ``74`` are 1955-1974, ``95`` to ``05`` 1995-2005, ``20`` to ``30`` 1920-1930 (a window
    of 1920-2019). Python's own window (1969-2068) had read sales of 1955-1968 as 2055-2068,
    silently; one that began with a column's 2005 read a new row's ``98`` as 2098."""
    import datetime

    this_year = this_year or datetime.date.today().year
    texts, fmt = _date_texts((t for t in texts if str(t) not in NA_TOKENS), fmt)
    when = pd.to_datetime(pd.Series(texts, dtype=object), format=fmt, errors="coerce")
    years = np.unique(when.dropna().dt.year.to_numpy() % 100)
    if years.size == 0:
        return this_year - 99
    gaps = np.diff(np.append(years, years[0] + 100))  # after each year, to the next one
    widest = int(np.argmax(gaps))
    first = int(years[(widest + 1) % years.size])
    span = int(100 - gaps[widest])  # from the first year to the last
    start = (this_year - span) // 100 * 100 + first  # the latest start ending by this year
    start = start if start + span <= this_year else start - 100
    return min(start, this_year - 99)


def _decimal_years(
    col: pd.Series,
    fmt: str,
    source: str,
    first_year: int | None = None,
    new_rows: bool = False,
) -> np.ndarray:
    """``year + (day of year - 1 + time of day) / days in the year``: float64, NaN where empty.
    Two-digit years are read in the 100 years from ``first_year`` (:func:`_century`).
    ``new_rows``: a finished run's new rows (predict.py), held to the training file's format."""
    codes, texts = _cells(col)
    read, fmt = _date_texts(texts, fmt)
    when = pd.to_datetime(pd.Series(read, dtype=object), format=fmt, errors="coerce")
    if first_year is not None and "%y" in fmt:
        year = first_year + (when.dt.year - first_year) % 100
        when = pd.to_datetime(
            {"year": year, "month": when.dt.month, "day": when.dt.day}, errors="coerce"
        ).where(when.notna())
    missing = _missing_words(texts)  # 'N/A' in a date column: no date
    bad = np.flatnonzero(_per_cell(when.isna().to_numpy() & ~missing, codes, False))
    if bad.size:
        import datetime

        example = datetime.datetime(2024, 4, 8, 9, 30).strftime(fmt)
        day = "8 April 2024" if "%d" in fmt else "April 2024"  # a month: its first day
        text = texts[codes[bad[0]]]
        if _written_as(read[codes[bad[0]]], fmt):  # the shape is right, the day is not
            what = f"is no date: its month has no such day ({fmt}, as in {example!r} for {day})"
            what += "; correct it"
        else:
            others = "the run's training file's dates" if new_rows else "the others"
            what = f"is not a date like {others} ({fmt}, as in {example!r} for {day})"
            what += "; write it that way"
        raise UserError(f"{source}: column {col.name!r} row {_row(col, bad[0])}: {text!r} {what}")
    year = when.dt.year.to_numpy(dtype=np.float64)
    days = np.where(when.dt.is_leap_year.to_numpy(dtype=bool), 366.0, 365.0)
    seconds = (when - when.dt.normalize()).dt.total_seconds().to_numpy(dtype=np.float64)
    day = when.dt.day_of_year.to_numpy(dtype=np.float64) - 1 + seconds / 86400
    return _per_cell(year + day / days, codes, np.nan)


def _numbers(
    col: pd.Series,
    name: str,
    source: str,
    decimal: str = ".",
    new_rows: bool = False,
    target: bool = False,
) -> np.ndarray:
    """The column as float64 (NaN where empty); a word, an infinite value or one beyond
    float32's range is an error.
    ``new_rows``: a finished run's new rows (predict.py), which take no ``data.*`` setting:
    the advice is to write the cell as the run reads it. ``target``: the column is
    ``data.target``, which cannot be dropped."""
    values, empty = _parse_numbers(col, decimal)
    bad = np.flatnonzero(np.isnan(values) & ~empty)
    if bad.size:
        cell = col.iloc[bad[0]]
        if new_rows:
            other = _other_mark(decimal)
            advice = (
                f"; this file's numbers are read with {decimal!r} as the decimal mark and "
                f"{other!r} between thousands: write the cell so"
                if _looks_numeric(pd.Series([cell])).all()
                else "; write a number there (the run was trained on numbers in this column)"
            )
        elif _looks_numeric(pd.Series([cell])).all():
            advice = f"; {_mark_advice(decimal)}"
        elif str(cell).strip() in EXCEL_ERRORS:
            advice = (
                "; it is a spreadsheet's error value: fix the formula (or clear the cell) and "
                "save the file again"
            )
        elif target:  # the advice to drop it was refused: the target is in data.drop
            advice = (
                "; the target must be a number: fix the cell, leave it empty if the value is "
                "missing (data.missing=drop then leaves the row out), or choose another "
                "data.target"
            )
        else:
            advice = (
                "; fix the cell, leave it empty if the value is missing, or add the column to "
                "data.drop"
            )
        raise UserError(
            f"{source}: column {name!r} row {_row(col, bad[0])}: {cell!r} is not a number{advice}"
        )
    inf = np.flatnonzero(np.isinf(values))
    if inf.size:
        raise UserError(
            f"{source}: column {name!r} row {_row(col, inf[0])}: the value is "
            f"infinite; fix the cell or drop the row"
        )
    # the model's numbers are float32: a larger one is infinite there, its column's mean
    # (in float64 even, 1.7e308 + 1.7e308) too, and every fit on it NaN
    with np.errstate(over="ignore"):
        huge = np.flatnonzero(np.isinf(values.astype(np.float32)))
    if huge.size:
        where = "a number of at most 3.4e+38 in size" if new_rows else "the column in a larger unit"
        raise UserError(
            f"{source}: column {name!r} row {_row(col, huge[0])}: {values[huge[0]]:.9g} is beyond "
            f"float32's range (at most 3.4e+38 in size), in which the model computes; write "
            f"{where}"
        )
    return values


def _log(values: np.ndarray, col: pd.Series, source: str, fix: str) -> np.ndarray:
    """``log(values)``; a value <= 0 is an error naming its column and row."""
    bad = np.flatnonzero(values <= 0)
    if bad.size:
        raise UserError(
            f"{source}: column {col.name!r} row {_row(col, bad[0])}: "
            f"{values[bad[0]]:g} has no logarithm; {fix}"
        )
    return np.log(values)


def _missing_mask(col: pd.Series, c: ColumnCode, decimal: str) -> np.ndarray:
    if c.kind == "numeric":
        return _parse_numbers(col, c.decimal or decimal)[1]
    if c.kind == "boolean" and pd.api.types.is_bool_dtype(col):
        return np.zeros(len(col), bool)
    codes, texts = _cells(col)
    if c.kind in ("date", "boolean"):  # a missing-value word is no date, no yes or no
        return _per_cell(_missing_words(texts), codes, True)
    return codes < 0


def _raw_values(
    col: pd.Series, c: ColumnCode, source: str, decimal: str, new_rows: bool = False
) -> np.ndarray:
    """numeric, date or boolean cells as float64, NaN where empty (before any fill)."""
    if c.kind == "date":
        return _decimal_years(col, c.date_format, source, c.first_year, new_rows)
    if c.kind == "numeric":
        return _numbers(col, c.name, source, c.decimal or decimal, new_rows)
    if pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=np.float64)
    codes, texts = _cells(col)
    lowered = np.array([str(t).lower() for t in texts], dtype=object)
    missing = _missing_words(texts)  # 'N/A' among yes/no: a missing value
    ones, zeros = [*TRUE_WORDS, "1"], [*FALSE_WORDS, "0"]  # 1/0 as new rows may write them
    unseen = ~np.isin(lowered, ones + zeros) & ~missing
    if unseen.any():
        row = int(np.flatnonzero(_per_cell(unseen, codes, False))[0])
        raise UserError(
            f"{source}: column {c.name!r} row {_row(col, row)}: {texts[codes[row]]!r} is not "
            f"one of the values seen in training (yes/no, true/false, ..., or 1/0)"
        )
    values = np.where(missing, np.nan, np.isin(lowered, ones).astype(np.float64))
    return _per_cell(values, codes, np.nan)


def _encode(
    col: pd.Series,
    c: ColumnCode,
    source: str,
    decimal: str,
    warn: list[str],
    where: str,
    new_rows: bool = False,
) -> list[tuple[str, np.ndarray]]:
    """The output columns of one source column: (name, float64 values) pairs. ``new_rows``:
    rows priced by a finished run (predict.py), whose errors advise a fix of the rows, not
    of the run's settings."""
    if c.kind != "onehot":
        values = _raw_values(col, c, source, decimal, new_rows)
        if c.fill is not None:
            values = np.where(np.isnan(values), c.fill, values)
        if c.log:
            fix = (
                f"the run trained on the logarithm of {c.name!r} (data.log_features): give it a "
                "value above 0"
                if new_rows
                else f"remove {c.name!r} from data.log_features"
            )
            values = _log(values, col, source, fix)
        return [(c.all_outputs[0], values)]
    codes, texts = _level_cells(col)
    if MISSING in texts:  # it would be read as an empty cell, silently
        row = int(np.flatnonzero(codes == list(texts).index(MISSING))[0])
        raise UserError(
            f"{source}: column {c.name!r} row {_row(col, row)}: {MISSING!r} is what this "
            "project calls an empty cell's level; leave the cell empty for a missing value, "
            "or write another text for a level of its own"
        )
    texts = np.append(texts, MISSING)  # the last: empty cells
    codes = np.where(codes < 0, len(texts) - 1, codes)
    # per distinct text: 0 the reference, 1.. the other kept levels, len(levels) for other
    position = {level: k for k, level in enumerate(c.levels)}
    index = np.array([position.get(t, len(c.levels)) for t in texts], np.int64)
    unseen = np.array([t not in position and t not in c.pooled for t in texts])
    counts = np.bincount(codes, minlength=len(texts))
    if (counts * unseen).any():
        distinct = sorted(texts[unseen & (counts > 0)])
        named = ["an empty cell" if t == MISSING else repr(t) for t in distinct]
        warn.append(
            f"column {c.name!r}: {int(counts @ unseen)} cell(s) in {where} with a "
            f"level not seen in the training rows ({', '.join(named[:3])}"
            f"{', ...' if len(distinct) > 3 else ''}) counted as {OTHER!r}"
            + ("" if c.other else f", which here is the reference level {c.levels[0]!r}")
        )
    cell = index[codes]
    return [(name, (cell == k + 1).astype(np.float64)) for k, name in enumerate(c.all_outputs)]


def _refuse_missing(
    df: pd.DataFrame, columns: list[ColumnCode], source: str, missing: str, decimal: str
) -> None:
    counts = {c.name: int(_missing_mask(df[c.name], c, decimal).sum()) for c in columns}
    counts = {k: v for k, v in counts.items() if v}
    if counts:
        listed = ", ".join(f"{name!r} ({n} cell{'s' * (n > 1)})" for name, n in counts.items())
        first = next(iter(counts))
        if missing == "predict":
            code = next(c for c in columns if c.name == first)
            mask = _missing_mask(df[first], code, decimal)
            row = _row(df[first], int(np.flatnonzero(mask)[0]))
            raise UserError(
                f"{source}: column {first!r} row {row} is empty; "
                f"prediction needs every feature (missing: {listed}), and the run filled none "
                "(a run trained with data.missing=mean fills every column); fill the cells, "
                "or drop those rows"
            )
        raise UserError(
            f"{source}: missing values in column {listed}; set data.missing=drop to "
            f"drop those rows or data.missing=mean to fill them with the training rows' mean "
            f"(an empty text cell becomes a level of its own)"
        )


def _sniff(
    sample: str, sep: str | None, decimal: str | None, undecided: str | None = None
) -> tuple[str, str, int, bool]:
    """The separator (``,`` ``;`` tab ``|``: the one splitting the first lines into the most, equal
    numbers of fields, title lines above the header aside, :func:`_title_lines`), the decimal
    mark (``,`` when more of a ``;``/tab/``|`` file's cells need it than need ``.``,
    :func:`_decimal_evidence`; with none either way, ``,`` for a ``;`` file, whose columns ``;``
    splits because ``,`` is its decimal mark, or ``undecided`` where given), each unless given,
    the number of title lines above the header, and whether ``undecided`` was taken."""
    lines = sample.splitlines()[:50]
    if len(sample) >= 65536 and len(lines) > 1:
        lines = lines[:-1]  # the last may be cut short
    titles, guessed = 0, False
    if sep is None:
        best = (1, 0, ",")
        # a header on the first line under any separator first: a separator that splits the
        # file only below some line is no better evidence than one that splits it all
        for most in (0, MAX_TITLE_LINES):
            for cand in SEPARATORS:
                k = _title_lines(lines, cand, most)
                if k is not None:
                    fields = len(next(csv.reader(lines[k : k + 1], delimiter=cand)))
                    best = max(best, (fields, k, cand), key=lambda t: t[0])
            if best[0] > 1:
                break
        _, titles, sep = best
    else:
        titles = _title_lines(lines, sep) or 0
    if decimal is None:
        decimal = "."
        if sep != ",":
            cells = [cell for r in csv.reader(lines[titles + 1 :], delimiter=sep) for cell in r]
            commas, points = _decimal_evidence(cells)
            # a ';' file's columns are split by ';' because ',' is its decimal mark
            if commas > points or (commas == points == 0 and sep == ";"):
                decimal = ","
            if commas == points == 0 and undecided:
                decimal, guessed = undecided, True
    return sep, decimal, titles, guessed


MAX_TITLE_LINES = 5  # lines above a header that may be a title, a date, a source, blank


def _title_lines(lines: list[str], sep: str, most: int = MAX_TITLE_LINES) -> int | None:
    """How many of ``lines`` (a file's first) stand above its header as a title, a source or a
    date: the fewest ``k`` (up to ``most``) such that

    - the lines from ``k`` on split on ``sep`` into more than one field each, the first of them
      (the header) into as many as any other once their trailing empty fields are left out
      (data lines ending in separators), with more than half of its names written;
    - below a title, the header holds more names than numbers and no other separator (split on
      ``,``, a ``;`` file's data line ``91,7;21,9`` holds ``7;21``);
    - each line above is blank, has fewer fields than the header (``Windsor house sales,
      1987``), at most half of its cells written (a spreadsheet's title row, ``Sales,,,,,,``,
      or group names over the header's, ``Property,,,Sale``), or a number above a header of
      names only (``House prices, 1987`` over ``price,lotsize``); a line with as many names as
      the header less one above a header that holds numbers is R's header over a data row,
      never a title;
    - a header holding numbers over a line of names only over numbers is a title, not a header.

    Failing that, 0 for a header one field short of the data lines at the top (R's
    ``write.table`` leaves the row names' column unnamed) over a first data line that holds a
    number (over a line of names only, it is a title above the header); failing that, the
    first line that splits, below lines of one field each (a title above a header of years).
    None when ``sep`` does not split the file."""
    # a line of spaces, tabs or DOS's end-of-file mark is blank, as pandas reads it
    rows = list(csv.reader(["" if _is_blank(line) else line for line in lines], delimiter=sep))
    if len(rows) > 2 and len(rows[-1]) < len(rows[-2]):  # the sample's last record, cut
        rows = rows[:-1]  # short inside a quoted newline
    written = [sum(bool(cell.strip()) for cell in r) for r in rows]
    widths = [_width(r) for r in rows]
    # the last line the header may be on: below at most `most` lines with a cell written (blank
    # lines and a spreadsheet's empty rows, ',,,,', count for nothing)
    filled = [i for i, w in enumerate(written) if w]
    last = min(filled[most] if len(filled) > most else len(rows) - 1, len(rows) - 1)
    # numbers in the lines a header or a title may be on (a wide file's cells cost ms each)
    numbers = [sum(_is_number(cell) for cell in r) for r in rows[: last + 2]]
    others = [c for c in SEPARATORS if c != sep]

    def header_at(k: int, short: int) -> bool:
        below = [w for r, w in zip(rows[k + 1 :], widths[k + 1 :], strict=True) if r]
        n = len(rows[k])
        if not rows[k] or n < 2 or any(len(r) < 2 for r in rows[k:] if r):
            return False
        # most lines' width: a line wider than the header is named by its row afterwards
        if below and n < max(below, key=below.count) - short:
            return False
        leading = len(rows[k]) - len("".join("x" if c.strip() else " " for c in rows[k]).lstrip())
        index_names = 0 < written[k] == n - leading  # pandas' index levels: nameless, then names
        if 2 * written[k] <= n and not index_names:  # a title row's cells, not names
            return False
        if k and (2 * numbers[k] >= n or any(o in cell for cell in rows[k] for o in others)):
            return False  # a data row
        names_next = (  # a line of names, every cell written and none a missing-value word
            len(rows) > k + 1
            and not numbers[k + 1]
            and all(cell.strip() and cell.strip() not in NA_TOKENS for cell in rows[k + 1])
            and any(_is_number(cell) for r in rows[k + 2 :] for cell in r)
        )
        if names_next and (short or numbers[k]):
            return False  # this line a title ('House prices, 1987'), the next the header
        for i, (r, w) in enumerate(zip(rows[:k], written[:k], strict=True)):
            r_header = w == len(r) == n - 1 and numbers[k] > 0
            dated = numbers[i] > 0 and not numbers[k]  # a year above a header of names
            if not (w == 0 or (len(r) < n and not r_header) or 2 * w <= n or dated):
                return False
        return True

    for short in (0, 1):
        for k in range(last + 1 if short == 0 else 1):
            if header_at(k, short):
                return k
    # a header of years ('region,2019,2020') looks like a data row: below lines of one field
    # each (a title, blank lines), the first line that splits is the header all the same
    for k in range(1, last + 1):
        if rows[k] and len(rows[k]) > 1:
            if all(len(r) <= 1 for r in rows[:k]) and any(written[:k]):
                below = [w for r, w in zip(rows[k + 1 :], widths[k + 1 :], strict=True) if r]
                fits = all(len(r) > 1 for r in rows[k:] if r) and not any(
                    o in cell for cell in rows[k] for o in others
                )
                if fits and (not below or len(rows[k]) >= max(below)):
                    return k
            break
    return None


def _width(row: list[str]) -> int:
    """A split line's fields up to its last written one (trailing separators left out)."""
    width = len(row)
    while width and not row[width - 1].strip():
        width -= 1
    return width


def _is_number(cell: str) -> bool:
    try:
        float(cell.strip().replace(",", "."))
    except ValueError:
        return False
    return True


def _decisive(mark: str) -> re.Pattern:
    """Numbers that can only be read with ``mark`` as the decimal mark: ``mark`` before one,
    two, or four or more final digits (``3,5``, ``0,1234``), after a leading zero or four or more
    digits (``0,125``, ``1250,000``), or after groups of three digits split by the other mark
    (``1.250,5``, ``1.250.000``: a mark that appears twice separates thousands)."""
    m, o = re.escape(mark), re.escape(_other_mark(mark))
    return re.compile(
        rf"[+-]?(?:\d*{m}(?:\d{{1,2}}|\d{{4,}})|0{m}\d+|\d{{4,}}{m}\d+"
        rf"|\d{{1,3}}(?:{o}\d{{3}})+{m}\d*|\d{{1,3}}(?:{o}\d{{3}}){{2,}})"
    )


def _decimal_evidence(cells: list[str]) -> tuple[int, int]:
    """``(commas, points)``: how many of ``cells`` (currency signs, percent signs and spaces
    removed) can only be read with ``,``, and with ``.``, as the decimal mark
    (:func:`_decisive`). ``3,231`` and ``3.231`` decide nothing: each is a number with three
    decimals in one convention and a thousands-grouped integer in the other (a US tab export's
    square feet ``3,231`` were read as 3.231 when they counted as decimal commas)."""
    bare = [re.sub(_DECORATION, "", x) for x in cells]
    comma, point = _decisive(","), _decisive(".")
    return (
        sum(bool(comma.fullmatch(x)) for x in bare),
        sum(bool(point.fullmatch(x)) for x in bare),
    )


def read_csv(
    path: str | Path,
    key: str = "data.path",
    min_columns: int = 2,
    sep: str | None = None,
    decimal: str | None = None,
    undecided: str | None = None,
) -> tuple[pd.DataFrame, str]:
    """Read a UTF-8 file with a header row; every problem is a UserError.

    ``sep`` / ``decimal``: None detects them (see :func:`_sniff`; ``undecided``: the decimal
    mark of a file whose numbers decide none, new rows read for a run); what was used is in
    ``df.attrs["sep"]`` and ``df.attrs["decimal"]``. A nameless column is called
    ``Unnamed: <position from 0>`` as pandas calls it. Fewer than ``min_columns`` columns
    (training needs a feature and a target) means the separator is not one we know."""
    path = Path(path).expanduser()
    source = str(path)
    sample = _read_sample(path, key, source)
    sep = "\t" if sep in ("tab", "\\t") else sep
    sample, skip, hinted = _without_the_separator_line(sample)
    sample, below = _without_leading_blank_lines(sample, skip)
    blank, skip = below - skip, below
    sep, decimal, titles, guessed = _sniff(sample, sep or hinted, decimal, undecided)
    notes = []
    if titles or blank:
        above = [ln.strip() for ln in sample.splitlines()[:titles] if ln.strip(sep + " \t\x1a")]
        said = f" ({', '.join(repr(t.strip(sep + ' ')) for t in above)})" if above else ""
        notes.append(f"skipped {titles + blank} line(s) above the header{said}")
    header, skip, columns = _layout(sample, skip, titles, sep, source, key, min_columns)
    df = _parse_table(path, sep, decimal, source, skip, columns)
    if df.attrs.get("empty_rows"):
        notes.append(empty_rows_note(df.attrs["empty_rows"]))
    df.columns = _column_names(header, df.shape[1])
    _compose_unicode(df)
    if len(df) == 0:
        raise UserError(f"{source}: has a header but no data rows")
    _refuse_the_header_again(df, source, skip)
    _refuse_rows_split_over_lines(df, source, skip, decimal)
    _refuse_subtotal_rows(df, source, skip, decimal)
    _refuse_a_total_row(df, source, skip, decimal)
    df.attrs.update(sep=sep, decimal=decimal, path=str(path), skip=skip, notes=notes)
    df.attrs["decimal_of_the_run"] = guessed  # the numbers decided no mark: `undecided`'s
    return df, source


def empty_rows_note(rows: list[int]) -> str:
    """The note for the rows :func:`read_csv` left out as empty (numbers as the index has
    them, 1 = the first row under the header)."""
    return (
        f"skipped {len(rows)} row(s) with every cell empty (row {', '.join(map(str, rows[:5]))}"
        f"{', ...' if len(rows) > 5 else ''} under the header)"
    )


def undecided_notes(df: pd.DataFrame, names: list[str]) -> list[str]:
    """For new rows read with the run's decimal mark because their numbers decided none
    (:func:`read_csv`'s ``undecided``): a note for each column of ``names`` whose every value
    with that mark is written like ``4.350``, which a file of the other convention means as
    4350."""
    if not df.attrs.get("decimal_of_the_run"):
        return []
    mark, raw = df.attrs["decimal"], cells_as_written(df.attrs["path"], df.attrs["sep"])
    notes = []
    for name in names:
        if name not in raw.columns:
            continue
        cells = raw[name].dropna().astype(str).str.strip()
        example = _thousands_like(cells.str.replace(_DECORATION, "", regex=True), mark)
        if example is not None:
            notes.append(
                f"column {name!r}: every value with {mark!r} is written like {example!r}, read "
                f"with {mark!r} as the decimal mark, as the run's own file wrote its numbers; if "
                f"{mark!r} separates thousands there, write them without it "
                f"({example.replace(mark, '')})"
            )
    return notes


def _layout(
    sample: str, skip: int, titles: int, sep: str, source: str, key: str, min_columns: int
) -> tuple[list[str], int, int | None]:
    """The header's names below ``titles`` title lines of ``sample`` (R's row names' column
    added, :func:`_with_the_row_names`), the lines pandas skips (``skip`` and the titles), and
    the fields a line when the header is short of them (else None): how :func:`read_csv` and
    :func:`cells_as_written` both read a file."""
    sample = "".join(sample.splitlines(keepends=True)[titles:])
    named = _read_header(sample, sep, source, key, min_columns)
    header = _with_the_row_names(named, sample, sep, source)
    return header, skip + titles, len(header) if header != named else None


def _with_the_row_names(header: list[str], sample: str, sep: str, source: str) -> list[str]:
    """``header`` with a nameless first column when it is one name short of most data lines
    and their first fields are row names (R's ``write.table`` names every column but the row
    names', and quotes them), as R wrote it; read as it was, every name sat one column to the
    left of its values and the last column was cut off (a price read as the row number, R^2
    0.25, silently). A :class:`UserError` for a header short of lines otherwise: two or more
    names short (the last columns were cut off), or one short of lines whose first fields are
    no row names, or that hold a number written ``42,000`` unquoted (split in two fields); and
    for a header with more names than any line has fields (a name too many at the front set
    every name over its neighbour's values, the target's over none: "missing values in column
    'price'", whose advice could not be followed)."""
    lines = sample.splitlines()[1:50]
    if len(sample) >= 65536 and len(lines) > 1:
        lines = lines[:-1]  # the last may be cut short
    rows = [r for r in csv.reader(lines, delimiter=sep) if r and not _is_blank(sep.join(r))]
    widths = [_width(r) for r in rows]
    fields = max(widths, key=widths.count) if rows else 0  # most lines' width
    longest = max((len(r) for r in rows), default=0)  # an empty last cell is a field written
    if rows and _width(header) > longest:
        named = _width(header)
        raise UserError(
            f"{source}: the header names {named} columns and no line below it holds more than "
            f"{longest} fields: read as written, each name would stand over the next column's "
            f"values, or {header[named - 1]!r} over none; give each field one name (delete "
            f"the name too many, or quote a name that holds {sep!r})"
        )
    if not rows or len(header) >= fields:
        _refuse_a_line_wider_than_the_header(header, sample, sep, source)
        return header
    first = rows[0][0].strip()
    quoted = all(line.lstrip().startswith('"') for line in lines if line.strip())
    unquoted_thousands = (
        sep == ","
        and not quoted
        and all(
            any(
                re.fullmatch(r"\d{1,3}", a) and re.fullmatch(r"\d{3}", b)
                for a, b in itertools.pairwise(r)
            )
            for r in rows
        )
    )
    names = f"the header names {len(header)} columns and the lines below it hold {fields} fields"
    in_order = _row_names(pd.Series([r[0] for r in rows]))
    if len(header) == fields - 1 and unquoted_thousands and not in_order:
        raise UserError(
            f"{source}: {names}: a number written with ',' between thousands splits in two "
            "fields unless quoted; quote such numbers (\"42,000\") or write them without the ','"
        )
    if len(header) == fields - 1 and (quoted or in_order):
        return ["", *header]
    if len(header) == fields - 1:  # R's write.table(quote = FALSE) of a sample, or data
        raise UserError(
            f"{source}: {names} (their first, {first!r}, is no row name in order); give every "
            "column a name in the header (R: write.table(..., col.names = NA) names the row "
            "names' column)"
        )
    raise UserError(f"{source}: {names}; give every column a name in the header")


def _refuse_a_line_wider_than_the_header(
    header: list[str], sample: str, sep: str, source: str
) -> None:
    """A :class:`UserError` naming the first record of ``sample`` (from its header on: the
    first 50 of its rows) with more fields than the header and than most rows (a separator at
    the end of every line is no field): pandas read such a first data line as if its last
    field were not there and its others one column to the left (``42,000`` unquoted: a price
    of 42, silently), and a later one as a malformed file."""
    records = list(itertools.islice(csv.reader(io.StringIO(sample), delimiter=sep), 51))[1:]
    if len(sample) >= 65536 and len(records) > 1:
        records = records[:-1]  # the last may be cut short
    lengths = [len(r) for r in records if r]
    usual = max(len(header), max(lengths, key=lengths.count, default=0))
    wider = _first_wider(records, usual)
    if wider is not None:
        raise UserError(wider_than_the_header(source, *wider, len(header), sep))


def wider_than_the_header(source: str, row: int, fields: int, named: int, sep: str) -> str:
    """The one line for row ``row`` (1 the first under the header) of ``fields`` fields under a
    header of ``named`` names."""
    why = (
        "a number written with ',' between thousands splits in two fields unless quoted: quote "
        "it (\"42,000\") or write it without the ','; "
        if sep == ","
        else ""
    )
    return (
        f"{source}: row {row} has {fields} fields where the header names {named} columns: "
        f"{why}quote a cell that holds {sep!r}, delete separators at its end that the other "
        "rows do not have, or name the extra column in the header"
    )


def _row_names(first: pd.Series) -> bool:
    """Whether the cells of a nameless first column are row names: all different, and either
    text (R's row names) or whole numbers from 0 that are the rows' positions in some order,
    or that only rise (R's and pandas' row names, of a table after filtering rows). A nameless
    column of lot sizes, unsorted, is data."""
    first = first.dropna().astype(str).str.strip()
    if first.empty or not first.is_unique or first.eq("").any():
        return False
    numbers = pd.to_numeric(first, errors="coerce")
    if numbers.isna().all():
        return True
    if numbers.isna().any() or (numbers % 1 != 0).any() or (numbers < 0).any():
        return False
    rising = bool((np.diff(numbers.to_numpy()) > 0).all())
    return rising or (numbers.min() in (0, 1) and numbers.max() - numbers.min() + 1 == len(numbers))


# what a report's total row says in any of its cells (English, German, Dutch, French, Italian,
# Spanish, Japanese, Chinese), compared in lower case with a trailing ':' and a parenthesis
# ('Total (40 sales)') left out; and what its summary rows say in their first cell, where a
# report labels them
TOTAL_WORDS = {
    "total", "totals", "grand total", "sum", "subtotal", "sub-total", "summe", "gesamt",
    "totaal", "somme", "totale", "suma", "insgesamt", "total général", "total general",
    "合計", "総計", "合计", "总计", "小計", "小计",
}  # fmt: skip
SUMMARY_WORDS = {
    "average", "avg", "mean", "median", "min", "max", "minimum", "maximum", "count", "std",
    "std dev", "stdev", "standard deviation", "overall", "all", "moyenne", "durchschnitt",
    "mittelwert", "gemiddelde", "media", "promedio", "平均", "平均値", "平均值", "中央値",
    "中位数", "最大", "最小",
}  # fmt: skip
SUMMARY_ROWS = (2, 6)  # the first and the last rows a report's totals stand in


# what each word of a total or summary label computes, for the labels of subtotals ('West
# Total', 'Grand Average': Excel's Data > Subtotal writes '<group> <function>' under each group,
# in the language of the Excel that made it)
LABEL_STATISTIC = {
    **dict.fromkeys(
        ["total", "totals", "sum", "subtotal", "sub-total", "summe", "gesamt", "ergebnis",
         "gesamtergebnis", "totaal", "eindtotaal", "somme", "totale", "suma", "insgesamt",
         "summa", "totalsumma", "toplam", "razem", "result", "tot", "tot.", "итог", "合計",
         "総計", "合计", "总计", "小計", "小计", "計", "集計", "汇总",
         "all"],  # pandas' and pivot tables' margins: 'Ballard All' (sums or means)
        "sum",
    ),
    **dict.fromkeys(
        ["average", "avg", "mean", "moyenne", "durchschnitt", "mittelwert", "gemiddelde",
         "media", "promedio", "平均", "平均値", "平均值"],
        "mean",
    ),
    **dict.fromkeys(["median", "中央値", "中位数"], "median"),
    **dict.fromkeys(["min", "minimum", "最小"], "min"),
    **dict.fromkeys(["max", "maximum", "最大"], "max"),
    **dict.fromkeys(["count", "anzahl", "nombre", "cuenta", "aantal", "conteggio"], "count"),
    **dict.fromkeys(["std", "stdev", "stddev"], "std"),
    # Excel's other subtotal functions: population deviation, variances, product
    "stdevp": "stdp", "stddevp": "stdp", "var": "var", "varp": "varp", "product": "product",
    # grand totals of one phrase: Polish, Dutch
    **dict.fromkeys(["suma końcowa", "suma koncowa"], "sum"),
}  # fmt: skip
# the rest of a grand total's label: 'Grand Total', 'Genel Toplam', 'Общий итог', 'Total Geral'
GRAND = {
    "grand", "overall", "all", "général", "general", "gesamt", "genel", "общий", "geral",
    "complessivo", "końcowa", "koncowa", "total", "generale", "générale",
}  # fmt: skip
# a cell a label may be: what it ends in, or begins with (the sums' words); a parenthesis or
# ':' at its end is looked at in full (:func:`_label_statistic`)
_LABEL_ENDS = (*LABEL_STATISTIC, ")", ":")
_LABEL_BEGINS = tuple(w for w, statistic in LABEL_STATISTIC.items() if statistic == "sum")
# Japanese and Chinese labels end in their word with no space: the longest first ('総計', '計')
_SUFFIXES = sorted((w for w in LABEL_STATISTIC if not w.isascii()), key=len, reverse=True)
_ASCII_SUFFIXES = [w for w in LABEL_STATISTIC if w.isascii() and w.isalpha() and len(w) >= 4]


def _summary_word(cell: object) -> str:
    """A cell's text as a total or summary label is compared: lower case, without a trailing
    ':' or a parenthesis."""
    if not isinstance(cell, str):
        return ""
    return re.sub(r"\s*\(.*\)\s*$", "", cell.strip()).rstrip(":").strip().casefold()


def _numbers_of(df: pd.DataFrame, decimal: str) -> np.ndarray:
    """``(rows, k)`` float64: the columns of ``df`` pandas read as numbers, and those of text
    nine in ten of whose written cells are numbers written for people (``"525,711"``,
    ``"$94,346,904"``: :func:`_parse_numbers`), NaN where a cell is none."""
    columns = []
    for name in df.columns:
        col = df[name]
        if pd.api.types.is_bool_dtype(col):
            continue
        if pd.api.types.is_numeric_dtype(col):
            columns.append(col.to_numpy(np.float64))
            continue
        values = _numbers_written(col, decimal)
        if values is not None:
            columns.append(values)
    return np.column_stack(columns) if columns else np.zeros((len(df), 0))


def _numbers_written(col: pd.Series, decimal: str, chunk: int = 4096) -> np.ndarray | None:
    """A text column's cells as numbers (:func:`_parse_numbers`, NaN where a cell is none) when
    nine in ten of its written cells are numbers, else None. Its distinct texts are parsed a
    ``chunk`` at a time, and a column stops being parsed once more than one cell in ten is no
    number (a column of 10^6 addresses: a tenth of them)."""
    codes, texts = _cells(col)
    written = int(col.notna().sum())
    cells = np.bincount(codes[codes >= 0], minlength=len(texts))
    missed = written - int(cells.sum())  # written, but only spaces
    parsed = np.full(len(texts), np.nan)
    for start in range(0, len(texts), chunk):
        part = pd.Series(texts[start : start + chunk], dtype=object)
        parsed[start : start + chunk] = _parse_numbers(part, decimal)[0]
        missed += int(
            cells[start : start + chunk][~np.isfinite(parsed[start : start + chunk])].sum()
        )
        if missed > 0.1 * written:
            return None
    if written == missed:
        return None
    return _per_cell(parsed, codes, np.nan)


def _refuse_a_total_row(df: pd.DataFrame, source: str, skip: int = 0, decimal: str = ".") -> None:
    """A :class:`UserError` naming the line of a report's total or summary row: among the
    first two and last six rows, one labelled so (``Total`` in any cell, ``Average``, ``Min``,
    ``Count``, ... in its first, in a cell no other row of its column shares) whose every
    number is one statistic of the other rows' column (their sum, mean, median, least,
    greatest, count or standard deviation, within 1 %), or, from ten rows, one with no label
    that holds the others' column sums. It trained as one more house (a newcomer's file: 41
    rows for 40, a fill value inflated by it; 43 for 40, the coefficients' signs turned). A
    label alone refuses nothing: an agent called Max, a ward called Suma, a loss rated Total."""
    head, tail = SUMMARY_ROWS
    # among the rows of two cells or more: a report's footnotes under its total ('Source: ...',
    # 'Page 1 of 1') had filled the last six
    filled = np.flatnonzero(df.notna().sum(axis=1).to_numpy() >= 2)
    positions = sorted({*filled[:head].tolist(), *filled[max(len(filled) - tail, 0) :].tolist()})

    def label_of(i: int) -> str | None:
        row = df.iloc[i].tolist()
        cells = [(j, c) for j, c in enumerate(row) if _summary_word(c) in TOTAL_WORDS]
        if _summary_word(row[0]) in SUMMARY_WORDS:
            cells.append((0, row[0]))
        shared = [c for j, c in cells if int((df.iloc[:, j] == c).sum()) == 1]
        return shared[0] if shared else None

    labelled = {i: cell for i in positions if (cell := label_of(i)) is not None}
    # a labelled row's numbers written as text too: a total of '"525,711"' and
    # '"$94,346,904"' was trained (parsing every text column costs 40 ms on a 3,000-row file:
    # only for a file with such a label)
    numbers = (
        _numbers_of(df, decimal) if labelled else df.select_dtypes("number").to_numpy(np.float64)
    )
    for i, cell in labelled.items():
        stats = _statistics(numbers, _summed(i, len(df), labelled))
        named = LABEL_STATISTIC.get(_summary_word(cell), "sum")
        if stats and named in _STATISTIC_ORDER[1:]:  # 'Max': every column's greatest
            k = _STATISTIC_ORDER.index(named)
            stats = [s if j == k else np.full(np.shape(s), np.nan) for j, s in enumerate(stats)]
        if numbers.shape[1] and _is_a_statistic(numbers[i], stats):
            n, line = int(df.index[i]), _line_of(df, i, skip)  # as the file has them
            raise UserError(
                f"{source}: row {n + 1} (line {line}) is a total or a summary "
                f"({cell.strip()!r}), not a row of data; delete that line"
            )
    numbers = df.select_dtypes("number").to_numpy(np.float64)
    if len(filled) >= 10 and numbers.shape[1] >= 2:  # a total row with no label: the sums
        # of the rows of two cells or more (a footnote's 'Source: Registry, 2024' has two)
        for i in dict.fromkeys([filled[0], *filled[-3:]]):
            sums = np.nansum(numbers[_summed(i, len(df), {})], axis=0)
            if (
                np.isfinite(numbers[i]).all()
                and np.abs(sums).min() > 0
                and np.allclose(numbers[i], sums, rtol=1e-3, atol=0)
            ):
                n, line = int(df.index[i]), _line_of(df, i, skip)
                raise UserError(
                    f"{source}: row {n + 1} (line {line}) holds the sums of the other "
                    "rows' numbers (a report's total), not a row of data; delete that line"
                )


def _label_statistic(cell: object) -> tuple[str, str] | None:
    """The statistic a subtotal's label names and the rest of the label (its group, as
    :func:`_group_text` writes a cell): ``('sum', 'north-east')`` for 'North-East Total',
    'Total: North-East' or 'Sum of North-East', ``('mean', 'grand')`` for 'Grand Average',
    ``('sum', '')`` for 'Subtotal'; None for a cell that is no such label. The statistic's word
    comes last (Excel writes '<group> Total') or, for a sum's, first; a parenthesis after it
    is left out ('Total (40 sales)'); a word that only begins a label ('Max Mustermann')
    counts for the sums' words alone."""
    text = _group_text(cell)
    if not text:
        return None
    bare = re.sub(r"\s*\([^()]*\)$", "", text).rstrip(":").strip()
    if (m := re.fullmatch(r"(.*?)\s*\(([^()]*)\)", text)) and m[2].strip() in LABEL_STATISTIC:
        return LABEL_STATISTIC[m[2].strip()], _rest(m[1])  # 'Ballard (Total)'
    for t in dict.fromkeys([text.rstrip(":").strip(), bare]):
        if t in LABEL_STATISTIC:
            return LABEL_STATISTIC[t], ""
        words = t.split()
        if len(words) > 1 and words[-1] in LABEL_STATISTIC:
            return LABEL_STATISTIC[words[-1]], _rest(t[: -len(words[-1])])
        first = words[0].rstrip(":") if words else ""
        if len(words) > 1 and LABEL_STATISTIC.get(first) == "sum":
            return "sum", re.sub(r"^(?:of|for)\s+", "", _rest(t[len(words[0]) :]))
        for word in _SUFFIXES:
            if t.endswith(word) and t != word:
                return LABEL_STATISTIC[word], _rest(t[: -len(word)])
        for word in _ASCII_SUFFIXES:  # 'NorthTotal': a group's name, checked against it
            if t.endswith(word) and t != word and t[-len(word) - 1].isalpha():
                return LABEL_STATISTIC[word], _rest(t[: -len(word)])
    return None


def _rest(text: str) -> str:
    """A label's group: the text beside its statistic's word, without the separators between
    them ('North-East - ' of 'North-East - Total')."""
    return text.strip(" \t:-\u2013\u2014,")


def _group_text(cell: object) -> str:
    """A cell as a group's name is compared with a label's: in lower case, its spaces (a
    no-break one from a web page's table too) one plain space each, none at its ends."""
    return " ".join(cell.split()).casefold() if isinstance(cell, str) else ""


def _refuse_subtotal_rows(df: pd.DataFrame, source: str, skip: int = 0, decimal: str = ".") -> None:
    """A :class:`UserError` naming the lines of a report's subtotals, wherever they stand: rows
    labelled as a statistic ('West Total', 'Subtotal', 'Grand Total', 'North Average', in any
    cell) whose numbers are each that statistic of their group's (:func:`_holds_its_statistic`),
    and that are labelled as theirs (:func:`_is_its_groups_label`). Excel's Data > Subtotal
    writes such a row under (or above) every group and a grand total at the end (or the top):
    each trained as one more house (R^2 0.99 on the subtotals alone), and the total check of
    the last rows compared the grand total with rows that held the subtotals.

    Each labelled row is judged on its own, the others kept out of every group; a subtotal
    that no longer adds up (its group edited since) is named with those that do when labelled
    as they are (:func:`_like_the_confirmed`). Rows so labelled that hold the statistic by
    chance among many that do not (a neighbourhood called 'West Total' on a quarter of the
    rows) are not named: at least a fifth of the rows so labelled must hold it."""
    text = [j for j in range(df.shape[1]) if not pd.api.types.is_numeric_dtype(df.iloc[:, j])]
    if not text:
        return
    # row -> (column, cell, statistic, group, the rows of that cell in its column)
    found: dict[int, tuple[int, str, str, str, int]] = {}
    for j in text:
        col = df.iloc[:, j]
        # a text column of 10^6 addresses: each distinct cell once, its ends compared before a
        # label is parsed (one regular expression over the cells took 2 s a million)
        cells = [
            c
            for c in col.dropna().unique()
            if isinstance(c, str)
            and ((t := c.strip().casefold()).endswith(_LABEL_ENDS) or t.startswith(_LABEL_BEGINS))
        ]
        labels = {c: label for c in cells if (label := _label_statistic(c)) is not None}
        if not labels:
            continue
        values, on = col.to_numpy(), col.isin(list(labels)).to_numpy()
        times = col[on].value_counts().to_dict()  # the rows each label is on
        for i in np.flatnonzero(on):
            found.setdefault(int(i), (j, values[i], *labels[values[i]], times[values[i]]))
    # a label that no statistic can confirm is a house's ('Max' on many rows)
    labelled = np.array(sorted(i for i, label in found.items() if _may_be_a_label(label)), int)
    if not len(labelled):
        return
    numbers = _numbers_of(df, decimal)
    if not numbers.shape[1]:
        return
    columns = [(j, df.iloc[:, j].to_numpy()) for j in text]  # the text columns' cells
    filled = df.notna().sum(axis=1).to_numpy() >= 2  # a report's rows: two cells or more
    holds, exact = _holds_its_statistic(numbers, labelled, found, columns, filled)
    if not holds.any() or holds.sum() < 0.2 * len(labelled):
        return
    confirmed = labelled[holds | _like_the_confirmed(labelled, exact, found, columns, filled)]
    shown = confirmed[:SUBTOTALS_SHOWN]
    rows = ", ".join(str(int(df.index[i]) + 1) for i in shown)
    lines = ", ".join(str(_line_of(df, i, skip)) for i in shown)
    said = ", ".join(repr(printable(str(found[i][1]).strip())) for i in shown[:5])
    if len(confirmed) == 1:
        raise UserError(
            f"{source}: row {rows} (line {lines}) is a total or a summary ({said}), not a row "
            "of data; delete that line"
        )
    more = f" and {len(confirmed) - len(shown)} more" if len(confirmed) > len(shown) else ""
    raise UserError(
        f"{source}: rows {rows}{more} (lines {lines}{more}) are totals or summaries of the rows "
        f"around them ({said}{', ...' if len(confirmed) > 5 else ''}), not rows of data; "
        "delete those lines (Excel's Data > Subtotal > Remove All deletes the subtotals it made)"
    )


SUBTOTALS_SHOWN = 20  # the lines a subtotals error names


def _like_the_confirmed(
    labelled: np.ndarray, holds: np.ndarray, found: dict, text: list, filled: np.ndarray
) -> np.ndarray:
    """Which ``labelled`` rows are subtotals like those that hold their statistic (``holds``)
    although theirs no longer adds up (a group edited since, the subtotal not): labelled as
    two of them are (a plain 'Subtotal'), or naming the statistic one of them names and the
    group of the rows right above or below ('North Total' over a North whose price was
    changed). Deleting the lines the error named would have left them to train. ``filled``:
    which rows of the table have two cells or more."""
    held = pd.Series([found[int(i)][1] for i in labelled[holds]], dtype=object)
    cells = set(held[held.duplicated()])
    statistics = {found[int(i)][2] for i in labelled[holds]}
    marked = np.zeros(len(filled), bool)
    marked[labelled] = True
    out = np.zeros(len(labelled), bool)
    for k in np.flatnonzero(~holds):
        i = int(labelled[k])
        column, cell, statistic, rest, _ = found[i]
        if cell in cells:
            out[k] = True
            continue
        if statistic not in statistics or not rest or rest in GRAND:
            continue
        for rows in (range(i - 1, -1, -1), range(i + 1, len(filled))):
            group = []
            for r in rows:
                if marked[r]:
                    break
                if filled[r]:
                    group.append(r)
            if group and _is_its_groups_label(text, found[i], np.asarray(group)):
                out[k] = True
                break
    return out


def _holds_its_statistic(
    numbers: np.ndarray, labelled: np.ndarray, found: dict, text: list, filled: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Which ``labelled`` rows (sorted; ``found[row] = (column, cell, statistic, group, ...)``)
    hold in each of their ``numbers`` the statistic their label names (a sum's label: each a
    sum or a mean, as reports mix them) of the rows of one of their possible groups, as
    :func:`_is_its_groups_label` accepts it. The groups, among the rows of two cells or more
    that no label marks: the rows since the labelled row before (Excel's summary below its
    data) or until the next (above it); right under (over) another label, that label's group
    (two subtotals of a group, 'North Average' then 'North Total'); and every row above (below
    it), a grand total's. Groups above a label only where no more than a report's footnotes
    follow the last label, below it only where no row precedes the first.

    Sums, means, counts and deviations come from running sums over the rows; least, greatest
    and median one group at a time (from the first or to the last row: running least and
    greatest; medians of at most a few such)."""
    is_labelled = np.zeros(len(filled), bool)
    is_labelled[labelled] = True
    data = np.flatnonzero(filled & ~is_labelled)
    K, N = len(labelled), len(data)
    at = np.searchsorted(data, labelled)  # the data rows above labelled row k: data[:at[k]]
    before = np.concatenate([[0], at[:-1]])  # since the label before: data[before:at]
    after = np.concatenate([at[1:], [N]])  # until the next: data[at:after]
    # right under another label: the group of the nearest label above with rows of its own
    own = np.where(at > before, np.arange(K), -1)
    nearest = np.maximum.accumulate(own)
    has = nearest >= 0
    up_lo = np.where(has, before[np.maximum(nearest, 0)], 0)
    up_hi = np.where(has, at[np.maximum(nearest, 0)], 0)
    own_next = np.where(after > at, np.arange(K), K)
    nearest_next = np.minimum.accumulate(own_next[::-1])[::-1]
    has = nearest_next < K
    down_lo = np.where(has, at[np.minimum(nearest_next, K - 1)], N)
    down_hi = np.where(has, after[np.minimum(nearest_next, K - 1)], N)
    # summaries below their groups leave no rows under the last (a report's footnotes aside);
    # summaries above them, none over the first: a row labelled 'Max' amid the rows, the
    # greatest of those under it, is a house
    below = N - at[-1] <= SUMMARY_ROWS[1]
    above = at[0] == 0
    groups = [
        *([(up_lo, up_hi), (np.zeros(K, int), at)] if below else []),  # the group, all above
        *([(down_lo, down_hi), (at, np.full(K, N))] if above else []),  # the group, all below
    ]
    x = numbers[data]
    kinds = [found[int(i)][2] for i in labelled]
    row = numbers[labelled]
    written = np.isfinite(row)
    # which rows' labels name each statistic (a sum's: a mean too, as reports mix them), and
    # which may stand over a sum that no longer adds up
    names = {
        statistic: np.array([kind == statistic or (statistic == "mean" and kind == "sum")
                             for kind in kinds])[:, None]
        for statistic in _TOLERANCE
    }  # fmt: skip
    strong = np.array([_may_have_grown(found[int(i)]) for i in labelled])[:, None]
    out, exact = np.zeros(K, bool), np.zeros(K, bool)
    for lo, hi in groups:
        candidates = np.flatnonzero(~out & (hi > lo) & written.any(axis=1))
        if not len(candidates):
            continue
        stats = _group_statistics(x, lo, hi, kinds, candidates)
        # half a unit of the last digit written is at most 0.5: the rows within that of their
        # statistic are compared digit by digit (a label-like level on many rows: few are)
        near = np.zeros(row.shape, bool)
        for statistic, rtol in _TOLERANCE.items():
            s = stats[statistic]
            near |= names[statistic] & (np.abs(row - s) <= np.maximum(rtol * np.abs(s), 0.5))
        candidates = candidates[(near | ~written)[candidates].all(axis=1)]
        # a sum that no longer adds up (its range not extended to rows added since, or
        # Excel's SUBTOTAL of the rows a filter left): above every row of its group and at
        # least half their sum in each column, under a label that names its group or a grand
        # one, or a label on no other row (a mansion whose renovation was 'Total', two or
        # three times the mean house, is a house)
        grown = strong & (row >= 0.5 * stats["sum"])
        grown = np.flatnonzero((grown | ~written).all(axis=1) & (written.sum(axis=1) >= 2))
        for k in np.union1d(
            candidates, np.intersect1d(grown, np.flatnonzero(~out & (hi - lo >= 2)))
        ):
            group = data[lo[k] : hi[k]]
            holds = _is_the_statistic_written(row[k], stats, k, kinds[k])
            if not (holds or _above_every_row(row[k], x[lo[k] : hi[k]])):
                continue
            if _is_its_groups_label(text, found[int(labelled[k])], group):
                out[k], exact[k] = True, holds
    named = _named_groups(text, data, x, labelled, found, row, ~out)
    out |= named
    exact |= named
    return out, exact


NAMED_GROUPS_LOOKED_AT = 1000  # labelled rows whose group is looked for by its name


def _named_groups(text, data, x, labelled, found, row, which) -> np.ndarray:
    """Which labelled rows (among ``which``) hold their statistic of every row that holds
    their group's name in some column, wherever those rows stand: nested subtotals ('West
    Total' under West's last inner subtotal, '5 Total' of its bedrooms) group rows that no
    labelled row bounds. At most :data:`NAMED_GROUPS_LOOKED_AT` rows are looked at."""
    out = np.zeros(len(labelled), bool)
    texts: dict[int, dict[str, np.ndarray]] = {}  # column -> group names -> their data rows
    rests = {found[int(labelled[k])][3] for k in np.flatnonzero(which)}
    looked = 0
    for k in np.flatnonzero(which):
        _, _, statistic, rest, _ = found[int(labelled[k])]
        if not rest or rest in GRAND or statistic == "product":
            continue
        looked += 1
        if looked > NAMED_GROUPS_LOOKED_AT:
            break
        for j, column in text:
            if j not in texts:
                codes, uniques = pd.factorize(column[data])
                named = [_group_text(u) for u in uniques]  # each distinct cell once
                wanted = np.flatnonzero(np.isin(named, list(rests)))
                texts[j] = {}
                for c in wanted:
                    texts[j].setdefault(named[c], []).extend(np.flatnonzero(codes == c))
            rows = np.asarray(texts[j].get(rest, []), int)
            if len(rows) < 2:
                continue
            part = x[rows]
            stats = _group_statistics(part, np.array([0]), np.array([len(part)]), [statistic],
                                      np.array([0]))  # fmt: skip
            if _is_the_statistic_written(row[k], stats, 0, statistic):
                out[k] = True
                break
    return out


def _may_have_grown(label: tuple) -> bool:
    """Whether a sum's label (``found``'s ``(column, cell, statistic, group, times)``) may
    stand over a sum that no longer adds up: one naming a group or a grand one, or on no
    other row of its column."""
    _, _, statistic, rest, times = label
    return statistic == "sum" and (bool(rest) or times == 1)


def _above_every_row(row: np.ndarray, group: np.ndarray) -> bool:
    """Whether each of ``row``'s numbers (two or more) is above every number of its column in
    ``group``."""
    at = np.isfinite(row)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a column of no numbers in the group
        greatest = np.nanmax(group[:, at], axis=0)
    return int(at.sum()) >= 2 and bool((row[at] > greatest).all())


def _group_statistics(x: np.ndarray, lo, hi, kinds: list[str], rows: np.ndarray) -> dict:
    """``{statistic: (K, p)}`` of ``x``'s rows ``lo[k]:hi[k]`` for the ``rows`` k (NaN
    elsewhere): sums, means, counts and deviations from running sums; least, greatest and
    medians only for the rows whose label names them."""
    ok = np.isfinite(x)
    x0 = np.where(ok, x, 0.0)

    def running(a: np.ndarray) -> np.ndarray:
        return np.concatenate([np.zeros((1, a.shape[1])), np.cumsum(a, axis=0)])

    S, C, Q = running(x0), running(ok.astype(np.float64)), running(x0 * x0)
    n, total = C[hi] - C[lo], S[hi] - S[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        stats = {
            "sum": np.where(n > 0, total, np.nan),
            "mean": mean,
            "count": n,
            "var": np.maximum((Q[hi] - Q[lo] - n * mean * mean) / (n - 1), 0.0),
            "varp": np.maximum((Q[hi] - Q[lo] - n * mean * mean) / n, 0.0),
        }
        stats["std"], stats["stdp"] = np.sqrt(stats["var"]), np.sqrt(stats["varp"])
    reduce = {"min": np.nanmin, "max": np.nanmax, "median": np.nanmedian, "product": np.nanprod}
    for kind in reduce:
        stats[kind] = np.full(stats["sum"].shape, np.nan)
    wanted = [k for k in rows if kinds[k] in reduce]
    if not wanted:
        return stats
    first = {"min": np.fmin.accumulate(x, axis=0), "max": np.fmax.accumulate(x, axis=0)}
    last = {
        "min": np.fmin.accumulate(x[::-1], axis=0)[::-1],
        "max": np.fmax.accumulate(x[::-1], axis=0)[::-1],
    }
    medians_of_many = 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a group with no number in a column
        for k in wanted:
            kind = kinds[k]
            if lo[k] == 0 and kind in first:
                stats[kind][k] = first[kind][hi[k] - 1]
            elif hi[k] == len(x) and kind in last:
                stats[kind][k] = last[kind][lo[k]]
            elif hi[k] - lo[k] < 1000 or (medians_of_many := medians_of_many - 1) >= 0:
                stats[kind][k] = reduce[kind](x[lo[k] : hi[k]], axis=0)
    return stats


# how near a subtotal's number must be to its statistic, beyond the rounding of its digits
_TOLERANCE = {
    "sum": 0.0, "mean": 1e-2, "median": 1e-2, "min": 0.0, "max": 0.0, "count": 0.0,
    "std": 1e-2, "stdp": 1e-2, "var": 1e-2, "varp": 1e-2, "product": 1e-2,
}  # fmt: skip


def _is_the_statistic_written(row: np.ndarray, stats: dict, k: int, kind: str) -> bool:
    """Whether each number of ``row`` is ``kind`` of its column (``stats[kind][k]``), or for a
    sum's label a sum or a mean: a sum, count, least or greatest as written, to the rounding
    of its digits (:func:`_half_unit`); a mean, median or deviation within 1 % too."""
    at = np.isfinite(row)
    slack = np.maximum(0.01, _half_unit(row[at]))
    near = np.zeros(int(at.sum()), bool)
    for statistic in ("sum", "mean") if kind == "sum" else (kind,):
        s = stats[statistic][k, at]
        rtol = _TOLERANCE[statistic]
        near |= np.abs(row[at] - s) <= np.maximum(rtol * np.abs(s), slack)
    return bool(near.all())


def _may_be_a_label(label: tuple) -> bool:
    """Whether a subtotal's label (``found``'s ``(column, cell, statistic, group, times)``)
    could be confirmed by :func:`_is_its_groups_label`: one naming a group, a sum's, or a
    label on one row of its column."""
    _, _, statistic, rest, times = label
    return bool(rest) or statistic == "sum" or times == 1


def _is_its_groups_label(text: list, label: tuple, group: np.ndarray) -> bool:
    """Whether a row whose numbers are a statistic of the rows ``group`` (positions in the
    file's table, whose text columns are ``text``: ``(index, cells)`` pairs) is labelled as
    theirs: the rest of its label (``label = (column, cell, statistic, rest,
    times)``, ``times`` the rows holding that cell in its column) is what each of those rows
    holds in one column ('North-East' of 'North-East Total'; the others' cells there may be
    empty, as a pivot table writes a group's name on its first row), or a grand one's word ('Grand
    Total'); or, without a rest, the label says a sum ('Subtotal', 'Total') or is the only
    cell so in its column (a condition rated 'Average' on many rows is data). A group of one
    row is its label's only by name."""
    column, cell, statistic, rest, times = label
    if rest:
        if rest in GRAND:
            return len(group) >= 2
        for _, cells in text:
            # each row's cell, or (a pivot table's compact form) the first row's alone
            named = {_group_text(c) for r in group if not pd.isna(c := cells[r])}
            if named == {rest}:
                return True
        return False
    if len(group) < 2:
        return False
    return statistic == "sum" or times == 1


def _summed(i: int, n: int, labelled: dict) -> np.ndarray:
    """The rows a total on row ``i`` of ``n`` sums: those above it when it stands in the lower
    half (the footnotes below a report's total are none of them), else those below it; the
    other labelled rows left out."""
    rows = np.arange(i) if 2 * i >= n else np.arange(i + 1, n)
    return np.setdiff1d(rows, list(labelled))


_STATISTIC_ORDER = ("sum", "mean", "median", "min", "max", "count", "std")  # _statistics'


def _statistics(numbers: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
    """Each column's sum, mean, median, least, greatest, count and standard deviation over
    ``rows`` of ``numbers`` (NaN: no number); none for fewer than three rows."""
    if len(rows) < 3:
        return []
    data = numbers[rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a column of no numbers among the data rows
        return [
            np.nansum(data, 0), np.nanmean(data, 0), np.nanmedian(data, 0),
            np.nanmin(data, 0), np.nanmax(data, 0), np.sum(np.isfinite(data), 0),
            np.nanstd(data, 0, ddof=1),
        ]  # fmt: skip


def _line_of(df: pd.DataFrame, i: int, skip: int) -> int:
    """The file's line (1 the first) on which the ``i``-th row of ``df`` begins: its row under
    the header (``df.index``, blank lines counted), the header's line and the ``skip`` lines
    above it, and the line breaks inside the quoted cells above it (the header's too)."""
    breaks = sum(len(_LINE_BREAK.findall(str(name))) for name in df.columns)
    for j in range(df.shape[1]):
        above = df.iloc[:i, j]
        if not pd.api.types.is_numeric_dtype(above):
            breaks += int(above.dropna().astype(str).str.count(_LINE_BREAK.pattern).sum())
    return int(df.index[i]) + 2 + skip + breaks


_LINE_BREAK = re.compile(r"\r\n|\r|\n")

MAX_LINES_OF_A_ROW = 3  # a cell broken by one or two line breaks (an address over three lines)
MAX_SPLIT_CANDIDATES = 10_000  # lines that may make a split row, looked at (a file of short rows)


def _refuse_rows_split_over_lines(
    df: pd.DataFrame, source: str, skip: int = 0, decimal: str = "."
) -> None:
    """A :class:`UserError` naming every row that unquoted line breaks have split over two or
    three lines: inside a cell (an address typed over two lines, written out by a tool that
    does not quote it), or between two cells (a long line wrapped by an editor or a mail). A
    CSV reader takes such lines as short rows, the cells of every line after the first in the
    columns of the cells before them (a price under 'bedrooms'), the columns after them
    missing; data.missing=drop or mean, the advice for missing values, then lost the house or
    trained those cells.

    ``df``: the table as pandas read it (``df.index``: each row's line under the header). Lines
    that follow one another are one row when every line but the last is short of a row's usual
    width (the header's columns, or the most rows' written width when fewer), their written
    widths (up to the last written cell) add up to it (plus one for each break inside a cell),
    a break inside a cell falls in a column of text, the row they make holds a number in every
    column of numbers it has a cell in (one at least), read apart, as the reader did, they put
    a word in a column of numbers or a number in one of words, and a whole row follows them.
    Rows with cells missing at their ends read right, so they fail the one test; footnotes
    below the table, the other."""
    n = df.shape[1]
    if n < 2 or len(df) < 2:
        return
    width = n - np.cumprod(df.isna().to_numpy()[:, ::-1], axis=1).sum(axis=1)
    # a row's usual width: the header's columns, or fewer when the last is seldom written
    usual = int(np.bincount(width).argmax())
    short = width < usual
    if not short[:-1].any():
        return
    under = df.index.to_numpy()  # each row's line under the header
    # footnotes below the table are short lines too ('Source: Registry, 2024' under a last row
    # without its last cell): a split row is one a whole row follows
    last_whole = int(np.flatnonzero(~short).max(initial=-1))
    starts = []  # (first row, lines, breaks inside a cell)
    for parts in range(2, MAX_LINES_OF_A_ROW + 1):
        m = len(df) - parts + 1
        if m < 1:
            break
        inside = sum(width[j : j + m] for j in range(parts)) - usual
        fits = (inside >= 0) & (inside < parts) & (np.arange(m) + parts - 1 < last_whole)
        for j in range(parts - 1):
            fits &= short[j : j + m] & (under[j + 1 : j + 1 + m] == under[j : j + m] + 1)
        starts += [(int(i), parts, int(inside[i])) for i in np.flatnonzero(fits)]
    if not starts:
        return
    chains = np.array(sorted({i + j for i, parts, _ in starts for j in range(parts)}))
    others = df.iloc[np.setdiff1d(np.arange(len(df)), chains)]
    share = np.array([_share_of_numbers(others.iloc[:, c], decimal) for c in range(n)])
    numbers, text, words = share >= 0.9, share < 0.5, share <= 0.05
    kinds = _cell_kinds(df.iloc[chains], decimal)
    at = {int(r): k for k, r in enumerate(chains)}
    found = []
    for i, parts, inside in sorted(starts)[:MAX_SPLIT_CANDIDATES]:
        if found and i < found[-1][0] + found[-1][1]:
            continue
        pieces = [list(kinds[at[i + j], : width[i + j]]) for j in range(parts)]
        if not any(
            (k == _NUMBER and words[c]) or (k == _WORD and numbers[c])
            for piece in pieces[1:]
            for c, k in enumerate(piece)
        ):
            continue  # read apart, the lines read right: rows with cells missing at their ends
        for joins in itertools.combinations(range(parts - 1), inside):
            row, broken = _joined(pieces, joins, _WORD)
            row = np.array(row + [_MISSING] * (n - len(row)))
            if (
                all(text[c] for c in broken)
                and (numbers & (row == _NUMBER)).any()
                and not (numbers & (row == _WORD)).any()
            ):
                written = [list(df.iloc[i + j, : width[i + j]]) for j in range(parts)]
                found.append((i, parts, _joined(written, joins)[1]))
                break
    if not found:
        return
    named = []
    for i, parts, broken in found:
        first = _line_of(df, i, skip)
        where = ", ".join(
            f"{str(df.columns[c])!r}: " + " | ".join(map(_shown, cut)) for c, cut in broken.items()
        )
        named.append(f"lines {first}-{first + parts - 1}" + (f" ({where})" if where else ""))
    more = f" and {len(named) - 5} more" if len(named) > 5 else ""
    rows, lines, cells = (
        ("one row", "those lines", "a cell holding a line break")
        if len(found) == 1
        else ("rows", "each row's lines", "cells holding a line break")
    )
    raise UserError(
        f"{source}: {'; '.join(named[:5])}{more}: {rows} split over several lines by a line "
        "break, which a CSV reader takes as short rows with cells in the wrong columns; join "
        f"{lines} into one, or put {cells} in double quotes"
    )


def _joined(
    pieces: list[list], joins: tuple[int, ...], merged: object = None
) -> tuple[list, dict[int, list]]:
    """The row the lines ``pieces`` make when the line breaks after those in ``joins`` fell
    inside a cell (the others between two cells), and each broken cell's column with its
    pieces. A broken cell is its pieces joined by a line break, or ``merged`` when given."""
    row, broken = list(pieces[0]), {}
    for j, piece in enumerate(pieces[1:]):
        if j in joins:
            broken.setdefault(len(row) - 1, [row[-1]]).append(piece[0])
            row[-1] = f"{row[-1]}\n{piece[0]}" if merged is None else merged
            piece = piece[1:]
        row += piece
    return row, broken


_MISSING, _NUMBER, _WORD = 0, 1, 2


def _cell_kinds(df: pd.DataFrame, decimal: str) -> np.ndarray:
    """``(rows, columns)`` int8: each cell ``_MISSING`` (empty, a missing-value word or a
    spreadsheet's error), ``_NUMBER`` (:func:`_parse_numbers`) or ``_WORD``."""
    kinds = np.full(df.shape, _WORD, np.int8)
    for c in range(df.shape[1]):
        col = df.iloc[:, c]
        if pd.api.types.is_bool_dtype(col):
            kinds[col.isna().to_numpy(), c] = _MISSING
            continue
        values, na = _parse_numbers(col, decimal)
        kinds[np.isfinite(values), c] = _NUMBER
        missing = col.isna().to_numpy() | na
        if not pd.api.types.is_numeric_dtype(col):
            text = col.astype(str).str.strip()
            missing |= (text.eq("") | text.isin(EXCEL_ERRORS)).to_numpy()
        kinds[missing, c] = _MISSING
    return kinds


def _share_of_numbers(col: pd.Series, decimal: str) -> float:
    """Of a column's written cells that are no missing-value word, the share that are numbers
    (:func:`_parse_numbers`); 0 for a column with none such."""
    if pd.api.types.is_bool_dtype(col):
        return 0.0
    if pd.api.types.is_numeric_dtype(col):
        return 1.0 if col.notna().any() else 0.0
    values, na = _parse_numbers(col, decimal)
    written = int((col.notna().to_numpy() & ~na).sum())
    return float(np.isfinite(values).sum() / written) if written else 0.0


def _shown(cell: object) -> str:
    """A cell as an error quotes it: its text, cut to 20 characters."""
    text = str(cell).strip()
    return repr(text if len(text) <= 20 else text[:19] + "…")


def _is_a_statistic(row: np.ndarray, stats: list[np.ndarray]) -> bool:
    """Whether each of a row's numbers (NaN: no number) is one of ``stats`` of its column (the
    other rows' sum, mean, median, least, greatest, count, standard deviation, as
    :func:`_statistics` gives them; a report's total row sums the areas and averages the
    prices): within the rounding of the digits written (a mean of 1.175 written 1.2), at least
    a report's two decimals (0.1565 written 0.16), and a sum, mean, median or deviation also
    within 1 %."""
    at = np.isfinite(row)
    if not at.any() or not stats:
        return False
    slack = np.maximum(0.01, _half_unit(row[at]))
    # the least, greatest and count are other cells' values or a whole number: only rounded
    # (the biggest house by an agent called Max, 0.5 % above the next, was refused)
    rtol = (1e-2, 1e-2, 1e-2, 0.0, 0.0, 0.0, 1e-2)
    near = [
        np.abs(row[at] - s[at]) <= np.maximum(r * np.abs(s[at]), slack)
        for s, r in zip(stats, rtol, strict=True)
    ]
    return bool(np.logical_or.reduce(near).all())


def _half_unit(values: np.ndarray) -> np.ndarray:
    """Half a unit in the last decimal each value is written to (its shortest repr): 0.05 for
    1.2, 0.5 for 52166, 0.005 for 0.16."""
    decimals = [
        0 if "e" in (text := repr(float(v))) or text.endswith(".0") else len(text.split(".")[1])
        for v in values
    ]
    return 0.5 * 10.0 ** -np.asarray(decimals, np.float64)


def _refuse_the_header_again(df: pd.DataFrame, source: str, skip: int = 0) -> None:
    """A row that repeats the header (files appended one to another) is a :class:`UserError`
    naming it: its cells made the columns text ('sqft' is not a number, or free text), and the
    advice for that did not help."""
    first = df.iloc[:, 0]
    if not pd.api.types.is_string_dtype(first):
        return
    maybe = np.flatnonzero(first.str.strip().eq(str(df.columns[0])).fillna(False).to_numpy())
    for i in maybe:
        cells = [str(v).strip() for v in df.iloc[i]]
        if cells == [str(c) for c in df.columns]:
            n, line = int(df.index[i]), _line_of(df, i, skip)
            raise UserError(
                f"{source}: row {n + 1} repeats the header (line {line}); delete that line"
            )


# files people give for a table that are no text (their first bytes), and what to do instead
_UNPACK = "decompress it ({} -k FILE) and give the file that makes"
_NOT_TEXT = (
    (b"\x1f\x8b", "a gzip-compressed file", _UNPACK.format("gunzip")),
    (
        b"PK\x03\x04",
        "a zip archive (an Excel .xlsx or OpenDocument workbook is one)",
        "save the sheet as CSV (File > Save As > CSV), or unzip the archive",
    ),
    (
        b"\xd0\xcf\x11\xe0",
        "an old Excel (.xls) workbook",
        "save the sheet as CSV (File > Save As > CSV)",
    ),
    (b"BZh", "a bzip2-compressed file", _UNPACK.format("bunzip2")),
    (b"\xfd7zXZ\x00", "an xz-compressed file", _UNPACK.format("unxz")),
)


def _column_names(header: list[str], columns: int) -> list[str]:
    """The names of a table's first ``columns`` columns from its stripped header row, in
    Unicode's composed form (:func:`_compose_unicode`): a nameless one is ``Unnamed: <position
    from 0>``, as pandas calls it."""
    return [
        unicodedata.normalize("NFC", name) or f"Unnamed: {i}"
        for i, name in enumerate(header[:columns])
    ]


def _compose_unicode(df: pd.DataFrame) -> None:
    """Write every text cell of ``df`` in Unicode's composed form (NFC), in place: ``Zürich``
    typed on one machine and saved on another (macOS writes ``u`` and a combining diaeresis)
    is one level, not an unseen one (a newcomer's prediction priced a Zürich house as
    ``other``, under a warning naming a level that looked like a training one)."""
    for name in df.columns:
        col = df[name]
        if not pd.api.types.is_string_dtype(col):  # pandas' text columns ("str" or object)
            continue
        composed = col.str.isascii().eq(False)  # missing cells: NaN, left alone
        if composed.any():
            df.loc[composed, name] = col[composed].str.normalize("NFC")


def _read_sample(path: Path, key: str, source: str) -> str:
    """The first 64 KiB of the file at ``path``, for :func:`_sniff` and the header; raises
    :class:`UserError` (naming ``key``) when there is no such file (or a directory), or when
    it is empty."""
    if path.is_dir():
        raise UserError(f"{key}={source}: a directory, not a file; give the path of a CSV file")
    if not path.is_file():
        raise UserError(f"{key}={source}: no such file; give the path of a CSV file")
    with open(path, "rb") as f:
        head = f.read(8)
    for magic, what, do in _NOT_TEXT:
        if head.startswith(magic):
            from errors import shell_word

            do = do.replace("FILE", shell_word(source))
            raise UserError(f"{source}: {what}, not a CSV text file; {do}")
    with open(path, encoding=_text_encoding(path), errors="replace") as f:
        sample = f.read(65536)
    # blank lines, a DOS end-of-file mark or Excel's `sep=;` line over nothing are no text
    if _is_blank(_without_the_separator_line(sample)[0]):
        raise UserError(f"{source}: the file is empty; it needs a header row and data rows")
    return sample


def _text_encoding(path: Path | str) -> str:
    """UTF-16 for a file that starts with its byte-order mark (Excel's "Unicode Text", a tab
    file), or without one when a tenth of its first bytes or more are 0 (UTF-8 text has none),
    in the byte order that reads as lines and fields; else UTF-8 (its byte-order mark, if any,
    skipped)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    if head.count(0) * 10 < len(head):  # UTF-8 text has no zero bytes
        return "utf-8-sig"
    # UTF-16 without its mark: the byte order in which the text reads as lines and fields
    best, found = "utf-8-sig", 0
    for encoding in ("utf-16-le", "utf-16-be"):  # (a pair of surrogates cut at the end)
        text = head[: len(head) // 2 * 2].decode(encoding, errors="replace")
        marks = sum(text.count(c) for c in "\n\r,;\t|")
        if marks > found:
            best, found = encoding, marks
    return best


def _read_header(sample: str, sep: str, source: str, key: str, min_columns: int) -> list[str]:
    """The header row's column names, stripped; raises :class:`UserError` for a name that
    appears twice or fewer than ``min_columns`` columns (a separator we do not know)."""
    header = next(csv.reader(io.StringIO(sample), delimiter=sep))
    header = [h.strip() for h in header]
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in seen and name:
            raise UserError(
                f"{source}: column name {name!r} appears twice (columns "
                f"{seen[name] + 1} and {i + 1}); rename one"
            )
        seen[name] = i
    if len(header) < min_columns:
        raise UserError(
            f"{source}: found one column only, {header[0]!r}; the file must be separated by "
            f"',' ';' '|' or tabs"
            + (" (set data.sep to the separator it uses)" if key == "data.path" else "")
            + f", with at most {MAX_TITLE_LINES} lines above its header (delete the others)"
        )
    return header


def _is_blank(line: str) -> bool:
    """A line pandas skips as blank: nothing but spaces and tabs (DOS's end-of-file mark, a
    last line of its own, likewise)."""
    return not line.strip(" \t\r\n\x1a")


def _without_leading_blank_lines(sample: str, skip: int) -> tuple[str, int]:
    """``(sample, skip)`` without the blank lines at the top of ``sample``, counted in
    ``skip``: they are no title, and do not count against :data:`MAX_TITLE_LINES`."""
    lines = sample.splitlines(keepends=True)
    blank = next((k for k, line in enumerate(lines) if not _is_blank(line)), len(lines))
    return "".join(lines[blank:]), skip + blank


def _without_the_separator_line(sample: str) -> tuple[str, int, str | None]:
    """``(sample, lines to skip, separator)``: Excel's ``sep=;`` first line (written so that
    Excel opens the file right in any locale) names the separator and is no header: the
    sample without it, 1 and its separator; else the sample, 0 and None."""
    first, newline, rest = sample.partition("\n")
    hint = re.fullmatch(r"sep=(.)", first.rstrip("\r"))
    if hint is None or hint.group(1) not in SEPARATORS:
        return sample, 0, None
    return rest, 1, hint.group(1)


def _parse_table(
    path: Path, sep: str, decimal: str, source: str, skip: int = 0, columns: int | None = None
) -> pd.DataFrame:
    """pandas' reading of the whole file (after its first ``skip`` lines, ``columns`` fields a
    line when its header is short of them), every cell a string or a number; raises
    :class:`UserError` for bytes that are not UTF-8 (naming the line) or a malformed file."""
    try:
        # thousands separators are removed by _parse_numbers, which checks their places
        return _pandas_read(path, sep, decimal=decimal, skiprows=skip, columns=columns)
    except UnicodeDecodeError:
        raw = path.read_bytes()
        try:
            raw.decode("utf-8-sig")
            raise AssertionError("pandas found bytes that are not UTF-8 where Python did not")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise UserError(
                f"{source}: line {line} is not UTF-8 text (byte 0x{raw[exc.start]:02x});"
                f" save the file as UTF-8"
            ) from None
    except pd.errors.ParserError as exc:
        wider = re.search(r"Expected (\d+) fields in line \d+, saw \d+", str(exc))
        if wider:  # a line with a field past the header's last, below the lines sniffed
            row = _first_row_wider_than(path, sep, skip, int(wider.group(1)))
            if row is not None:
                raise UserError(
                    wider_than_the_header(source, *row, int(wider.group(1)), sep)
                ) from None
        raise UserError(f"{source}: not a well-formed CSV file: {exc}".splitlines()[0]) from None


def _first_row_wider_than(path: Path, sep: str, skip: int, fields: int) -> tuple[int, int] | None:
    """The first row (1 the first under the header, blank lines counted) with more than
    ``fields`` fields, and its fields (:func:`_first_wider`); None when there is none (another
    fault of the file). Read with Python's csv module: only when pandas has refused the file."""
    with open(path, encoding=_text_encoding(path), newline="") as f:
        text = f.read()
    if _old_mac_line_ends(path):
        text = text.replace("\r", "\n")
    records = csv.reader(io.StringIO(text), delimiter=sep)
    return _first_wider(itertools.islice(records, skip + 1, None), fields)


def _first_wider(records, fields: int) -> tuple[int, int] | None:
    """The first of ``records`` (those under the header) with more than ``fields`` fields, as
    its row (1 the first, blank records counted) and its fields; None when there is none."""
    for k, record in enumerate(records):
        if len(record) > fields:
            return k + 1, len(record)
    return None


def _old_mac_line_ends(path: Path | str) -> bool:
    """Whether the file ends its lines with a lone CR (old Mac), more often than with an LF
    (a newline inside a quoted cell aside)."""
    with open(path, "rb") as f:
        head = f.read(65536)
    return len(re.findall(rb"\r(?!\n)", head)) > head.count(b"\n")


def _pandas_read(
    path: Path | str,
    sep: str,
    columns: int | None = None,
    keep_empty_rows: bool = False,
    **options,
) -> pd.DataFrame:
    """``pandas.read_csv`` of the whole file as this module reads every file (only ``""`` is
    missing, no index, a BOM skipped), with ``options`` (``decimal``, or ``dtype=str``);
    ``columns``: fields a line, the header's names replaced (a header short of them).
    ``keep_empty_rows``: blank lines and lines of separators only are rows of missing cells
    (``attrs["empty_rows"]`` empty); else they are left out, their numbers (1 = the first line
    under the header) in ``attrs["empty_rows"]``."""
    if keep_empty_rows:
        options.update(skip_blank_lines=False)
    if columns is not None:
        options.update(header=0, names=range(columns))
    # old Mac line ends: pandas miscounted the skipped lines above the header, and a data row
    # was lost
    if _old_mac_line_ends(path):
        options.update(lineterminator="\r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a trailing separator on every line: pandas warns
        df = pd.read_csv(
            path,
            sep=sep,
            skipinitialspace=True,
            na_values=[""],
            keep_default_na=False,
            index_col=False,
            encoding=_text_encoding(path),
            low_memory=False,
            **options,
        )
    if len(df):  # DOS's end-of-file mark, Ctrl-Z, on a line of its own or after the last cell
        for name in df.columns:
            cell = df[name].iloc[-1]
            if isinstance(cell, str) and cell.endswith("\x1a"):
                rest = cell[:-1].strip()
                column = df[name].copy()
                column.iloc[-1] = rest or np.nan
                if options.get("dtype") is str:  # the cells as written stay strings
                    df[name] = column
                    continue
                numbers = pd.to_numeric(column, errors="coerce")  # the column pandas would read
                df[name] = numbers if numbers.notna().sum() == column.notna().sum() else column
    if keep_empty_rows:
        df.attrs["empty_rows"] = []
        return df
    # a line of separators only (',,,': a spreadsheet's empty row) is a blank line, not a row
    # of missing cells; the others keep their numbers (the index) for the errors that name them
    empty = every_cell_empty(df)
    if empty.all():  # a header over empty rows: no data rows (read_csv says so)
        df = df.iloc[:0]
        df.attrs["empty_rows"] = []
        return df
    lines = np.flatnonzero(~empty)  # each row's line under the header, 0 the first
    if _has_a_blank_line(path):  # pandas skips blank lines and numbers the rows without them
        every = _pandas_read(path, sep, columns, True, dtype=str, skiprows=options.get("skiprows"))
        filled = np.flatnonzero(~every_cell_empty(every))
        if len(filled) == len(lines):  # the same rows with a cell, in the same order
            lines = filled
    df = df[~empty]
    df.index = lines
    # the empty lines among the rows; those after the last row are no row of the table
    df.attrs["empty_rows"] = (np.setdiff1d(np.arange(lines[-1]), lines) + 1).tolist()
    return df


def every_cell_empty(df: pd.DataFrame) -> np.ndarray:
    """Which rows of ``df`` have no cell written: each missing, or only spaces and tabs (a
    line pandas skips as blank, read as a row when blank lines are kept). ``(len(df),)``."""
    empty = df.isna().to_numpy(copy=True)
    for j in range(df.shape[1]):
        col = df.iloc[:, j]
        if not pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            codes, texts = pd.factorize(col, use_na_sentinel=True)  # each distinct text once
            blank = np.array([isinstance(t, str) and _is_blank(t) for t in texts] + [True])
            empty[:, j] |= blank[codes]
    return empty.all(axis=1)


def _has_a_blank_line(path: Path | str) -> bool:
    """Whether the file has a line that is empty or only spaces and tabs (anywhere, the lines
    above the header too: then the rows are counted once more, to no effect)."""
    encoding = _text_encoding(path)
    if encoding != "utf-8-sig":  # UTF-16: its line ends are two bytes each
        with open(path, encoding=encoding, newline="") as f:
            return bool(_BLANK_LINE.search(f.read().encode()))
    with open(path, "rb") as f:
        tail = b""
        while chunk := f.read(1 << 24):
            text = tail + chunk
            if _BLANK_LINE.search(text):
                return True
            tail = text[-4096:]
    return False


# a line end (a lone CR only when no LF follows it), spaces or tabs, a line end
_BLANK_LINE = re.compile(rb"(?:\r\n|\n|\r(?!\n))[ \t]*(?:\r\n|\n|\r)")


def _nameless_or_empty(df: pd.DataFrame, keep: set[str]) -> tuple[list[str], list[str]]:
    """Columns to drop before anything else, with a note each: a nameless index (row numbers or
    unique row names, written by pandas' ``to_csv`` or R's ``write.csv`` before every named
    column; a nameless column further right is data) and columns with no
    value at all (a trailing separator on every line, or only missing-value words: an
    all-``N/A`` column asked for data.missing=mean, then for data.drop)."""
    dropped, notes = [], []
    leading = 0  # the nameless columns before the first name: where an index is written
    while leading < df.shape[1] and str(df.columns[leading]).startswith("Unnamed: "):
        leading += 1
    for position, name in enumerate(df.columns):
        if name in keep:
            continue
        col = df[name]
        if col.isna().all():
            dropped.append(name)
            notes.append(f"column {name!r} has no values (a trailing separator?): dropped")
        elif _parse_numbers(col, ".")[1].all():  # every cell N/A, null, ... (an export's)
            dropped.append(name)
            notes.append(f"column {name!r} holds only missing values ({col.iloc[0]!r}): dropped")
        elif position < leading and col.notna().all() and _row_names(col):
            dropped.append(name)
            notes.append(
                f"column {name!r} has no name and a different value in every row (an index "
                f"written by pandas or R): dropped; if it holds data, give it a name in the "
                "header"
            )
        elif name.startswith("Unnamed: "):
            notes.append(
                f"column {name!r} has no name and is used as a feature; if it numbers the rows "
                "(an index), add it to data.drop"
            )
    return dropped, notes


def _choose_kind(
    col: pd.Series, name: str, source: str, declared: bool, opts: dict
) -> ColumnCode | None:
    """The kind of a feature column from all its cells (levels and fills come later, from the
    training rows). None: a date column under ``data.dates=drop``."""
    if declared:
        return ColumnCode(name, "onehot")
    if pd.api.types.is_bool_dtype(col):
        return ColumnCode(name, "boolean")
    values, empty = _parse_numbers(col, opts["decimal"])
    present = ~empty
    parsed = present & ~np.isnan(values)
    # numbers with a few bad cells (one, in a small file) are a numeric column whose bad cells
    # are named as errors, not a text column
    unparsed = int(present.sum() - parsed.sum())
    if (
        not present.any()
        or parsed.sum() >= 0.9 * present.sum()
        or (unparsed == 1 and parsed.sum() >= 3)
    ):
        _numbers(col, name, source, opts["decimal"])  # a few bad cells: name the first
        return ColumnCode(name, "numeric", log=name in opts["log_features"])
    codes, levels = _cells(col)
    fmt = _date_format(levels)
    if fmt is not None:
        if opts["dates"] == "drop":
            return None
        first_year = _century(levels, fmt) if "%y" in fmt else None
        return ColumnCode(name, "date", date_format=fmt, first_year=first_year)
    if _looks_numeric(pd.Series(levels, dtype=object)).all():
        # numbers in another convention than the file's: a text column would hide that
        bad = int(np.flatnonzero(present & np.isnan(values))[0])
        other = _other_mark(opts["decimal"])
        if np.isnan(_parse_numbers(col.iloc[[bad]].astype(object), other)[0][0]):
            # with the other mark it is no number either: advising it went round in a circle
            # ('06.01.18': set data.decimal=',', then set data.decimal=.)
            advice = "it is no number with either decimal mark: fix the cell"
        else:
            advice = _mark_advice(opts["decimal"])
        raise UserError(
            f"{source}: column {name!r} row {_row(col, bad)}: {col.iloc[bad]!r} is not a "
            f"number; {advice} (or add it to data.categorical if its values are codes)"
        )
    if name in opts["log_features"]:
        raise UserError(f"{source}: column {name!r} in data.log_features is text, not numbers")
    if {str(v).lower() for v in levels if str(v) not in NA_TOKENS} in BOOLEAN_PAIRS:
        return ColumnCode(name, "boolean")
    n_rows = int((codes >= 0).sum())
    if len(levels) > 2 and len(levels) > n_rows / 2:
        first = str(col.iloc[int(np.flatnonzero(present & np.isnan(values))[0])])
        # '1938 sqft' beside '292.6 m2': a number and a unit in (nearly) every cell; an
        # address, '12 Main St', is free text
        unit = r"\s*[+-]?[\d.,']*\d\s*[^\W\d_]{1,5}[²2]?\.?\s*"
        with_units = pd.Series(levels, dtype=object).astype(str).str.fullmatch(unit)
        if with_units.mean() >= 0.9:
            raise UserError(
                f"{source}: column {name!r} is numbers written with more than a number in the "
                f"cell ({first!r}, {len(levels)} different values in {n_rows} rows); write each "
                "as the number alone, all in one unit, or add the column to data.drop"
            )
        raise UserError(
            f"{source}: column {name!r} is free text ({len(levels)} different values in "
            f"{n_rows} rows, such as {first!r}), not a category; add it to data.drop"
        )
    if len(levels) > opts["max_levels"]:
        raise UserError(
            f"{source}: column {name!r} has {len(levels)} different values in {n_rows} rows, "
            f"more than data.max_levels={opts['max_levels']}; set data.max_levels="
            f"{len(levels)} to one-hot encode it, or add it to data.drop"
        )
    if opts["text_columns"] == "error":
        raise UserError(
            f"{source}: column {name!r} is text with values {sorted(map(str, levels))[:5]}; "
            f"set data.text_columns=onehot to one-hot encode it, or add it to data.drop"
        )
    return ColumnCode(name, "onehot")


def _fit_levels(c: ColumnCode, col: pd.Series, train: np.ndarray, min_count: int) -> None:
    """Kept and pooled levels from the training rows' cells, an empty cell the level
    :data:`MISSING`; where some are pooled, a level the file writes :data:`OTHER` is pooled with
    them (both would be the input ``<column>_other``). The rule is otherwise scikit-learn's
    ``OneHotEncoder(min_frequency=min_count, handle_unknown="infrequent_if_exist")``: a level
    seen fewer than ``min_count`` times is infrequent, and so is (at transform) one never seen.
    We count with ``numpy.bincount`` on the factorized column (scikit-learn's fit counts 10^6
    strings in a Python ``Counter``, 3.5 s a column here); ``tests/test_csv_real.py`` holds the
    two to the same levels."""
    codes, texts = _level_cells(col)
    counts = np.bincount(
        np.where(codes[train] < 0, len(texts), codes[train]), minlength=len(texts) + 1
    )
    texts = np.append(texts, MISSING)
    seen = counts > 0
    kept = [str(t) for t in texts[seen & (counts >= min_count)]]
    c.pooled = sorted(str(t) for t in texts[seen & (counts < min_count)])
    if c.pooled and OTHER in kept:  # the file's own level 'other' is where the rare ones go
        kept.remove(OTHER)
        c.pooled = sorted([*c.pooled, OTHER])
    c.levels = sorted(v for v in kept if v != MISSING) + ([MISSING] if MISSING in kept else [])
    c.other = bool(c.pooled)


def _fit_encoding(
    df: pd.DataFrame,
    source: str,
    target: str,
    *,
    features: list[str] | None = None,
    drop: list[str] = (),
    categorical: list[str] = (),
    text_columns: str = "onehot",
    log_features: list[str] = (),
    log_target: bool = False,
    missing: str = "error",
    min_level_count: int = 5,
    max_levels: int = 50,
    dates: str = "decimal_year",
    train_rows: np.ndarray | None = None,
) -> tuple[Encoding, pd.DataFrame, np.ndarray]:
    """Choose and fit the rule of every column (see the module docstring).

    ``train_rows``: positions in ``df`` after missing rows are dropped (None: every row; a
    callable ``n -> positions`` is called with the number of rows left). Returns the encoding,
    the rows it applies to (``df`` less the rows ``missing=drop`` took out, or rows with an
    empty target under ``missing=mean``) and their features, float32 (rows, features)."""
    decimal = df.attrs.get("decimal", ".")
    columns = list(df.columns)
    try:
        _check_named_columns(columns, source, target, features, drop, log_features, categorical)
    except UserError as exc:  # lines were skipped as a title: say so, and the split
        if not df.attrs.get("notes"):
            raise
        read = "; ".join([*df.attrs["notes"], f"split on {df.attrs.get('sep', ',')!r}"])
        raise UserError(f"{exc} ({read}; data.sep says the separator)") from None
    opts = dict(
        decimal=decimal,
        sep=df.attrs.get("sep", ","),
        log_features=set(log_features),
        dates=dates,
        max_levels=max_levels,
        text_columns=text_columns,
    )
    codes, auto_dropped, notes = _choose_codes(
        df, source, target, features, drop, categorical, opts
    )
    notes = [*df.attrs.get("notes", []), *notes]  # the reading's: title lines skipped
    enc = Encoding(target, codes, log_target, df.attrs.get("sep", ","), decimal, auto_dropped)
    enc.missing = missing
    target_decimal, note = _column_decimal(
        df[target], target, decimal, opts["sep"], df.attrs.get("path")
    )
    notes += [note] if note else []
    enc.target_decimal = target_decimal if target_decimal != decimal else None
    df = _rows_to_keep(df, codes, target, source, missing, decimal, notes, enc.target_decimal)
    if callable(train_rows):
        train_rows = train_rows(len(df))
    train = np.arange(len(df)) if train_rows is None else np.asarray(train_rows)
    named = {"data.features": features or [], "data.log_features": log_features}
    _refuse_inputs_of_one_name(codes, df, source, {**named, "data.categorical": categorical})
    for c in codes:
        _fit_column(c, df[c.name], train, source, missing, decimal, min_level_count, notes)
    X = enc.transform(df, source, missing, where="the val/test rows")
    notes += enc.warnings  # the val/test rows' unseen levels: notes of the fit
    X = _drop_constant(X, enc, train, notes)
    enc.notes = notes
    return enc, df, X


def _refuse_inputs_of_one_name(
    codes: list[ColumnCode], df: pd.DataFrame, source: str, named: dict[str, list[str]]
) -> None:
    """A :class:`UserError` where two columns can make model inputs of one name: a column
    ``Zone_B`` beside the level ``B`` of a column ``Zone``, ``lot``'s level ``type_x`` beside
    ``lot_type``'s ``x``, a column ``Zone_other`` beside ``Zone``'s pooled rare levels. The
    second would silently replace the first in every table of coefficients, and advice to drop
    it could name the other's column. Every level of the whole file counts, and the pooled
    ``other``: which levels are kept depends on the training rows, so a cross-validation fold
    must not meet a clash its run did not. ``named``: the settings naming columns
    (``data.log_features``, ...), out of which a column to drop must be taken too."""
    made_by: dict[str, list[tuple[ColumnCode, str | None]]] = {}
    for c in codes:
        for output, level in _possible_outputs(c, df[c.name]):
            makers = made_by.setdefault(output, [])
            if all(m is not c for m, _ in makers):
                makers.append((c, level))
    for name, makers in made_by.items():
        if len(makers) < 2:
            continue
        said = [
            f"column {c.name!r}"
            if level is None
            else f"column {c.name!r} (its rare and unseen levels, pooled as {OTHER!r})"
            if level == OTHER
            else f"column {c.name!r} (its level {level!r})"
            for c, level in makers
        ]
        drops = " or ".join(
            hydra_list("data.drop", [c.name])
            + "".join(f" with {c.name!r} out of {k}" for k, v in named.items() if c.name in v)
            for c, _ in makers
        )
        raise UserError(
            f"{source}: {' and '.join(said)} can both be the model's input {name!r}; rename "
            f"one of the columns in the file, or leave one out with {drops}"
        )


def _possible_outputs(c: ColumnCode, col: pd.Series) -> list[tuple[str, str | None]]:
    """The inputs column ``c`` can make on any training rows, each with the level it stands
    for (None: the column is one input): a one-hot column's every level in ``col`` (empty
    cells :data:`MISSING`) and :data:`OTHER`."""
    if c.kind != "onehot":
        return [(c.all_outputs[0], None)]
    codes, texts = _cells(col)
    levels = [str(t) for t in texts] + ([MISSING] if (codes < 0).any() else []) + [OTHER]
    return [(f"{c.name}_{level}", level) for level in levels]


def _choose_codes(
    df: pd.DataFrame,
    source: str,
    target: str,
    features: list[str] | None,
    drop: list[str],
    categorical: list[str],
    opts: dict,
) -> tuple[list[ColumnCode], list[str], list[str]]:
    """The feature columns' kinds (:func:`_choose_kind`), the columns dropped on their own
    (nameless index, empty, or dates under ``data.dates=drop``) and a note for each drop.
    Raises :class:`UserError` when the target is also a feature."""
    columns = list(df.columns)
    auto_dropped, notes = ([], []) if features else _nameless_or_empty(df, {target})
    names = (
        list(features)
        if features
        else [c for c in columns if c != target and c not in drop and c not in auto_dropped]
    )
    if target in names:
        raise UserError(
            f"{source}: data.target {target!r} is also a feature; remove it from data.features"
        )
    codes = []
    for name in [*names, target]:
        _refuse_mixed_currencies(df[name], name, source)
    for name in names:
        decimal, note = _column_decimal(
            df[name], name, opts["decimal"], opts["sep"], df.attrs.get("path")
        )
        if note:
            notes.append(note)
        code = _choose_kind(
            df[name], name, source, name in categorical, {**opts, "decimal": decimal}
        )
        if code is not None and code.kind == "numeric" and decimal != opts["decimal"]:
            code.decimal = decimal
        if code is None:
            auto_dropped.append(name)
            notes.append(f"column {name!r} is a date: dropped (data.dates=drop)")
        else:
            codes.append(code)
    return codes, auto_dropped, notes


def _refuse_mixed_currencies(col: pd.Series, name: str, source: str) -> None:
    """A :class:`UserError` for a column of amounts in more than one currency (``USD 242,329``
    beside ``242,329 EUR``): its numbers would be read as one unit, silently."""
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return
    _, texts = _cells(col)
    found = set()
    for text in map(str, texts):
        found.update(_SIGN_CODES.get(c, c) for c in re.findall(_MONEY, text))
    if len(found) > 1:
        raise UserError(
            f"{source}: column {name!r} holds amounts in more than one currency "
            f"({', '.join(sorted(found))}); convert them to one"
        )


def _percent_note(col: pd.Series, name: str) -> str | None:
    """A note for a number column with cells written with a percent sign (None: none is):
    ``7.5%`` is read as 7.5, so the coefficient is per percentage point; a cell without the
    sign is read as written, which in the same column may be a fraction (``0.075``)."""
    _, texts = _cells(col)
    text = pd.Series(texts, dtype=object).str.strip()
    text = text[~text.isin(NA_TOKENS) & (text != "")]
    signed = text.str.endswith("%") | text.str.startswith("%")
    if not signed.any():
        return None
    cell = text[signed].iloc[0]
    note = (
        f"column {name!r} is percentages: read as the number before the sign ({cell!r} as "
        f"{cell.strip('% ')}, so its coefficient is per percentage point)"
    )
    if not signed.all():
        other = text[~signed].iloc[0]
        note += (
            f"; cells without the sign as written ({other!r}): if those are fractions, write "
            "them as percentages too"
        )
    return note


def _as_shown(name: str, columns: list[str], key: str, names: list[str] | None = None) -> str:
    """For ``name`` typed as a column is shown escaped (``lot\\xa0size`` for a no-break space)
    or as it looks (``lot size``): the override that names that column, for bash (``names``:
    the list ``name`` is in); else nothing."""
    from errors import hydra_list, hydra_value

    meant = [c for c in columns if c != name and name in (printable(c), _looks(c))]
    if not meant:
        return ""
    if names is None:
        override = hydra_value(key, meant[0])
    else:
        override = hydra_list(key, [meant[0] if n == name else n for n in names])
    return (
        f"; {name!r} is how the column {printable(meant[0])} is shown or looks: it holds a "
        f"character that is not printed; give it as {override}"
    )


def _looks(name: str) -> str:
    """``name`` as it looks on a screen: a no-break or other space a plain one, a zero-width
    character or byte-order mark nothing."""
    spaced = "".join(" " if unicodedata.category(c) == "Zs" else c for c in name)
    return "".join(c for c in spaced if unicodedata.category(c) != "Cf")


def _check_named_columns(
    columns: list[str],
    source: str,
    target: str,
    features: list[str] | None,
    drop: list[str],
    log_features: list[str],
    categorical: list[str],
) -> None:
    """Every column the config names (``data.drop``, ``data.features``, ``data.log_features``,
    ``data.categorical``, ``data.target``) is one of ``columns``, a feature is named once, and
    the target is neither dropped nor declared a category; else :class:`UserError`."""
    for key, names in (
        ("data.drop", drop),
        ("data.features", features or []),
        ("data.log_features", log_features),
        ("data.categorical", categorical),
    ):
        for name in names:
            if name not in columns:
                raise UserError(
                    f"{source}: no column {name!r} (from {key}); the columns are: "
                    f"{printable(', '.join(columns))}{_as_shown(name, columns, key, names)}"
                )
    if target not in columns:
        raise UserError(
            f"{source}: no column {target!r} for data.target; the columns are: "
            f"{printable(', '.join(columns))}{_as_shown(target, columns, 'data.target')}"
        )
    twice = [name for name in features or [] if (features or []).count(name) > 1]
    if twice:  # the column entered the model twice, two coefficients for one effect
        raise UserError(
            f"{source}: column {twice[0]!r} is named twice in data.features; name it once"
        )
    for key, names in (("data.drop", drop), ("data.categorical", categorical)):
        if target in names:  # the target is never dropped or one-hot encoded: silently
            raise UserError(
                f"{source}: data.target {target!r} is also in {key}; remove it from {key}"
            )
    for key, names in (
        ("data.features", features or []),
        ("data.log_features", log_features),
        ("data.categorical", categorical),
    ):
        both = [name for name in names if name in drop]
        if both:  # the drop, or the log or one-hot encoding, was silently not done
            raise UserError(
                f"{source}: column {both[0]!r} is in both {key} and data.drop; remove it "
                "from one of them"
            )


def _rows_to_keep(
    df: pd.DataFrame,
    codes: list[ColumnCode],
    target: str,
    source: str,
    missing: str,
    decimal: str,
    notes: list[str],
    target_decimal: str | None = None,
) -> pd.DataFrame:
    """``df`` less the rows ``data.missing`` leaves out (``drop``: any empty cell of the target
    or a feature; ``mean``: an empty target, whose cells are never filled), with a note in
    ``notes``; ``missing=error`` raises :class:`UserError` naming the first empty cell."""
    y_code = ColumnCode(target, "numeric", decimal=target_decimal)
    y_empty = _missing_mask(df[target], y_code, decimal)
    if missing == "drop":
        keep = ~y_empty
        for c in codes:
            keep &= ~_missing_mask(df[c.name], c, decimal)
    elif missing == "mean":
        keep = ~y_empty
    else:
        _refuse_missing(df, codes + [y_code], source, "error", decimal)
        keep = None
    if keep is not None and not keep.all():
        notes.append(
            f"data.missing={missing}: dropped {int((~keep).sum())} of {len(df)} rows with "
            f"missing values{'' if missing == 'drop' else ' in the target'}"
        )
        df = df[keep]
    return df


def _identifier(name: str, values: np.ndarray) -> bool:
    """Whether a number column is most likely a row's identifier: named ``id``, ``..._id``,
    ``ParcelID`` and the like, and a different whole number in every one of ``values``."""
    named = re.search(r"(^|[_\s.-])id$", name, re.I) or re.search(r"[a-z](ID|Id)$", name)
    values = values[~np.isnan(values)]
    return bool(
        named
        and len(values) > 1
        and np.all(values == np.round(values))
        and len(np.unique(values)) == len(values)
    )


# the last word(s) of a zip or postal code's column name, and names that are one alone
_POSTAL = {"zip", "zipcode", "postcode", "postalcode", "pincode", "plz", "postleitzahl"}
_POSTAL_ALONE = {"cep", "codepostal"}  # Brazil's, France's


def _postal_code(name: str, values: np.ndarray) -> bool:
    """Whether a number column is most likely a zip or postal code: its name's last word, or
    last two run together, is ``zip``, ``zipcode``, ``postcode``, ``postalcode``, ``pincode``,
    the German ``PLZ`` or ``Postleitzahl`` (``ZIP``, ``Zip Code (5)``, ``owner_zip``,
    ``zip_code_5digit``, ``PostalCode``; not ``unzip``), or the name is ``CEP`` or
    ``code_postal``; a note in parentheses and a count of digits after it left out; and
    ``values`` are whole numbers, more than two different (a 0/1 flag is no code)."""
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", re.sub(r"\(.*?\)", "", name)).lower()
    words = [w for w in re.split(r"[^a-z0-9]+", words) if w]
    if words:  # 'zip5', 'zip code 5digit': the count of digits is no word of the name
        last = re.sub(r"\d+(digits?)?$", "", words[-1])
        words = words[:-1] + ([last] if last else [])
    values = values[~np.isnan(values)]
    return bool(
        words
        and (
            words[-1] in _POSTAL
            or "".join(words[-2:]) in _POSTAL
            or "".join(words) in _POSTAL_ALONE
        )
        and np.all(values == np.round(values))
        and len(np.unique(values)) > 2
    )


def _fit_column(
    c: ColumnCode,
    col: pd.Series,
    train: np.ndarray,
    source: str,
    missing: str,
    decimal: str,
    min_level_count: int,
    notes: list[str],
) -> None:
    """Fit column ``c`` on the ``train`` rows of ``col``: a one-hot column's levels, and under
    ``missing=mean`` a number column's fill (the mean of its training rows' values, as
    scikit-learn's ``SimpleImputer`` computes it); what a user should know goes in ``notes``.
    Raises :class:`UserError` for a column to fill that has no value in the training rows."""
    if c.kind == "onehot":
        _fit_levels(c, col, train, min_level_count)
        kept = [lv for lv in [*c.levels, *c.pooled] if lv != MISSING]
        alike: dict[str, list[str]] = {}
        for level in kept:
            alike.setdefault(level.casefold(), []).append(level)
        twins = [group for group in alike.values() if len(group) > 1]
        if twins:  # 'West' and 'west': two levels; said, not merged behind the user's back
            notes.append(
                f"column {c.name!r}: levels {' and '.join(map(repr, twins[0]))} differ only in "
                f"case and are {len(twins[0])} levels; write them alike in the file to make "
                "them one"
            )
        rare = c.rare
        if rare:
            own = f", with the file's own level {OTHER!r}" if OTHER in c.pooled else ""
            notes.append(
                f"column {c.name!r}: {len(rare)} level(s) seen fewer than "
                f"data.min_level_count={min_level_count} times in the training rows "
                f"pooled as {OTHER!r} ({', '.join(map(repr, rare[:5]))}"
                f"{', ...' if len(rare) > 5 else ''}){own}"
            )
    elif c.kind == "date":
        years = (
            ""
            if c.first_year is None
            else (f", two-digit years as {c.first_year}-{c.first_year + 99}")
        )
        notes.append(f"column {c.name!r} is a date ({c.date_format}{years}): as a decimal year")
        if c.date_format.startswith("%m/%d/") and _month_or_day_first(col):
            notes.append(
                f"column {c.name!r}: no date has a day above 12, so they are read month first, "
                "as US files write them; if the day comes first, write them year first "
                "(2021-05-03) to say so"
            )
    elif c.kind == "numeric" and not pd.api.types.is_numeric_dtype(col):
        notes.append(
            _percent_note(col, c.name)
            or f"column {c.name!r} is numbers written as text (thousands separators, currency "
            f"or percent signs, spaces, full-width digits, NA words): read as numbers"
        )
    if c.kind == "numeric" and _identifier(c.name, _raw_values(col, c, source, decimal)[train]):
        notes.append(
            f"column {c.name!r} looks like an identifier (a different whole number in every "
            f"training row) and is used as a number; add it to data.drop to leave it out"
        )
    elif c.kind == "numeric" and _postal_code(c.name, _raw_values(col, c, source, decimal)[train]):
        notes.append(
            f"column {c.name!r} looks like a zip or postal code and is used as a number (one "
            f"coefficient times the code: 98199 is not 'more' than 98001); add it to "
            f"data.categorical for a coefficient per code (rare ones pooled), or to data.drop"
        )
    if missing == "mean" and c.kind != "onehot":
        # every column gets its fill, also one with no empty cell in this file: a new row's
        # empty cell is filled as the run's own val/test rows would have been
        raw = _raw_values(col, c, source, decimal)[train]
        if raw.size and np.isnan(raw).all():
            raise UserError(
                f"{source}: column {c.name!r} has no value in the training rows; "
                f"add it to data.drop"
            )
        # scikit-learn's SimpleImputer(strategy="mean"), bit for bit (tests/test_csv.py): its
        # import takes the reader about 1 s, longer than the whole read ahead of the run
        c.fill = float(np.nanmean(raw))


def _drop_constant(X: np.ndarray, enc: Encoding, train: np.ndarray, notes: list[str]) -> np.ndarray:
    """``X`` (rows, features) less the encoded columns constant in the ``train`` rows (every
    column when there are none), each recorded in its code's ``dropped`` and in ``notes``."""
    # every encoded column must vary in the training rows (its scale divides)
    if len(train):
        X_train = X[train]
        constant = X_train.max(axis=0) == X_train.min(axis=0)
        del X_train
    else:
        constant = np.ones(X.shape[1], bool)
    names = enc.feature_names
    for c in enc.columns:
        if not c.all_outputs:  # one level and no `other`: only the reference, no column
            level = c.levels[0] if c.levels else ""
            notes.append(
                f"column {c.name!r} has one value ({level!r}) in the training rows: dropped"
            )
        c.dropped = [o for o in c.all_outputs if constant[names.index(o)]]
        for o in c.dropped:
            value = X[train[0], names.index(o)] if len(train) else np.nan
            notes.append(f"column {o!r} is constant ({value:g}) in the training rows: dropped")
    if constant.any():
        X = X[:, ~constant]
    return X


def fit_encoding(df: pd.DataFrame, source: str, target: str, **options):
    """:func:`_fit_encoding`, each column parsed once (see :func:`_cells`)."""
    with _caching():
        return _fit_encoding(df, source, target, **options)


def target_values(df: pd.DataFrame, enc: Encoding, source: str) -> np.ndarray:
    decimal = enc.target_decimal or enc.decimal
    y = _numbers(df[enc.target], enc.target, source, decimal, target=True)
    if enc.log_target:
        _log(y, df[enc.target], source, "set data.log_target=false")  # checked, taken later
    return y


def _refuse_fewer_rows_than_coefficients(train: int, n: int, k: int, source: str) -> None:
    """A :class:`UserError` when the ``train`` training rows (of ``n``, after
    ``data.val_fraction`` and ``data.test_fraction`` hold theirs out) are fewer than the
    ``k + 1`` coefficients: least squares would fit them exactly (207 training rows for 231
    columns reported R^2 1.000 and -24 residual degrees of freedom), with advice that can be
    followed for these counts."""
    if train >= k + 1:
        return
    fewer = "drop columns with data.drop (or pool rare levels with a higher data.min_level_count)"
    if n >= k + 1 and train < n:
        advice = f"set data.val_fraction=0 data.test_fraction=0 to train on all {n}, or {fewer}"
    else:
        advice = f"{fewer}, or give more rows"
    held = f" of {n} (the rest are val/test rows)" if train < n else ""
    raise UserError(
        f"{source}: {train} training rows{held} for {k} features; least squares needs at least "
        f"features + 1 = {k + 1}: {advice}"
    )


def load_csv(cfg, seed: int = 0, train_rows: np.ndarray | None = None) -> Table:
    """``data=csv``: read ``cfg.path``, split the rows by ``seed`` as
    :func:`data.preprocess.split_rows` does, fit the encoding on the training rows, and encode
    every row. ``train_rows``: the training rows' indices instead (a cross-validation fold's,
    among the rows kept), whose encoding (levels, pooling, fills) is then fitted on them."""
    from data.preprocess import split_rows

    @functools.cache  # asked by the encoding's fit, then by the count of rows: drawn once
    def training(n: int) -> np.ndarray:
        if train_rows is not None:
            return train_rows
        return split_rows(n, cfg.val_fraction, cfg.test_fraction, seed)["train"]

    df, source = read_csv(cfg.path, sep=cfg.sep, decimal=cfg.decimal)
    enc, df, X = fit_encoding(
        df,
        source,
        cfg.target,
        features=list(cfg.features) if cfg.features else None,
        drop=list(cfg.drop),
        categorical=list(cfg.categorical),
        text_columns=cfg.text_columns,
        log_features=list(cfg.log_features),
        log_target=cfg.log_target,
        missing=cfg.missing,
        min_level_count=cfg.min_level_count,
        max_levels=cfg.max_levels,
        dates=cfg.dates,
        train_rows=training,
    )
    names = enc.feature_names  # none: the model is the mean-price baseline
    y = target_values(df, enc, source)
    _refuse_fewer_rows_than_coefficients(len(training(len(y))), len(y), len(names), source)
    return Table(
        X,
        y.astype(np.float32),
        names,
        enc.target,
        source,
        encoding=enc.to_dict(),
        description=enc.describe(),
        file_rows=df.index.to_numpy(np.int64) + 1,
    )
