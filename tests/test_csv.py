"""Any housing CSV: column kinds, missing values, transforms, and one-line errors for bad files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, concurrently, make_config, run_train
from hypothesis import given, settings
from hypothesis import strategies as st

from data.csv_source import load_csv
from errors import UserError
from training.run import train_and_evaluate


def csv_cfg(path, *extra):
    return make_config("data=csv", f"data.path={path}", "data.target=price", *extra).data


def houses(n=60, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    size = rng.uniform(50, 250, n).round(1)
    rooms = rng.integers(1, 6, n)
    pool = rng.choice(["Y", "N"], n)
    town = rng.choice(["north", "south", "east"], n)
    price = (
        1000 * size
        + 5000 * rooms
        + 20000 * (pool == "Y")
        + 15000 * (town == "south")
        - 8000 * (town == "east")
        + 30000
        + rng.normal(0, 2000, n)
    )
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "size": size,
            "rooms": rooms,
            "pool": pool,
            "town": town,
            "price": price.round(2),
        }
    )


def test_column_kinds_are_encoded(tmp_path):
    path = tmp_path / "h.csv"
    houses().to_csv(path, index=False)
    table = load_csv(csv_cfg(path, "data.drop=[id]"))
    assert table.feature_names == ["size", "rooms", "pool", "town_north", "town_south"]
    df = houses()
    np.testing.assert_array_equal(table.X[:, 2], (df.pool == "Y").astype(np.float32))
    np.testing.assert_array_equal(table.X[:, 3], (df.town == "north").astype(np.float32))
    np.testing.assert_array_equal(table.X[:, 4], (df.town == "south").astype(np.float32))
    kinds = {c["name"]: c["kind"] for c in table.encoding["columns"]}
    assert kinds == {"size": "numeric", "rooms": "numeric", "pool": "boolean", "town": "onehot"}


@pytest.mark.parametrize("pair", [("yes", "no"), ("TRUE", "false"), ("y", "N"), ("On", "off")])
def test_two_valued_words_are_booleans(tmp_path, pair):
    df = houses().assign(pool=lambda d: np.where(d.pool == "Y", pair[0], pair[1]))
    df.to_csv(tmp_path / "h.csv", index=False)
    table = load_csv(csv_cfg(tmp_path / "h.csv", "data.drop=[id]"))
    np.testing.assert_array_equal(table.X[:, 2], (houses().pool == "Y").astype(np.float32))


def test_text_columns_error_policy(tmp_path):
    houses().to_csv(tmp_path / "h.csv", index=False)
    with pytest.raises(UserError, match="column 'town' is text.*data.text_columns=onehot"):
        load_csv(csv_cfg(tmp_path / "h.csv", "data.drop=[id]", "data.text_columns=error"))


def with_gaps(tmp_path):
    df = houses()
    df.loc[[3, 7], "size"] = np.nan
    df.loc[5, "town"] = np.nan
    df.to_csv(tmp_path / "h.csv", index=False)
    return df


def test_missing_error_names_columns_and_counts(tmp_path):
    with_gaps(tmp_path)
    with pytest.raises(UserError) as err:
        load_csv(csv_cfg(tmp_path / "h.csv", "data.drop=[id]"))
    msg = str(err.value)
    assert "'size' (2 cells)" in msg and "'town' (1 cell)" in msg
    assert "data.missing=drop" in msg and "data.missing=mean" in msg


def test_missing_drop_drops_rows(tmp_path):
    with_gaps(tmp_path)
    table = load_csv(csv_cfg(tmp_path / "h.csv", "data.drop=[id]", "data.missing=drop"))
    assert len(table.y) == 57
    np.testing.assert_array_equal(table.y, houses().drop(index=[3, 5, 7]).price.astype(np.float32))


@pytest.mark.slow
def test_missing_mean_fills_with_the_training_rows_mean(tmp_path):
    df = with_gaps(tmp_path)
    metrics = train_and_evaluate(
        make_config(
            "experiment=housing",
            f"data.path={tmp_path / 'h.csv'}",
            "data.drop=[id]",
            "data.missing=mean",
            "data.test_fraction=0",
            "data.val_fraction=0.2",
            "logger.tensorboard=false",
        ),
        tmp_path / "run",
    )
    from data.preprocess import split_rows

    train = split_rows(60, 0.2, 0.0, 0)["train"]
    prep = json.loads((tmp_path / "run" / "preprocessing.json").read_text())
    # filling with the training rows' mean leaves that mean unchanged: the scaling saw it
    train_mean, all_mean = df["size"].iloc[train].mean(), df["size"].mean()
    assert prep["encoding"]["columns"][0]["fill"] == pytest.approx(train_mean, rel=1e-12)
    # the empty town cell is a level of its own (one row: pooled as `other`), never the mode
    town = prep["encoding"]["columns"][3]
    assert town["levels"] == ["east", "north", "south"] and town["pooled"] == ["(missing)"]
    assert prep["scaling"]["x_mean"][0] == pytest.approx(train_mean, rel=1e-6)
    assert abs(train_mean - all_mean) > 1e-3  # so the check above tells the two apart
    assert np.isfinite(metrics["val"]["r2"]) and np.isfinite(metrics["ols"]["size"])


def test_reading_a_csv_imports_no_scikit_learn_even_with_cells_to_fill(tmp_path):
    """scikit-learn's import takes about 1 s, longer than the whole read ahead of a run: no
    file imports it, a file with a missing number to fill under ``data.missing=mean``
    included. Each file read in a fresh process, whose modules are then listed."""
    rows = "".join(f"{i},{2 * i + 1}\n" for i in range(20))
    files = {"clean": "size,price\n" + rows, "gap": "size,price\n" + rows + ",50\n"}
    script = (
        "import sys; from conftest import make_config; from data.csv_source import load_csv; "
        "t = load_csv(make_config('data=csv', f'data.path={sys.argv[1]}', 'data.target=price', "
        "'data.missing=mean', 'data.val_fraction=0', 'data.test_fraction=0').data); "
        "print('sklearn' in sys.modules, t.X[-1, 0])"
    )
    for name, text in files.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        out = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            cwd=ROOT / "tests",
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert out == ["False", "19.0" if name == "clean" else "9.5"], (name, out)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 400),  # numpy sums 8 partial sums from 8 values, in pairs from 128
    st.floats(0, 0.9),
    st.sampled_from([1.0, 1e3, 1e6, 1e12]),
    st.integers(0, 2**32 - 1),
)
def test_a_columns_fill_is_scikit_learns_simple_imputer_mean_bit_for_bit(n, gaps, scale, seed):
    """The fill under ``data.missing=mean`` is scikit-learn's ``SimpleImputer(strategy="mean")``
    fitted on the training rows, to the last bit, whatever cells are missing and whichever rows
    train (the mean of the values present alone differs in the last bit for about 4 in 10
    such columns: numpy adds them in another grouping)."""
    from sklearn.impute import SimpleImputer

    from data.csv_source import fit_encoding

    rng = np.random.default_rng(seed)
    area = rng.normal(3 * scale, scale, n)
    area[rng.random(n) < gaps] = np.nan
    area[rng.integers(n)] = scale  # a value to take the mean of
    train = np.sort(rng.permutation(n)[: max(1, n // 2)])
    train = np.union1d(train, np.flatnonzero(~np.isnan(area))[:1])
    df = pd.DataFrame({"area": area, "price": np.arange(n, dtype=float)})
    enc, _, _ = fit_encoding(df, "f.csv", "price", missing="mean", train_rows=train)
    imputer = SimpleImputer(strategy="mean").fit(area[train].reshape(-1, 1))
    assert enc.columns[0].fill == float(imputer.statistics_[0])


@pytest.mark.slow
def test_log_transforms(tmp_path):
    df = houses()
    df.to_csv(tmp_path / "h.csv", index=False)
    metrics = train_and_evaluate(
        make_config(
            "experiment=housing",
            f"data.path={tmp_path / 'h.csv'}",
            "data.drop=[id]",
            "data.log_target=true",
            "data.log_features=[size]",
            "data.val_fraction=0",
            "data.test_fraction=0",
            "logger.tensorboard=false",
        ),
        tmp_path / "run",
    )
    assert "log(size)" in metrics["coefficients"]
    # the model is fitted in log(price); its least squares is numpy's on the same design
    X = np.column_stack(
        [
            np.log(df["size"]),
            df.rooms,
            df.pool == "Y",
            df.town == "north",
            df.town == "south",
            np.ones(len(df)),
        ]
    ).astype(float)
    beta = np.linalg.lstsq(X, np.log(df.price), rcond=None)[0]
    names = ["log(size)", "rooms", "pool", "town_north", "town_south", "intercept"]
    np.testing.assert_allclose([metrics["ols"][k] for k in names], beta, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        [metrics["coefficients"][k] for k in names], beta, rtol=1e-3, atol=1e-4
    )
    # metrics are in price units: exp of the log prediction
    assert metrics["train"]["rmse"] > 100


def test_log_of_a_non_positive_value_names_column_and_row(tmp_path):
    df = houses()
    df.loc[9, "size"] = -1
    df.to_csv(tmp_path / "h.csv", index=False)
    with pytest.raises(UserError, match=r"column 'size' row 10: -1 has no logarithm"):
        load_csv(csv_cfg(tmp_path / "h.csv", "data.log_features=[size]"))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=8, max_size=40))
def test_onehot_drops_the_first_level_and_sums_to_one(levels):
    df = pd.DataFrame({"kind": levels, "price": np.arange(len(levels), dtype=float)})
    from data.csv_source import fit_encoding

    enc, _, X = fit_encoding(df, "mem", "price", min_level_count=1)
    seen = sorted(set(levels))
    assert X.shape[1] == len(seen) - 1
    # with the first level's column put back, each row has exactly one 1, in its level's column
    full = np.column_stack([1 - X.sum(axis=1), X])
    np.testing.assert_array_equal(full.sum(axis=1), 1.0)
    np.testing.assert_array_equal(full.argmax(axis=1), [seen.index(lv) for lv in levels])
    # and pandas' own encoding, names included
    reference = pd.get_dummies(df["kind"], prefix="kind", drop_first=True, dtype=float)
    assert enc.feature_names == list(reference.columns)
    np.testing.assert_array_equal(X, reference.to_numpy())


BAD_FILES = {
    "missing file": (None, "no such file; give the path of a CSV file"),
    "a directory": ("dir", "a directory, not a file; give the path of a CSV file"),
    "empty file": (b"", "the file is empty"),
    "header only": (b"size,price\n", "has a header but no data rows"),
    "no target": (
        b"size,cost\n1,2\n3,4\n5,7\n",
        "no column 'price' for data.target; the columns are: size, cost",
    ),
    "duplicate column": (b"size,size,price\n1,2,3\n", "column name 'size' appears twice"),
    "free text": (
        b"address,size,price\n"
        + b"".join(f"{i} Main St,{i},{2 * i + 1}\n".encode() for i in range(30)),
        "column 'address' is free text (30 different values in 30 rows, such as '0 Main St')",
    ),
    "too few rows": (
        b"a,b,c,price\n1,2,3,4\n2,3,1,5\n",
        "2 training rows for 3 features; least squares needs at least features + 1 = 4: drop "
        "columns with data.drop (or pool rare levels with a higher data.min_level_count), or give "
        "more rows",
    ),
    "unknown delimiter": (
        b"size price\n1 2\n3 4\n",
        "found one column only, 'size price'; the file must be separated by ',' ';' '|' or "
        "tabs (set data.sep",
    ),
    "not utf-8": (b"size,price\n1,2\n3,caf\xe9\n", "line 3 is not UTF-8 text (byte 0xe9)"),
    "infinite value": (
        b"size,price\n1,2\ninf,4\n3,5\n4,7\n",
        "column 'size' row 2: the value is infinite",
    ),
    "not a number": (
        b"size,price\n" + b"".join(f"{i},{i}\n".encode() for i in range(20)) + b"12a,3\n",
        "column 'size' row 21: '12a' is not a number",
    ),
}


def test_fewer_training_rows_than_coefficients_is_refused_with_advice_that_works(tmp_path):
    # 207 training rows of 259 for 231 columns trained to R^2 1.000 with -24 residual degrees
    # of freedom: the rows were counted before the val/test rows were held out
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(10, 8)), columns=[f"x{i}" for i in range(8)])
    frame.assign(price=rng.normal(size=10)).to_csv(tmp_path / "h.csv", index=False)
    with pytest.raises(UserError) as err:
        load_csv(csv_cfg(tmp_path / "h.csv"))  # a val row and a test row held out
    assert str(err.value) == (
        f"{tmp_path / 'h.csv'}: 8 training rows of 10 (the rest are val/test rows) for 8 "
        "features; least squares needs at least features + 1 = 9: set data.val_fraction=0 "
        "data.test_fraction=0 to train on all 10, or drop columns with data.drop (or pool "
        "rare levels with a higher data.min_level_count)"
    )
    advice = str(err.value).split(": set ")[1].split(" to train")[0].split()
    table = load_csv(csv_cfg(tmp_path / "h.csv", *advice))
    assert table.X.shape == (10, 8)


@pytest.mark.parametrize("token", ["n/a", "na", "#N/A", "none", "--", ".", "missing", "NA", "?"])
def test_what_programs_write_for_a_missing_number_is_missing(tmp_path, token):
    # Excel's #N/A, SAS's '.', 'n/a' and 'none' were 'not a number', with no advice
    frame = houses()
    size = frame["size"].astype(object)
    size.iloc[[3, 7]] = token
    frame.assign(size=size).to_csv(tmp_path / "h.csv", index=False)
    everything = ("data.val_fraction=0", "data.test_fraction=0", "data.drop=[id]")
    table = load_csv(csv_cfg(tmp_path / "h.csv", "data.missing=mean", *everything))
    column = table.X[:, table.feature_names.index("size")]
    np.testing.assert_allclose(column[[3, 7]], frame["size"].drop(index=[3, 7]).mean(), rtol=1e-6)


@pytest.mark.parametrize(
    "cell, advice",
    [
        ("#VALUE!", "it is a spreadsheet's error value: fix the formula (or clear the cell)"),
        ("unknown", "fix the cell, leave it empty if the value is missing, or add the column to "),
    ],
)
def test_a_word_among_numbers_says_what_to_do(tmp_path, cell, advice):
    frame = houses()
    size = frame["size"].astype(object)
    size.iloc[3] = cell
    frame.assign(size=size).to_csv(tmp_path / "h.csv", index=False)
    with pytest.raises(UserError) as err:
        load_csv(csv_cfg(tmp_path / "h.csv"))
    assert f"column 'size' row 4: {cell!r} is not a number; {advice}" in str(err.value)


def test_a_column_both_kept_and_dropped_is_refused(tmp_path):
    # data.features=[size,town] data.drop=[town] trained on town: the drop was not done
    houses().to_csv(tmp_path / "h.csv", index=False)
    with pytest.raises(UserError) as err:
        load_csv(csv_cfg(tmp_path / "h.csv", "data.features=[size,town]", "data.drop=[town]"))
    assert str(err.value) == (
        f"{tmp_path / 'h.csv'}: column 'town' is in both data.features and data.drop; remove it "
        "from one of them"
    )


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        # size entered the model twice; the warning's advice, data.drop=[size], was refused
        (
            ["data.features=[size,size]"],
            "column 'size' is named twice in data.features; name it once",
        ),
        # each was silently ignored (helper-44)
        (
            ["data.drop=[price]"],
            "data.target 'price' is also in data.drop; remove it from data.drop",
        ),
        (
            ["data.categorical=[price]"],
            "data.target 'price' is also in data.categorical; remove it from data.categorical",
        ),
    ],
)
def test_what_cannot_be_meant_of_the_named_columns_is_refused(tmp_path, overrides, line):
    houses().to_csv(tmp_path / "h.csv", index=False)
    with pytest.raises(UserError) as err:
        load_csv(csv_cfg(tmp_path / "h.csv", *overrides))
    assert str(err.value) == f"{tmp_path / 'h.csv'}: {line}"


def test_a_column_of_missing_value_words_only_is_dropped_with_a_note(tmp_path):
    # an all-'N/A' column: data.missing=mean was advised, then 'has no value, add it to
    # data.drop'
    frame = houses().assign(pool_area="N/A")
    frame.to_csv(tmp_path / "h.csv", index=False)
    table = load_csv(csv_cfg(tmp_path / "h.csv", "data.drop=[id]"))
    assert "pool_area" not in table.feature_names
    assert "column 'pool_area' holds only missing values ('N/A'): dropped" in table.description


def test_a_row_repeating_the_header_is_named(tmp_path):
    # two exports pasted one after the other: 'sale_date is free text, add it to data.drop',
    # then "row 151: 'sqft' is not a number"
    text = houses().to_csv(index=False)
    lines = text.splitlines()
    (tmp_path / "h.csv").write_text("\n".join([*lines[:31], lines[0], *lines[31:]]) + "\n")
    with pytest.raises(UserError) as err:
        load_csv(csv_cfg(tmp_path / "h.csv", "data.drop=[id]"))
    assert str(err.value) == (
        f"{tmp_path / 'h.csv'}: row 31 repeats the header (line 32); delete that line"
    )
    # below Excel's sep= line, the line is one further down
    (tmp_path / "h.csv").write_text("sep=,\n" + (tmp_path / "h.csv").read_text())
    with pytest.raises(UserError, match=r"row 31 repeats the header \(line 33\)"):
        load_csv(csv_cfg(tmp_path / "h.csv", "data.drop=[id]"))


@pytest.mark.parametrize("sep", [";", ",", "\t"])
def test_excels_separator_line_names_the_separator(tmp_path, sep):
    # Excel's 'sep=;' first line: "found one column only", and data.sep did not help
    frame = houses().drop(columns="id")
    text = frame.to_csv(index=False, sep=sep, lineterminator="\r\n")
    (tmp_path / "h.csv").write_text(f"\ufeffsep={sep}\r\n{text}", encoding="utf-8")
    table = load_csv(csv_cfg(tmp_path / "h.csv", "data.val_fraction=0", "data.test_fraction=0"))
    np.testing.assert_allclose(table.y, frame["price"], rtol=1e-6)
    assert table.feature_names[:2] == ["size", "rooms"]


def test_yes_no_with_missing_words_stays_yes_no_and_case_twins_are_said(tmp_path):
    # 'N/A' among yes/no made five one-hot columns of its spellings (reference 'N/A'); 'West'
    # and 'west' were two levels without a word; new rows writing 1 for yes were refused
    from data.csv_source import fit_encoding, read_csv

    frame = houses().drop(columns="id")
    garage = np.where(frame["pool"] == "Y", "yes", "No").astype(object)
    garage[[2, 9]] = "N/A"
    garage[[4]] = "YES"
    town = frame["town"].to_numpy(dtype=object)
    town[[0, 5, 6, 7, 8, 10]] = "North"
    frame.assign(garage=garage, town=town).to_csv(tmp_path / "h.csv", index=False)
    df, source = read_csv(tmp_path / "h.csv")
    with pytest.raises(UserError, match=r"missing values in column 'garage' \(2 cells\)"):
        fit_encoding(df, source, "price")
    train = np.arange(len(df))
    enc, _, X = fit_encoding(df, source, "price", missing="mean", train_rows=train)
    [garage_code] = [c for c in enc.columns if c.name == "garage"]
    assert garage_code.kind == "boolean"
    column = X[:, enc.feature_names.index("garage")]
    known = np.delete(np.arange(len(df)), [2, 9])
    expected = np.isin(np.char.lower(garage[known].astype(str)), ["yes"])
    np.testing.assert_array_equal(column[known], expected)
    np.testing.assert_allclose(column[[2, 9]], expected.mean(), rtol=1e-6)
    assert (
        "column 'town': levels 'North' and 'north' differ only in case and are 2 levels; write "
        "them alike in the file to make them one"
    ) in enc.notes
    new = pd.DataFrame(
        {
            **{k: [frame[k][0]] for k in ("size", "rooms", "pool")},
            "town": ["north"],
            "garage": ["1"],
        }
    )
    new.to_csv(tmp_path / "new.csv", index=False)
    df, source = read_csv(tmp_path / "new.csv")
    assert enc.transform(df, source)[0, enc.feature_names.index("garage")] == 1.0


@pytest.mark.parametrize(
    "written", ["(1,250.5)", "\u22121250.5", "-1,250.5", "($1,250.50)", "1,250.5-"]
)  # and SAP's trailing minus (helper-44: "free text")
def test_negative_amounts_as_accountants_and_typesetters_write_them(written):
    # '(252,024)' and '\u2212252024' (the typographic minus) were 'not a number'
    from data.csv_source import _parse_numbers

    values, empty = _parse_numbers(pd.Series([written, "7"], dtype=object), ".")
    np.testing.assert_array_equal(values, [-1250.5, 7.0])
    assert not empty.any()


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("'1200", 1200.0),  # Excel's text prefix
        ("₹2,37,42,400", 23742400.0),  # India's lakh and crore
        ("2,37,400.5", 237400.5),
        ("1'250'000.25", 1250000.25),  # Swiss
        ("USD 242,329", 242329.0),  # currency codes, before or after
        ("CHF 242'329", 242329.0),
        ("242,329.50 EUR", 242329.5),
    ],
)
def test_numbers_as_other_programs_and_countries_write_them(written, value):
    # each made its column 'free text, add it to data.drop' (helper-44)
    from data.csv_source import _parse_numbers

    values, _ = _parse_numbers(pd.Series([written, "7"], dtype=object), ".")
    np.testing.assert_array_equal(values, [value, 7.0])


@pytest.mark.parametrize(
    "cells", [["12,5,0", "7"], ["1,2345", "7"], ["5'10", "7"], ["'abc", "7"], ["USDA 12", "7"]]
)
def test_what_is_no_number_stays_none(cells):
    from data.csv_source import _parse_numbers

    values, _ = _parse_numbers(pd.Series(cells, dtype=object), ".")
    assert np.isnan(values[0]) and values[1] == 7.0


def test_numbers_with_units_in_the_cell_are_named_so(tmp_path):
    # '1938 sqft' beside '292.6 m2' was 'free text ... add it to data.drop', a real predictor
    path = tmp_path / "f.csv"
    rows = "".join(f"{1000 + 7 * i} sqft,{200000 + 900 * i}\n" for i in range(40))
    path.write_text("area,price\n" + rows)
    with pytest.raises(UserError) as err:
        load_csv(csv_cfg(path))
    assert str(err.value) == (
        f"{path}: column 'area' is numbers written with more than a number in the cell "
        "('1000 sqft', 40 different values in 40 rows); write each as the number alone, all in "
        "one unit, or add the column to data.drop"
    )


def test_a_level_seen_only_in_the_val_rows_is_a_note_not_note_warning(tmp_path):
    # 'note: warning: column ...': the val/test rows' warning was printed among the notes
    from data.preprocess import split_rows

    frame = houses()
    val = split_rows(len(frame), 0.2, 0.2, 0)["val"]
    town = frame["town"].to_numpy(dtype=object)
    town[val[:2]] = "harbour"
    frame.assign(town=town).to_csv(tmp_path / "h.csv", index=False)
    cfg = csv_cfg(
        tmp_path / "h.csv", "data.drop=[id]", "data.val_fraction=0.2", "data.test_fraction=0.2"
    )
    lines = load_csv(cfg, 0).description.split("\nnote: ")[1:]
    [line] = [ln for ln in lines if "not seen" in ln]
    assert line.startswith("column 'town': 2 cell(s) in the val/test rows with a level not seen")


def test_too_many_levels_for_the_rows_are_pooled_as_the_advice_says(tmp_path):
    # the advice named data.max_levels, which refuses a column with more levels, not pools them
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"size": rng.uniform(50, 150, 16)})
    for k, name in enumerate(("hood", "street", "builder")):  # 8 levels each, twice each
        frame[name] = [f"{name}{(i * (2 * k + 1)) % 8}" for i in range(16)]
    frame.assign(price=rng.uniform(1e5, 2e5, 16)).to_csv(tmp_path / "h.csv", index=False)
    everything = ("data.val_fraction=0", "data.test_fraction=0")
    with pytest.raises(UserError, match="pool rare levels with a higher data.min_level_count"):
        load_csv(csv_cfg(tmp_path / "h.csv", "data.min_level_count=1", *everything))
    table = load_csv(csv_cfg(tmp_path / "h.csv", "data.min_level_count=3", *everything))
    assert table.feature_names == ["size"]  # every level seen twice: pooled, then constant


def train_on_bad_file(tmp_path: Path, case: str) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """``train.py`` on the bad file of ``case``, into a directory holding an earlier run:
    the file, the run directory and the finished process."""
    content, _ = BAD_FILES[case]
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "bad.csv"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    # an earlier run in the same directory must survive a failed one
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "metrics.json").write_text('{"earlier": true}')
    (run_dir / ".hydra" / "config.yaml").write_text("earlier: true\n")
    proc = run_train(
        "experiment=housing", f"data.path={path}", "data.target=price", f"hydra.run.dir={run_dir}"
    )
    return path, run_dir, proc


@pytest.fixture(scope="module")
def bad_file_runs(tmp_path_factory) -> dict:
    """Every bad file's run, a few at once: each ends in its second or two of imports, which on
    two cores overlap."""
    base = tmp_path_factory.mktemp("bad_files")
    cases = sorted(BAD_FILES)
    runs = concurrently(
        *(lambda i=i, c=c: train_on_bad_file(base / str(i), c) for i, c in enumerate(cases)),
        workers=4,
    )
    return dict(zip(cases, runs, strict=True))


@pytest.mark.slow
def test_a_file_refused_while_the_run_builds_is_one_line(tmp_path):
    """Into a new directory the file is first read while the run builds, after it started
    importing orbax in the background: the error is still the one line (the exit used to
    print the import thread's traceback, "can't register atexit after shutdown")."""
    path = tmp_path / "gaps.csv"
    path.write_text("area,price\n1,2\n,4\n3,5\n4,7\n5,9\n6,1\n")
    proc = run_train(
        "data=csv", f"data.path={path}", "data.target=price", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: {path}: missing values in column 'area' (1 cell); set data.missing=drop to "
        "drop those rows or data.missing=mean to fill them with the training rows' mean (an "
        "empty text cell becomes a level of its own)"
    ], proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_one_line_naming_the_problem(bad_file_runs, case):
    _, needle = BAD_FILES[case]
    path, run_dir, proc = bad_file_runs[case]
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert needle in lines[0] and str(path) in lines[0], lines[0]
    assert (run_dir / "metrics.json").read_text() == '{"earlier": true}'
    assert (run_dir / ".hydra" / "config.yaml").read_text() == "earlier: true\n"
    assert sorted(p.name for p in run_dir.iterdir()) == [".hydra", "metrics.json"]


# --- numbers whose thousands separator is the file's decimal mark (a newcomer's report) ---


def read_semicolon_file(tmp_path, text, **kw):
    """``(features, target, encoding)`` of a ``;`` file with target ``price``."""
    from data.csv_source import fit_encoding, read_csv, target_values

    (tmp_path / "f.csv").write_text(text)
    df, source = read_csv(tmp_path / "f.csv", **kw)
    enc, rows, X = fit_encoding(df, source, "price")
    return X, target_values(rows, enc, source), enc


PRICES_WITH_MILLIONS = (
    "lot_acres;floors;price\n1,28;1;$554,549\n2,5;1;$1,690,557\n0,75;1;$320,000\n3,1;1;$900,100\n"
)


@pytest.mark.parametrize("decimal", [None, ","])
def test_a_mark_twice_in_a_number_is_the_columns_thousands_separator(tmp_path, decimal):
    X, y, enc = read_semicolon_file(tmp_path, PRICES_WITH_MILLIONS, decimal=decimal)
    np.testing.assert_array_equal(y, [554549.0, 1690557.0, 320000.0, 900100.0])
    np.testing.assert_allclose(X[:, 0], [1.28, 2.5, 0.75, 3.1], rtol=1e-7)
    assert enc.feature_names == ["lot_acres"]  # floors: constant
    [note] = [n for n in enc.notes if "'price'" in n]
    assert "',' read as the thousands separator" in note
    assert "('$1,690,557' has it twice in one number)" in note


def test_money_has_no_three_decimal_amounts(tmp_path):
    text = "lot_acres;price;tax\n1,28;$554,549;1,5\n2,5;$320,000;2,25\n0,75;$412,000;3\n"
    X, y, enc = read_semicolon_file(tmp_path, text)
    np.testing.assert_array_equal(y, [554549.0, 320000.0, 412000.0])
    np.testing.assert_allclose(X, [[1.28, 1.5], [2.5, 2.25], [0.75, 3.0]], rtol=1e-7)
    assert any("'price'" in n and "currency sign" in n for n in enc.notes)


def test_a_number_column_in_another_convention_gets_decimal_advice(tmp_path):
    with pytest.raises(UserError) as err:
        read_semicolon_file(tmp_path, PRICES_WITH_MILLIONS, decimal=".")
    msg = str(err.value)
    assert "column 'lot_acres' row 1: '1,28' is not a number" in msg
    assert "max_levels" not in msg
    # the advice, pasted into bash as written, sets the mark; followed, it is the first test's
    # reading (decimal=",")
    shown = re.search(r"; set (.*) \(as written", msg).group(1)
    word = subprocess.run(
        ["bash", "-c", f"printf '%s' {shown}"], capture_output=True, text=True, check=True
    ).stdout
    assert make_config("data=csv", word, "data.target=price").data.decimal == ","


@pytest.mark.parametrize("decimal", [".", ","])
def test_cells_no_decimal_mark_reads_are_not_given_decimal_advice(tmp_path, decimal):
    # '06.01.18' advised data.decimal=',', which advised data.decimal=. (helper-44)
    path = tmp_path / "h.csv"
    rows = "".join(f"{900 + i};1.2.{i};{200 + i}\n" for i in range(30))
    path.write_text("sqft;code;price\n" + rows)
    with pytest.raises(UserError) as err:
        load_csv(csv_cfg(path, f"data.decimal={decimal!r}"))
    assert str(err.value) == (
        f"{path}: column 'code' row 1: '1.2.0' is not a number; it is no number with either "
        "decimal mark: fix the cell (or add it to data.categorical if its values are codes)"
    )


def test_an_ambiguous_column_is_read_as_the_file_says_with_a_note(tmp_path):
    X, y, enc = read_semicolon_file(tmp_path, "x;price\n1;554,549\n2;320,123\n3;900,111\n")
    np.testing.assert_allclose(y, [554.549, 320.123, 900.111], rtol=1e-12)
    [note] = [n for n in enc.notes if "'price'" in n]
    assert "write the numbers without it (554549) or with a currency sign" in note
    # both ways the note offers read the column as thousands
    for cells in ("554549;320123;900111", "$554,549;$320,123;$900,111"):
        rows = "".join(f"{i};{c}\n" for i, c in enumerate(cells.split(";"), 1))
        _, y, enc = read_semicolon_file(tmp_path, "x;price\n" + rows)
        np.testing.assert_array_equal(y, [554549.0, 320123.0, 900111.0])
    # a column with a fraction of another length is no ambiguity
    _, y, enc = read_semicolon_file(tmp_path, "x;price\n1;554,5\n2;320,123\n3;900,111\n")
    assert not [n for n in enc.notes if "'price'" in n]


def noted_then_followed(tmp_path, text, column, read, note, thousands) -> None:
    """The ';' file ``text``'s first column reads ``read`` with the ambiguity ``note``, and, the
    note's last advice followed (``data.decimal=.``), ``thousands``."""
    X, _, enc = read_semicolon_file(tmp_path, text)
    np.testing.assert_allclose(X[:, 0], read, rtol=1e-6)  # float32
    assert [n for n in enc.notes if f"{column!r}" in n] == [note]
    X, _, _ = read_semicolon_file(tmp_path, text, decimal=".")
    np.testing.assert_array_equal(X[:, 0], thousands)


def test_round_thousands_in_a_semicolon_file_get_the_note_too(tmp_path):
    # lot sizes of the Windsor file written with a thousands comma: '5,850' and '4,000' read as
    # 5.85 and 4.0, values whose last written digit is 0, had no note (found by a newcomer:
    # the fit's coefficient, and every prediction on a ',' file, 1000 times off)
    text = "lot size;price\n5,850;42000\n4,000;38500\n3,060;49500\n6,650;60500\n"
    note = (
        "column 'lot size': every value is written like '5,850', read with ',' as the decimal "
        "mark; if ',' separates thousands there, write the numbers without it (5850) or with a "
        "currency sign, or, if it does in every column, set data.decimal=."
    )
    read = [5.85, 4.0, 3.06, 6.65]
    noted_then_followed(tmp_path, text, "lot size", read, note, [5850, 4000, 3060, 6650])
    # written with two decimals, or one, the same values are no ambiguity
    text = "lot size;price\n5,85;42000\n4,0;38500\n3,06;49500\n6,65;60500\n"
    _, _, enc = read_semicolon_file(tmp_path, text)
    assert not [n for n in enc.notes if "'lot size'" in n]


SQUARE_FEET = [903, 3231, 2825, 2092, 1500, 12400]
PRICES = [252024, 595583, 534158, 457832, 301250, 1250000]


def grouped(v: int, mark: str) -> str:
    """``v`` written with ``mark`` between its groups of three digits (as Excel writes it)."""
    return f"{v:,}".replace(",", mark)


@pytest.mark.parametrize("sep, mark", [("\t", ","), (";", ".")])
def test_thousands_grouped_integers_are_read_as_the_files_convention_writes_them(
    tmp_path, sep, mark
):
    # a newcomer's US tab export: square feet written 903 and 3,231, every other cell an
    # integer; the ',' in 3,231 counted as the file's decimal mark and the fit went on
    # 3.231 square feet, with no note (R^2 0.30 against scikit-learn's 0.97). The same
    # cells in a ';' file with '.' between thousands, as a European export writes them.
    rows = [
        f"{grouped(a, mark)}{sep}{i % 3 + 1}{sep}{p}"
        for i, (a, p) in enumerate(zip(SQUARE_FEET, PRICES, strict=True))
    ]
    (tmp_path / "f.csv").write_text(f"sqft{sep}bedrooms{sep}price\n" + "\n".join(rows) + "\n")
    from data.csv_source import fit_encoding, read_csv

    df, source = read_csv(tmp_path / "f.csv")
    assert df.attrs["decimal"] == ("." if mark == "," else ",")
    enc, _, X = fit_encoding(df, source, "price")
    np.testing.assert_array_equal(X[:, enc.feature_names.index("sqft")], SQUARE_FEET)
    assert enc.notes == [
        "column 'sqft' is numbers written as text (thousands separators, currency or percent "
        "signs, spaces, full-width digits, NA words): read as numbers"
    ]


def test_a_column_of_integers_some_grouped_with_the_files_mark_gets_the_note(tmp_path):
    # ',' between thousands in a ';' file (whose ',' is its decimal mark) reads 3,231 as
    # 3.231; a column whose only fractions look like thousands groups beside whole numbers
    # says so, and its advice, followed, reads the integers
    rows = [f"{grouped(a, ',')};{p}" for a, p in zip(SQUARE_FEET, PRICES, strict=True)]
    text = "sqft;price\n" + "\n".join(rows) + "\n"
    note = (
        "column 'sqft': every value with ',' is written like '3,231', read with ',' as the "
        "decimal mark; if ',' separates thousands there, write the numbers without it (3231) "
        "or with a currency sign, or, if it does in every column, set data.decimal=."
    )
    read = [903, 3.231, 2.825, 2.092, 1.5, 12.4]
    noted_then_followed(tmp_path, text, "sqft", read, note, SQUARE_FEET)
    # a fraction of another length, or a leading zero, is no thousands group: no note
    for cell in ("3,23", "0,231"):
        _, _, enc = read_semicolon_file(tmp_path, text.replace("3,231", cell))
        assert not [n for n in enc.notes if "'sqft'" in n]


def test_the_columns_mark_is_saved_for_new_rows(tmp_path):
    text = "size;x;price\n$1,690,557;1,5;1\n$554,549;2,5;2\n$3.5;3,25;3\n"
    _, _, enc = read_semicolon_file(tmp_path, text)
    from data.csv_source import Encoding, read_csv

    again = Encoding.from_dict(json.loads(json.dumps(enc.to_dict())))
    (tmp_path / "new.csv").write_text("size;x\n$554,549;1,5\n3.5;2\n")
    df, source = read_csv(tmp_path / "new.csv")
    np.testing.assert_allclose(again.transform(df, source), [[554549.0, 1.5], [3.5, 2.0]])


def test_text_in_either_unicode_form_is_the_same_level(tmp_path):
    # a newcomer trained on 'Zürich' as most editors write it (one code point for ü) and
    # predicted on a file saved on macOS (u and a combining diaeresis): the house was priced
    # as 'other', under a warning naming an unseen 'Zürich'
    import unicodedata

    from data.csv_source import fit_encoding, read_csv

    def written(form: str, text: str) -> str:
        return unicodedata.normalize(form, text)

    rows = "\n".join(f"{c},{p}" for c, p in [("Zürich", 3), ("Genève", 2), ("Bern", 1)] * 5)
    (tmp_path / "train.csv").write_text(written("NFC", f"Région,price\n{rows}\n"))
    enc, _, X = fit_encoding(*read_csv(tmp_path / "train.csv"), "price")
    assert enc.feature_names == ["Région_Genève", "Région_Zürich"]
    (tmp_path / "new.csv").write_text(written("NFD", "Région,id\nZürich,1\nGenève,2\n"))
    assert "u\u0308" in (tmp_path / "new.csv").read_text()
    df, source = read_csv(tmp_path / "new.csv")
    np.testing.assert_array_equal(enc.transform(df, source), [[0.0, 1.0], [1.0, 0.0]])
    assert not enc.warnings


def test_new_rows_need_only_the_columns_the_model_uses(tmp_path):
    """A column constant in the training rows (numbers, or text with one level) has no input."""
    import predict
    from data.csv_source import fit_encoding, read_csv
    from data.preprocess import Scaling

    pd.DataFrame(
        {
            "sqft": [1400, 1600, 1700, 1875],
            "floors": [1, 1, 1, 1],
            "city": ["Seattle"] * 4,
            "price": [245000, 312000, 279000, 308000],
        }
    ).to_csv(tmp_path / "train.csv", index=False)
    df, source = read_csv(tmp_path / "train.csv")
    enc, _, _ = fit_encoding(df, source, "price")
    assert enc.feature_names == ["sqft"]
    prep = {
        "encoding": enc.to_dict(),
        "feature_names": enc.feature_names,
        "target": "price",
        "scaling": vars(Scaling([1000.0], [100.0], 0.0, 1.0)),
    }
    assert predict.needed_columns(prep) == ["sqft"]
    (tmp_path / "new.csv").write_text("sqft\n1500\n2100\n")
    X, _ = predict.features(prep, tmp_path / "new.csv", tmp_path)
    np.testing.assert_array_equal(X[:, 0], [5.0, 11.0])  # (sqft - 1000) / 100


def test_codes_that_look_like_numbers_can_be_declared_categories(tmp_path):
    """The advice's other way out: ``data.categorical`` one-hot encodes them."""
    from data.csv_source import fit_encoding, read_csv

    (tmp_path / "v.csv").write_text("version,price\n1.2.3,1\n1.2.4,2\n1.2.3,3\n1.2.4,4\n")
    df, source = read_csv(tmp_path / "v.csv")
    with pytest.raises(UserError, match="'1.2.3' is not a number.*data.categorical"):
        fit_encoding(df, source, "price")
    enc, _, X = fit_encoding(df, source, "price", categorical=["version"], min_level_count=1)
    assert enc.feature_names == ["version_1.2.4"]
    np.testing.assert_array_equal(X[:, 0], [0, 1, 0, 1])


def test_a_table_read_ahead_is_taken_once_by_the_same_settings(tmp_path, monkeypatch):
    """train.py reads a CSV once before Hydra starts (to name a bad file first) and keeps the
    table: the run's read with the same settings, seed and unchanged file takes it, once; any
    other read goes to the file."""
    import os

    import data.csv_source
    from data.sources import load_table

    path = tmp_path / "h.csv"
    pd.DataFrame({"sqft": np.arange(20.0) * 10, "price": np.arange(20.0) ** 2}).to_csv(
        path, index=False
    )
    reads = []
    real = data.csv_source.load_csv
    monkeypatch.setattr(data.csv_source, "load_csv", lambda *a: reads.append(a) or real(*a))
    d = make_config("data=csv", f"data.path={path}", "data.target=price").data
    ahead = load_table(d, seed=3, keep=True)
    ahead.X[:] = -1  # what the first reader does to its own table stays its own
    taken = load_table(d, seed=3)
    assert len(reads) == 1 and taken.feature_names == ["sqft"]
    np.testing.assert_array_equal(taken.X[:, 0], np.arange(20.0, dtype=np.float32) * 10)
    load_table(d, seed=3)  # taken once: read again
    load_table(d, seed=3, keep=True)
    load_table(d, seed=4)  # another seed: another split, another encoding
    assert len(reads) == 4
    os.utime(path, ns=(0, 0))  # the file changed since it was kept
    load_table(d, seed=3)
    assert len(reads) == 5


def test_the_encoding_is_described_in_words_where_the_file_is_read(tmp_path):
    """The line a run prints of its encoding comes with the table (a run given the table by the
    second process imports no pandas to describe it): each column's rule, the reference level,
    then the fit's notes; a file of the target alone says the model predicts the mean."""
    path = tmp_path / "h.csv"
    rows = [f"{1000 + 37 * i},{'AB'[i % 2]},{'yes' if i % 3 else 'no'},{i * i}" for i in range(30)]
    path.write_text("sqft,city,garage,price\n" + "\n".join(rows) + "\n")
    d = make_config("data=csv", f"data.path={path}", "data.target=price").data
    assert load_csv(d).description == (
        "sqft: numeric; city: one-hot ['city_B'] (reference 'A'); garage: yes/no as 1/0; "
        "target price: numeric"
    )
    gaps = tmp_path / "gaps.csv"
    gaps.write_text("sqft,price\n" + "".join(f"{'' if i == 3 else i},{i + 1}\n" for i in range(9)))
    d = make_config(
        "data=csv",
        f"data.path={gaps}",
        "data.target=price",
        "data.log_target=true",
        "data.missing=mean",
        "data.val_fraction=0",
        "data.test_fraction=0",
    ).data
    mean = np.mean([i for i in range(9) if i != 3])  # 4.16667
    assert load_csv(d).description == (
        f"sqft: numeric, missing cells filled with {mean:.6g} (training mean); target price: log"
    )
    ids = tmp_path / "ids.csv"
    ids.write_text("id,price\n" + "".join(f"{i},{3 * i + 1}\n" for i in range(10)))
    d = make_config("data=csv", f"data.path={ids}", "data.target=price", "data.drop=[id]").data
    assert load_csv(d).description == (
        "no feature columns, the model predicts the mean target; target price: numeric"
    )


def test_a_csv_read_ahead_in_a_second_process_is_the_table_read_here(tmp_path, monkeypatch):
    """train.py starts reading the CSV in a second process while it imports JAX: the table it
    gets back equals the one read here, the file's UserError comes back as the same one line,
    and a second process that gives nothing leaves the reading to this one."""
    import sys

    import data.sources
    from data import read_ahead as ra
    from data.read_ahead import read_ahead
    from data.sources import load_table

    path = tmp_path / "h.csv"
    path.write_text(
        "sqft,city,price\n" + "".join(f"{1000 + 37 * i},{'AB'[i % 2]},{i * i}\n" for i in range(30))
    )
    d = make_config("data=csv", f"data.path={path}", "data.target=price").data
    bad = tmp_path / "bad.csv"
    bad.write_text("sqft,price\n1,2\n3,oops\n5,6\n")
    wrong = make_config("data=csv", f"data.path={bad}", "data.target=price").data
    failing = ra.start(wrong, 0)  # both second processes at once
    read_ahead(d, seed=2)
    assert len(ra._PENDING) == 1
    ahead = load_table(d, seed=2)
    here = load_csv(d, 2)
    assert not ra._PENDING
    np.testing.assert_array_equal(ahead.X, here.X)
    np.testing.assert_array_equal(ahead.y, here.y)
    assert (ahead.feature_names, ahead.encoding, ahead.description) == (
        here.feature_names,
        here.encoding,
        here.description,
    )
    with pytest.raises(UserError) as from_there:
        failing.result()
    with pytest.raises(UserError) as from_here:
        load_csv(wrong, 0)
    assert str(from_there.value) == str(from_here.value)
    monkeypatch.setattr(sys, "executable", "false")  # a second process that gives nothing
    read_ahead(d, seed=2)
    reads = []
    real = data.sources.SOURCES["csv"]
    monkeypatch.setitem(data.sources.SOURCES, "csv", lambda *a: reads.append(a) or real(*a))
    np.testing.assert_array_equal(load_table(d, seed=2).X, here.X)
    assert len(reads) == 1


def test_a_reader_started_before_the_config_reads_the_file_it_is_then_given(tmp_path):
    """train.py starts the CSV's second process before Hydra composes the config when the
    command line may be a CSV run; the read it is then asked for is the table read here, and a
    config that is no CSV run stops it."""
    from data import read_ahead as ra
    from data.sources import load_table

    path = tmp_path / "h.csv"
    path.write_text(
        "sqft,city,price\n" + "".join(f"{900 + 7 * i},{'AB'[i % 3 % 2]},{i}\n" for i in range(25))
    )
    d = make_config("data=csv", f"data.path={path}", "data.target=price").data
    for argv in ([], ["-m", "data=csv"], ["optimizer=adam"]):  # no CSV, or a sweep: none
        ra.prepare(argv)
        assert not ra._READY
    ra.prepare(["data=csv", f"data.path={path}"])
    (proc,) = ra._READY
    ra.read_ahead(d, seed=1)
    assert not ra._READY and ra._PENDING[ra.csv_key(d, 1)].proc is proc
    ahead, here = load_table(d, seed=1), load_csv(d, 1)
    np.testing.assert_array_equal(ahead.X, here.X)
    assert (ahead.feature_names, ahead.encoding) == (here.feature_names, here.encoding)
    ra.prepare(["experiment=seed"])  # an experiment's data may be a CSV; this one's is not
    (proc,) = ra._READY
    ra.read_ahead(make_config().data, seed=0)
    assert proc.poll() is not None and not ra._READY and not ra._PENDING


def test_a_compressed_file_or_a_workbook_is_named_as_one(tmp_path):
    import gzip
    import zipfile

    from data.csv_source import read_csv

    text = "area,price\n1,2\n2,4\n3,6\n"
    gz = tmp_path / "houses.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    with pytest.raises(UserError) as err:
        read_csv(gz)
    assert str(err.value) == (
        f"{gz}: a gzip-compressed file, not a CSV text file; decompress it (gunzip -k {gz}) "
        "and give the file that makes"
    )
    subprocess.run(["gunzip", "-k", str(gz)], check=True)  # the advice, followed
    assert read_csv(tmp_path / "houses.csv")[0].shape == (3, 2)
    workbook = tmp_path / "houses.xlsx"
    with zipfile.ZipFile(workbook, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(UserError, match=r"a zip archive \(an Excel \.xlsx .*save the sheet as CSV"):
        read_csv(workbook)


def test_a_new_row_s_date_in_another_format_is_shown_how_to_write_it(tmp_path):
    from data.csv_source import fit_encoding, read_csv

    (tmp_path / "f.csv").write_text(
        "sold,area,price\n2024-01-02,1,1\n2024-02-03,2,5\n2024-03-04,4,3\n2024-05-06,3,2\n"
    )
    enc, _, _ = fit_encoding(*read_csv(tmp_path / "f.csv"), "price")
    (tmp_path / "new.csv").write_text("sold,area\n4/8/2024,1\n")
    with pytest.raises(UserError) as err:
        enc.transform(*read_csv(tmp_path / "new.csv"), missing="predict")
    # "like the others" of a one-row file of new rows (helper-49)
    assert str(err.value) == (
        f"{tmp_path / 'new.csv'}: column 'sold' row 1: '4/8/2024' is not a date like the run's "
        "training file's dates (%Y-%m-%d, as in '2024-04-08' for 8 April 2024); write it that way"
    )
    # the right shape, a day its month lacks: "write it that way" of a date written that way
    (tmp_path / "new.csv").write_text("sold,area\n2024-09-31,1\n")
    with pytest.raises(UserError) as err:
        enc.transform(*read_csv(tmp_path / "new.csv"), missing="predict")
    assert str(err.value).endswith(
        "'2024-09-31' is no date: its month has no such day (%Y-%m-%d, as in '2024-04-08' for 8 "
        "April 2024); correct it"
    )
    (tmp_path / "g.csv").write_text('sold,price\n"Sept. 30, 2014",1\n"Sept. 31, 2014",2\n')
    with pytest.raises(UserError, match=r"'Sept. 31, 2014' is no date: its month has no such"):
        fit_encoding(*read_csv(tmp_path / "g.csv"), "price")


def test_a_mean_run_fills_every_column_and_an_older_run_is_read_as_it_was():
    # new rows' empty cells are filled as the run's val/test rows were, also in a column with no
    # empty cell in the training file: its fill is scikit-learn's mean of the training rows
    from sklearn.impute import SimpleImputer

    from data.csv_source import Encoding, fit_encoding

    df = pd.DataFrame({"area": [50.5, 61.25, 70.0, 88.125, 93.5], "price": [1.0, 2, 3, 4, 5]})
    enc, _, _ = fit_encoding(df, "f.csv", "price", missing="mean", train_rows=np.arange(4))
    area = df["area"].to_numpy()[:4].reshape(-1, 1)
    assert enc.columns[0].fill == float(SimpleImputer(strategy="mean").fit(area).statistics_[0])
    assert Encoding.from_dict(enc.to_dict()).missing == "mean"
    # preprocessing.json written before the policy was saved: read from what the run learned
    saved = enc.to_dict()
    del saved["missing"]
    assert Encoding.from_dict(saved).missing == "mean"
    saved["columns"][0]["fill"] = None
    assert Encoding.from_dict(saved).missing == "error"


def test_a_filled_yes_no_column_says_its_fill():
    # the encoding line said 'aircon: yes/no as 1/0' of a column filled with 0.3286
    from data.csv_source import fit_encoding

    df = pd.DataFrame({"aircon": ["yes", "no", "", "no", "yes", "no"], "price": range(6)})
    enc, _, _ = fit_encoding(df, "f.csv", "price", missing="mean")
    assert "aircon: yes/no as 1/0, missing cells filled with 0.4 (training mean)" in (
        enc.describe()
    )


def test_two_inputs_of_one_name_are_refused_and_the_advice_works():
    # helper-51: a column Zone_B beside Zone's level B (and lot's level type_x beside lot_type's
    # x) made two inputs of one name: one coefficient vanished from every table, silently
    from data.csv_source import fit_encoding

    rng = np.random.default_rng(0)
    zone = rng.choice(["A", "B", "C"], 60)
    df = pd.DataFrame(
        {
            "sqft": rng.integers(800, 3000, 60).astype(float),
            "Zone": zone,
            "Zone_B": (zone == "B").astype(float),
            "price": rng.normal(200, 10, 60),
        }
    )
    with pytest.raises(UserError) as refused:
        fit_encoding(df, "f.csv", "price")
    assert str(refused.value) == (
        "f.csv: column 'Zone' (its level 'B') and column 'Zone_B' can both be the model's input "
        "'Zone_B'; rename one of the columns in the file, or leave one out with "
        '"data.drop=[Zone]" or "data.drop=[Zone_B]"'  # quoted: the shell reads [...] as a pattern
    )
    for drop in ["Zone"], ["Zone_B"]:  # as advised, either
        enc, _, X = fit_encoding(df, "f.csv", "price", drop=drop)
        assert X.shape == (60, 2 if drop == ["Zone"] else 3)
    lots = pd.DataFrame(
        {
            "lot": rng.choice(["type_x", "type_y"], 60),
            "lot_type": rng.choice(["w", "x", "y"], 60),
            "price": rng.normal(200, 10, 60),
        }
    )
    with pytest.raises(
        UserError,
        match="column 'lot' .its level 'type_y'. and column 'lot_type' "
        ".its level 'y'. can both be the model's input 'lot_type_y'",
    ):
        fit_encoding(lots, "f.csv", "price")
    # helper-52: a column Zone_other clashed only where a training split pooled a rare level,
    # so one cross-validation fold failed midway; every level of the file and the pooled
    # 'other' count, whatever the training rows
    common = pd.DataFrame(
        {"Zone": ["A", "C"] * 30, "Zone_other": rng.normal(size=60), "price": rng.normal(size=60)}
    )
    with pytest.raises(
        UserError,
        match="column 'Zone' .its rare and unseen levels, pooled as "
        "'other'. and column 'Zone_other' can both be",
    ):
        fit_encoding(common, "f.csv", "price")
    # helper-53: the advice to drop a column the user logged was refused as in both lists
    logged = pd.DataFrame(
        {"area": [1.0, 2, 3, 4], "log(area)": [0.0, 1, 1, 2], "price": [1.0, 2, 3, 5]}
    )
    with pytest.raises(UserError) as refused:
        fit_encoding(logged, "f.csv", "price", log_features=["area"])
    assert str(refused.value).endswith(
        "leave one out with \"data.drop=[area]\" with 'area' out of data.log_features or "
        "\"data.drop=['log(area)']\""
    )


def test_a_level_written_other_is_pooled_with_the_rare_levels():
    # helper-51: a file's own level 'other' beside rare levels pooled as 'other' made two inputs
    # Type_other; the model had 4 dummies and its tables 3
    from data.csv_source import fit_encoding

    kinds = ["house"] * 20 + ["condo"] * 20 + ["other"] * 10 + ["castle", "barn"]
    df = pd.DataFrame({"Type": kinds, "price": np.arange(len(kinds), dtype=float)})
    enc, _, X = fit_encoding(df, "f.csv", "price")
    assert enc.feature_names == ["Type_house", "Type_other"]
    np.testing.assert_array_equal(X[:, 1], np.isin(kinds, ["other", "castle", "barn"]))
    assert (
        "column 'Type': 2 level(s) seen fewer than data.min_level_count=5 times in the training "
        "rows pooled as 'other' ('barn', 'castle'), with the file's own level 'other'"
    ) in enc.notes
    # without rare levels the file's 'other' is a level like any other
    plain, _, _ = fit_encoding(df.iloc[:50], "f.csv", "price")
    assert plain.feature_names == ["Type_house", "Type_other"] and not plain.columns[0].other


def test_a_number_beyond_float32_is_an_error_not_an_infinite_fill(tmp_path):
    # helper-51: 1.7e308 passed the check for infinite values, its column's mean was inf (and
    # the note said the column was constant, inf): the model's numbers are float32
    from data.csv_source import _numbers, fit_encoding, read_csv

    (tmp_path / "h.csv").write_text("huge,price\n1.7e308,1\n1.6e308,2\n,3\n1e3,4\n2e3,5\n")
    with pytest.raises(UserError) as refused:
        fit_encoding(*read_csv(tmp_path / "h.csv"), "price", missing="mean")
    assert str(refused.value).endswith(
        "column 'huge' row 1: 1.7e+308 is beyond float32's range (at most 3.4e+38 in size), in "
        "which the model computes; write the column in a larger unit"
    )
    new = pd.Series(["5e38"], name="huge")
    with pytest.raises(UserError, match="write a number of at most 3.4e.38 in size$"):
        _numbers(new, "huge", "new.csv", new_rows=True)
    # the largest float32 as it is printed (3.4028235e+38, a little above it, rounds to it): kept
    edge = pd.Series([str(np.finfo(np.float32).max)], name="huge")
    assert np.float32(_numbers(edge, "huge", "f.csv")[0]) == np.finfo(np.float32).max


def test_a_cell_written_as_the_empty_cells_level_is_refused():
    # helper-52: a text cell '(missing)' was silently the level of empty cells: both shared one
    # coefficient, and predict.py priced them alike
    from data.csv_source import fit_encoding

    hood = ["north", "south"] * 10
    hood[3], hood[6] = None, "(missing)"
    df = pd.DataFrame({"hood": hood, "price": np.arange(20, dtype=float)})
    with pytest.raises(UserError) as refused:
        fit_encoding(df, "f.csv", "price", missing="mean")
    assert str(refused.value) == (
        "f.csv: column 'hood' row 7: '(missing)' is what this project calls an empty cell's "
        "level; leave the cell empty for a missing value, or write another text for a level of "
        "its own"
    )


def test_a_column_both_dropped_and_logged_or_one_hot_is_refused():
    # helper-52: data.log_features=[area] with data.drop=[area] (as a clash's advice said) was
    # silently no log feature at all
    from data.csv_source import fit_encoding

    df = pd.DataFrame({"area": [1.0, 2, 3, 4], "zip": [1, 2, 1, 2], "price": [1.0, 2, 3, 5]})
    for key, option in (("data.log_features", "log_features"), ("data.categorical", "categorical")):
        column = "area" if option == "log_features" else "zip"
        with pytest.raises(UserError) as refused:
            fit_encoding(df, "f.csv", "price", drop=[column], **{option: [column]})
        assert str(refused.value) == (
            f"f.csv: column {column!r} is in both {key} and data.drop; remove it from one of them"
        )


@pytest.mark.slow
def test_a_column_named_like_an_interpolation_is_dropped_as_advised(tmp_path):
    # helper-53: the advised "data.drop=['\\\${seed}']" dropped no column: the read ahead's
    # process rebuilt the resolved settings as a config, where ${seed} was looked up again (0)
    (tmp_path / "h.csv").write_text(
        "area,${seed},price\n" + "".join(f"{i},{'ab'[i % 2]},{2 * i + 1}\n" for i in range(1, 9))
    )
    proc = run_train(
        "data=csv",
        f"data.path={tmp_path / 'h.csv'}",
        "data.target=price",
        "data.drop=['\\${seed}']",  # as the shell hands over the advice
        "logger.plots=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 0, proc.stderr
    assert f"encoding of {tmp_path / 'h.csv'}: area: numeric; target price: numeric" in proc.stdout
