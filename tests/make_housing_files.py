"""Realistic housing CSVs, made up here and written deterministically (numpy seeds) for the tests.

    python tests/make_housing_files.py OUT_DIR     # writes the four files into OUT_DIR

- ``king_county.csv``: an id, a sale date written ``20141013T000000``, an integer zip code (30
  zips, a few rare), lat/long, living area, bedrooms, bathrooms; target ``price``;
- ``ames.csv``: ``Id``, numeric columns (``LotFrontage`` with ``NA`` cells, ``TotalBsmtSF`` the
  sum of two others: a rank-deficient design) and 24 text columns whose levels give 200+
  one-hot columns, with rare levels and ``NA`` levels (``Alley``, ``PoolQC``, ``Fence``);
  target ``SalePrice``;
- ``european.csv``: ``;``-separated with decimal commas and ``.`` thousands separators;
  target ``Preis``;
- ``r_export.csv``: R's ``write.csv``: a nameless row-name column, every string quoted,
  ``TRUE``/``FALSE``, ``NA`` in a numeric column; target ``price``.

Each function returns the frame it wrote, with the cells as they are meant (numbers, dates,
NaN), so a test can build its own design matrix from it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def king_county(path: Path, n: int = 400, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    zips = 98001 + 2 * np.arange(30)
    share = rng.dirichlet(np.full(30, 0.8))
    zipcode = rng.choice(zips, n, p=share)
    zip_effect = dict(zip(zips, rng.normal(0, 60_000, 30), strict=True))
    sold = pd.Timestamp("2014-05-02") + pd.to_timedelta(rng.integers(0, 390, n), "D")
    sqft = rng.integers(600, 5000, n)
    bedrooms = rng.integers(1, 7, n)
    bathrooms = rng.choice([1.0, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5], n)
    lat = rng.uniform(47.15, 47.78, n).round(4)
    long = rng.uniform(-122.52, -121.31, n).round(3)
    years = (sold.year + (sold.day_of_year - 1) / np.where(sold.is_leap_year, 366, 365)).to_numpy()
    price = (
        180 * sqft
        + 8_000 * bedrooms
        + 15_000 * bathrooms
        + 40_000 * (years - 2014)
        + 300_000 * (lat - 47.5)
        - 50_000 * (long + 122)
        + np.array([zip_effect[z] for z in zipcode])
        + 250_000
        + rng.normal(0, 40_000, n)
    ).round(0)
    df = pd.DataFrame(
        {
            "id": rng.choice(10**10, n, replace=False),
            "date": sold.strftime("%Y%m%dT000000"),
            "price": price,
            "bedrooms": bedrooms,
            "bathrooms": bathrooms,
            "sqft_living": sqft,
            "zipcode": zipcode,
            "lat": lat,
            "long": long,
        }
    )
    df.to_csv(path, index=False)
    return df.assign(date=years)


AMES_TEXT = {
    "MSZoning": ["RL", "RM", "FV", "RH", "C (all)"],
    "Alley": ["NA", "Grvl", "Pave"],
    "LotShape": ["Reg", "IR1", "IR2", "IR3"],
    "LotConfig": ["Inside", "Corner", "CulDSac", "FR2", "FR3"],
    "Neighborhood": [
        "NAmes",
        "CollgCr",
        "OldTown",
        "Edwards",
        "Somerst",
        "Gilbert",
        "NridgHt",
        "Sawyer",
        "NWAmes",
        "SawyerW",
        "BrkSide",
        "Crawfor",
        "Mitchel",
        "NoRidge",
        "Timber",
        "IDOTRR",
        "ClearCr",
        "StoneBr",
        "SWISU",
        "MeadowV",
        "Blmngtn",
        "BrDale",
        "Veenker",
        "NPkVill",
        "Blueste",
    ],  # fmt: skip
    "Condition1": ["Norm", "Feedr", "Artery", "RRAn", "PosN", "RRAe", "PosA", "RRNn", "RRNe"],
    "BldgType": ["1Fam", "TwnhsE", "Duplex", "Twnhs", "2fmCon"],
    "HouseStyle": ["1Story", "2Story", "1.5Fin", "SLvl", "SFoyer", "1.5Unf", "2.5Unf", "2.5Fin"],
    "RoofStyle": ["Gable", "Hip", "Flat", "Gambrel", "Mansard", "Shed"],
    "Exterior1st": [
        "VinylSd",
        "HdBoard",
        "MetalSd",
        "Wd Sdng",
        "Plywood",
        "CemntBd",
        "BrkFace",
        "WdShing",
        "Stucco",
        "AsbShng",
        "BrkComm",
        "Stone",
    ],  # fmt: skip
    "Exterior2nd": [
        "VinylSd",
        "HdBoard",
        "MetalSd",
        "Wd Sdng",
        "Plywood",
        "CmentBd",
        "Wd Shng",
        "Stucco",
        "BrkFace",
        "AsbShng",
        "ImStucc",
        "Brk Cmn",
    ],  # fmt: skip
    "MasVnrType": ["None", "BrkFace", "Stone", "BrkCmn"],
    "ExterQual": ["TA", "Gd", "Ex", "Fa"],
    "Foundation": ["PConc", "CBlock", "BrkTil", "Slab", "Stone", "Wood"],
    "BsmtQual": ["TA", "Gd", "Ex", "NA", "Fa"],
    "BsmtExposure": ["No", "Av", "Gd", "Mn", "NA"],
    "Heating": ["GasA", "GasW", "Grav", "Wall", "OthW", "Floor"],
    "KitchenQual": ["TA", "Gd", "Ex", "Fa"],
    "Functional": ["Typ", "Min2", "Min1", "Mod", "Maj1", "Maj2", "Sev"],
    "FireplaceQu": ["NA", "Gd", "TA", "Fa", "Ex", "Po"],
    "GarageType": ["Attchd", "Detchd", "BuiltIn", "NA", "Basment", "CarPort", "2Types"],
    "PoolQC": ["NA", "Gd", "Ex", "Fa"],
    "Fence": ["NA", "MnPrv", "GdPrv", "GdWo", "MnWw"],
    "Street": ["Pave", "Grvl"],
    "LandContour": ["Lvl", "Bnk", "HLS", "Low"],
    "Condition2": ["Norm", "Feedr", "Artery", "PosN", "RRNn", "PosA", "RRAn", "RRAe"],
    "RoofMatl": ["CompShg", "Tar&Grv", "WdShngl", "WdShake", "Metal", "Membran", "Roll"],
    "ExterCond": ["TA", "Gd", "Fa", "Ex", "Po"],
    "BsmtCond": ["TA", "Gd", "Fa", "NA", "Po"],
    "BsmtFinType1": ["Unf", "GLQ", "ALQ", "BLQ", "Rec", "LwQ", "NA"],
    "BsmtFinType2": ["Unf", "Rec", "LwQ", "NA", "BLQ", "ALQ", "GLQ"],
    "HeatingQC": ["Ex", "TA", "Gd", "Fa", "Po"],
    "Electrical": ["SBrkr", "FuseA", "FuseF", "FuseP", "Mix"],
    "GarageFinish": ["Unf", "RFn", "Fin", "NA"],
    "GarageQual": ["TA", "Fa", "Gd", "NA", "Ex", "Po"],
    "PavedDrive": ["Y", "N", "P"],
    "MiscFeature": ["NA", "Shed", "Gar2", "Othr", "TenC"],
    "SaleType": ["WD", "New", "COD", "ConLD", "ConLI", "CWD", "ConLw", "Con", "Oth"],
    "SaleCondition": ["Normal", "Partial", "Abnorml", "Family", "Alloca", "AdjLand"],
}


def ames(path: Path, n: int = 900, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {"Id": np.arange(1, n + 1)}
    frontage = rng.integers(30, 130, n).astype(float)
    frontage[rng.random(n) < 0.15] = np.nan
    cols["LotFrontage"] = frontage
    cols["LotArea"] = rng.integers(1500, 25000, n)
    cols["OverallQual"] = rng.integers(1, 11, n)
    cols["YearBuilt"] = rng.integers(1880, 2010, n)
    cols["BsmtFinSF1"] = rng.integers(0, 1500, n)
    cols["BsmtUnfSF"] = rng.integers(0, 1000, n)
    cols["TotalBsmtSF"] = cols["BsmtFinSF1"] + cols["BsmtUnfSF"]  # rank-deficient, as in Ames
    cols["GrLivArea"] = rng.integers(500, 4000, n)
    price = (
        200_000
        + 300 * np.nan_to_num(frontage - 70)
        + 2 * cols["LotArea"]
        + 9_000 * cols["OverallQual"]
        + 300 * (cols["YearBuilt"] - 1970)
        + 20 * cols["BsmtFinSF1"]
        + 10 * cols["BsmtUnfSF"]
        + 60 * cols["GrLivArea"]
    )
    for name, levels in AMES_TEXT.items():
        # the first levels common, the last few rare (a handful of sales, some only once)
        weight = 1.0 / np.arange(1, len(levels) + 1) ** 1.1
        values = rng.choice(levels, n, p=weight / weight.sum())
        effect = dict(zip(levels, rng.normal(0, 8_000, len(levels)), strict=True))
        price = price + np.array([effect[v] for v in values])
        cols[name] = values
    cols["SalePrice"] = (price + rng.normal(0, 15_000, n)).round(0)
    df = pd.DataFrame(cols)
    df.to_csv(path, index=False)  # Ames writes `NA` for "no alley", as the strings here
    return df


def european(path: Path, n: int = 300, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    area = rng.uniform(30, 220, n).round(1)
    rooms = rng.integers(1, 7, n)
    year = rng.integers(1900, 2022, n)
    lage = rng.choice(["Zentrum", "Stadtrand", "Land"], n, p=[0.3, 0.5, 0.2])
    price = (
        3_100 * area
        + 9_500 * rooms
        + 400 * (year - 1960)
        + np.select([lage == "Zentrum", lage == "Land"], [60_000, -45_000], 0)
        + 40_000
        + rng.normal(0, 20_000, n)
    ).round(2)
    df = pd.DataFrame(
        {"Wohnflaeche": area, "Zimmer": rooms, "Baujahr": year, "Lage": lage, "Preis": price}
    )
    text = df.astype(object)
    text["Wohnflaeche"] = [f"{a:.1f}".replace(".", ",") for a in area]
    text["Preis"] = [  # 245.000,50: `.` thousands, `,` decimals
        f"{p:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".") for p in price
    ]
    text.to_csv(path, sep=";", index=False)
    return df


def r_export(path: Path, n: int = 250, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sqft = rng.integers(500, 3500, n).astype(float)
    sqft[rng.random(n) < 0.05] = np.nan
    rooms = rng.integers(1, 8, n)
    kind = rng.choice(["detached", "semi-detached", "terraced", "flat"], n)
    garage = rng.random(n) < 0.4
    price = (
        90 * np.nan_to_num(sqft, nan=2000)
        + 6_000 * rooms
        + np.select([kind == "detached", kind == "flat"], [50_000, -30_000], 0)
        + 12_000 * garage
        + 60_000
        + rng.normal(0, 10_000, n)
    ).round(0)
    df = pd.DataFrame(
        {"sqft": sqft, "rooms": rooms, "type": kind, "garage": garage, "price": price},
        index=[str(i) for i in range(1, n + 1)],
    )
    lines = ['"","sqft","rooms","type","garage","price"']  # write.csv: row names, quoted, NA
    for name, r in df.iterrows():
        sq = "NA" if np.isnan(r.sqft) else f"{r.sqft:g}"
        lines.append(f'"{name}",{sq},{r.rooms},"{r.type}",{str(r.garage).upper()},{r.price:g}')
    path.write_text("\n".join(lines) + "\n")
    return df


WRITERS = {
    "king_county.csv": king_county,
    "ames.csv": ames,
    "european.csv": european,
    "r_export.csv": r_export,
}

if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, write in WRITERS.items():
        write(out / name)
        print(out / name)
