"""Transaction files (Parquet, JSON Lines, CSV) in and out, and the JSON wire form of their rows.

The generator writes these files; the offline feature reference, training and the load producer read
them. One reader keeps them agreeing on types whatever the format: ids and BINs stay strings (a BIN read
as a number would lose its meaning, an id its leading zeros), times are UTC with millisecond precision,
amounts and coordinates are floats, and a missing optional value is missing, never an empty string.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from pyarrow import csv as pa_csv
from pyarrow import json as pa_json

from pipeline.records import Transaction

FileFormat = Literal["parquet", "jsonl", "csv"]

#: Wire fields in schema order; the required ones must be columns of every transaction file.
TRANSACTION_FIELDS: Final[tuple[str, ...]] = tuple(Transaction.model_fields)
REQUIRED_FIELDS: Final[tuple[str, ...]] = tuple(
    name for name, field in Transaction.model_fields.items() if field.is_required()
)
#: Ground truth the generator adds next to the wire fields (not part of the wire form).
LABEL_COLUMNS: Final[tuple[str, ...]] = ("is_fraud", "scenario", "label_time")

_SUFFIXES: Final[dict[str, FileFormat]] = {".parquet": "parquet", ".jsonl": "jsonl", ".csv": "csv"}
_TIME_COLUMNS: Final = frozenset({"timestamp", "label_time"})
_FLOAT_COLUMNS: Final = frozenset({"amount", "lat", "lon"})
_BOOL_COLUMNS: Final = frozenset({"is_fraud"})
_STRING_COLUMNS: Final = frozenset({*TRANSACTION_FIELDS, "scenario"} - _TIME_COLUMNS - _FLOAT_COLUMNS - _BOOL_COLUMNS)
#: Rows converted to Python objects at a time: bounds memory when streaming millions of records.
_CHUNK_ROWS: Final = 50_000


class TransactionFileError(ValueError):
    """A transaction file cannot be read or written; the message names the file and what is wrong."""


def file_format(path: Path | str) -> FileFormat:
    """The format implied by the file's suffix; refuses anything else before any work is done."""
    suffix = Path(path).suffix.lower()
    try:
        return _SUFFIXES[suffix]
    except KeyError:
        known = ", ".join(_SUFFIXES)
        raise TransactionFileError(
            f"{path}: unknown transaction file suffix {suffix or '(none)'!r}; use one of {known}"
        ) from None


# --- reading --------------------------------------------------------------------------------------------


def read_transactions_file(path: Path | str) -> pd.DataFrame:
    """Read a CSV, Parquet or JSON Lines transaction file (format by suffix) with normalised column types.

    Timestamps without an offset are taken as UTC. Columns other than the wire fields and labels are kept
    as they are.
    """
    path = Path(path)
    fmt = file_format(path)
    if not path.is_file():
        raise TransactionFileError(f"{path}: no such file")
    try:
        if fmt == "parquet":
            df = pd.read_parquet(path, engine="pyarrow")
        elif fmt == "csv":
            df = _read_csv(path)
        else:
            df = _read_jsonl(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise TransactionFileError(f"{path}: cannot read as {fmt}: {e}") from e
    return _normalize(df, path)


def _arrow_types() -> dict[str, pa.DataType]:
    """Arrow types of the known columns, in the canonical column order (wire fields, then labels)."""
    types: dict[str, pa.DataType] = {}
    for name in (*TRANSACTION_FIELDS, *LABEL_COLUMNS):
        if name in _FLOAT_COLUMNS:
            types[name] = pa.float64()
        elif name in _BOOL_COLUMNS:
            types[name] = pa.bool_()
        else:  # strings, and times as text: parsed afterwards, whatever their offset
            types[name] = pa.string()
    return types


def _read_csv(path: Path) -> pd.DataFrame:
    options = pa_csv.ConvertOptions(column_types=_arrow_types(), strings_can_be_null=True)
    return pa_csv.read_csv(path, convert_options=options).to_pandas()


def _read_jsonl(path: Path) -> pd.DataFrame:
    schema = pa.schema(list(_arrow_types().items()))
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
    df = pa_json.read_json(path, parse_options=options).to_pandas()
    # JSON Lines has no header: a required field that no line carries is a missing column
    absent = [name for name in REQUIRED_FIELDS if len(df) and df[name].isna().all()]
    return df.drop(columns=absent)


def _normalize(df: pd.DataFrame, path: Path | str) -> pd.DataFrame:
    missing = [name for name in REQUIRED_FIELDS if name not in df.columns]
    if missing:
        names = ", ".join(repr(m) for m in missing)
        raise TransactionFileError(f"{path}: missing required transaction column {names}")
    out = df.copy()
    for name in list(out.columns):
        try:
            if name in _TIME_COLUMNS:
                out[name] = _as_utc_ms(out[name])
            elif name in _FLOAT_COLUMNS:
                out[name] = pd.to_numeric(out[name]).astype(np.float64)
            elif name in _BOOL_COLUMNS:
                if len(out) and out[name].isna().all():  # nobody filled the labels in: none, not all-false
                    out = out.drop(columns=[name])
                else:
                    out[name] = _as_bool(out[name])
            elif name in _STRING_COLUMNS:
                out[name] = _as_strings(out[name])
        except (ValueError, TypeError) as e:
            raise TransactionFileError(f"{path}: column {name!r}: {e}") from e
    return out


def _as_utc_ms(series: pd.Series) -> pd.Series:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        utc = series.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(series.dtype):
        utc = series.dt.tz_localize("UTC")
    else:
        utc = pd.to_datetime(series, utc=True, format="ISO8601")
    return utc.dt.as_unit("ms")


def _as_strings(series: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(series.dtype):
        # a numeric id column with gaps arrives as floats: 412345.0 must become "412345"
        values = series.to_numpy(dtype=np.float64)
        integral = np.isnan(values) | (values == np.round(values))
        if integral.all():
            series = series.astype("Int64")
    if pd.api.types.is_string_dtype(series.dtype) and series.dtype != object:
        return series
    return series.astype("str")


def _as_bool(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype(bool)
    text = series.astype("str").str.strip().str.lower()
    truth = text.map({"true": True, "1": True, "false": False, "0": False})
    if truth.isna().any():
        raise ValueError("expected true/false values")
    return truth.astype(bool)


# --- the wire form --------------------------------------------------------------------------------------


def iter_wire_transactions(df: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """Each row as the JSON a producer sends, in row order: wire fields only, missing optional fields
    omitted, timestamps RFC 3339 UTC with milliseconds, plain Python types (orjson-ready).

    Rows are converted a chunk of columns at a time, not row by row through pandas, so millions of
    records stream at a few hundred thousand a second in bounded memory.
    """
    missing = [name for name in REQUIRED_FIELDS if name not in df.columns]
    if missing:
        raise TransactionFileError(f"missing required transaction column {', '.join(map(repr, missing))}")
    names = [name for name in TRANSACTION_FIELDS if name in df.columns]
    yield from _iter_records(df, names)


def _iter_records(df: pd.DataFrame, names: list[str]) -> Iterator[dict[str, Any]]:
    for start in range(0, len(df), _CHUNK_ROWS):
        part = df.iloc[start : start + _CHUNK_ROWS]
        columns = [_python_values(name, part[name]) for name in names]
        for values in zip(*columns, strict=True):
            yield {name: value for name, value in zip(names, values, strict=True) if value is not None}


def _python_values(name: str, series: pd.Series) -> list[Any]:
    """A column as a list of JSON-ready Python values, None where missing."""
    dtype = series.dtype
    if name in _TIME_COLUMNS or isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        naive = _as_utc_ms(series).dt.tz_localize(None).to_numpy(dtype="datetime64[ms]")
        text = np.datetime_as_string(naive, unit="ms", timezone="UTC").astype(object)
        text[np.isnat(naive)] = None
        return list(text.tolist())
    if name in _FLOAT_COLUMNS or pd.api.types.is_float_dtype(dtype):
        numbers = pd.to_numeric(series).to_numpy(dtype=np.float64, na_value=np.nan)
        values = numbers.astype(object)
        values[np.isnan(numbers)] = None
        return list(values.tolist())
    if name in _BOOL_COLUMNS or pd.api.types.is_bool_dtype(dtype):
        return list(series.astype(object).where(series.notna(), None).tolist())
    if name in _STRING_COLUMNS:
        series = _as_strings(series)
    elif pd.api.types.is_integer_dtype(dtype):
        return list(series.astype(object).where(series.notna(), None).tolist())
    return list(series.to_numpy(dtype=object, na_value=None).tolist())


# --- writing --------------------------------------------------------------------------------------------


def write_transactions(df: pd.DataFrame, path: Path | str) -> None:
    """Write transactions (and any label columns) as Parquet, JSON Lines or CSV, by the path's suffix.

    Parquet keeps the types exactly; JSON Lines rows are the wire form plus the labels; CSV times are
    RFC 3339 text. `read_transactions_file` reads all three back to the same frame. The file appears
    only once complete, so an interrupted run never leaves a truncated file to be mistaken for data.
    """
    path = Path(path)
    fmt = file_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        if fmt == "parquet":
            df.to_parquet(partial, index=False, engine="pyarrow", compression="zstd")
        elif fmt == "csv":
            _write_csv(df, partial)
        else:
            _write_jsonl(df, partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    text = df.copy()
    for name in text.columns:
        if name in _TIME_COLUMNS or isinstance(text[name].dtype, pd.DatetimeTZDtype):
            text[name] = pd.Series(_python_values(name, text[name]), index=text.index, dtype="str")
    pa_csv.write_csv(pa.Table.from_pandas(text, preserve_index=False), path)


def _write_jsonl(df: pd.DataFrame, path: Path) -> None:
    names = [str(name) for name in df.columns]
    with path.open("wb") as f:
        batch: list[bytes] = []
        for record in _iter_records(df, names):
            batch.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            if len(batch) >= _CHUNK_ROWS:
                f.write(b"".join(batch))
                batch.clear()
        f.write(b"".join(batch))
