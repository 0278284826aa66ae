"""Transaction files in three formats and the wire form of their rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from pipeline import io
from pipeline.io import (
    TransactionFileError,
    iter_wire_transactions,
    read_transactions_file,
    write_transactions,
)
from pipeline.records import Transaction, parse_transaction
from training.generate import GeneratorConfig, generate

SUFFIXES = [".parquet", ".jsonl", ".csv"]


@pytest.fixture(scope="module")
def generated() -> pd.DataFrame:
    return generate(GeneratorConfig(transactions=3_000, seed=5))


def _frame(**columns: list[object]) -> pd.DataFrame:
    base: dict[str, list[object]] = {
        "transaction_id": ["tx-1", "tx-2"],
        "timestamp": ["2026-10-01T12:00:00.123Z", "2026-10-01T14:30:00+02:00"],
        "amount": [12, 7.5],
        "currency": ["EUR", "USD"],
        "card_id": ["card-1", "card-2"],
        "merchant_id": ["m-1", "m-2"],
    }
    base.update(columns)
    return pd.DataFrame(base)


# --- round trips ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_generated_transactions_round_trip_through_every_format(
    generated: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"tx{suffix}"
    write_transactions(generated, path)
    pd.testing.assert_frame_equal(read_transactions_file(path), generated)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_rows_read_back_give_the_same_wire_records(generated: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"tx{suffix}"
    write_transactions(generated, path)
    assert list(iter_wire_transactions(read_transactions_file(path))) == list(iter_wire_transactions(generated))


def test_writing_replaces_an_existing_file_and_leaves_no_partial_file(generated: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "tx.parquet"
    path.write_bytes(b"old")
    write_transactions(generated.head(10), path)
    assert len(read_transactions_file(path)) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tx.parquet"]


# --- reading --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_missing_required_column_error_names_the_column(generated: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"tx{suffix}"
    write_transactions(generated.drop(columns=["card_id"]), path)
    with pytest.raises(TransactionFileError, match="'card_id'"):
        read_transactions_file(path)


@pytest.mark.parametrize("name", ["tx.txt", "tx", "tx.json"])
def test_unknown_suffix_is_refused_for_reading_and_writing(generated: pd.DataFrame, tmp_path: Path, name: str) -> None:
    with pytest.raises(TransactionFileError, match="unknown transaction file suffix"):
        read_transactions_file(tmp_path / name)
    with pytest.raises(TransactionFileError, match="unknown transaction file suffix"):
        write_transactions(generated, tmp_path / name)
    assert not (tmp_path / name).exists()


def test_missing_file_is_reported_by_name(tmp_path: Path) -> None:
    with pytest.raises(TransactionFileError, match="no such file"):
        read_transactions_file(tmp_path / "absent.csv")


def test_csv_keeps_bins_and_ids_as_text_and_converts_offsets_to_utc(tmp_path: Path) -> None:
    path = tmp_path / "hand.csv"
    path.write_text(
        "transaction_id,timestamp,amount,currency,card_id,merchant_id,card_bin,device_id,lat,lon,extra\n"
        "007,2026-10-01T14:30:00+02:00,10,EUR,0042,m-1,412345,,48.85,2.35,x\n"
        "008,2026-10-01T12:31:00.5Z,2.5,EUR,0043,m-1,41234567,dev-1,,,y\n"
    )
    df = read_transactions_file(path)
    assert df["transaction_id"].tolist() == ["007", "008"]
    assert df["card_id"].tolist() == ["0042", "0043"]
    assert df["card_bin"].tolist() == ["412345", "41234567"]
    assert df["timestamp"].tolist() == [
        pd.Timestamp("2026-10-01T12:30:00Z"),
        pd.Timestamp("2026-10-01T12:31:00.500Z"),
    ]
    assert df["device_id"].isna().tolist() == [True, False]
    assert df["extra"].tolist() == ["x", "y"]
    first, second = iter_wire_transactions(df)
    assert "device_id" not in first
    assert "lat" not in second
    assert first["timestamp"] == "2026-10-01T12:30:00.000Z"


def test_jsonl_where_no_line_has_a_required_field_names_it(tmp_path: Path) -> None:
    path = tmp_path / "no-merchant.jsonl"
    record = {"transaction_id": "t1", "timestamp": "2026-10-01T12:00:00Z", "amount": 1.0}
    path.write_bytes(orjson.dumps({**record, "currency": "EUR", "card_id": "c1"}) + b"\n")
    with pytest.raises(TransactionFileError, match="'merchant_id'"):
        read_transactions_file(path)


def test_parquet_from_other_tools_with_numeric_bins_and_naive_times_is_normalised(tmp_path: Path) -> None:
    path = tmp_path / "foreign.parquet"
    frame = _frame(card_bin=[412345, np.nan], lat=[1, 2], lon=[3, 4])
    frame["timestamp"] = pd.to_datetime(["2026-10-01T12:00:00", "2026-10-01T13:00:00"])
    frame.to_parquet(path)
    df = read_transactions_file(path)
    assert df["card_bin"].tolist()[0] == "412345"
    assert pd.isna(df["card_bin"].tolist()[1])
    assert str(df["timestamp"].dtype) == "datetime64[ms, UTC]"
    assert df["lat"].dtype == np.float64


def test_unparseable_timestamp_names_the_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("transaction_id,timestamp,amount,currency,card_id,merchant_id\nt1,yesterday,1,EUR,c,m\n")
    with pytest.raises(TransactionFileError, match="'timestamp'"):
        read_transactions_file(path)


# --- the wire form --------------------------------------------------------------------------------------


def test_wire_records_omit_missing_optionals_and_use_plain_json_types() -> None:
    df = _frame(
        device_id=["dev-1", None],
        lat=[48.8566, np.nan],
        lon=[2.3522, np.nan],
        card_bin=["412345", None],
        is_fraud=[False, True],
        scenario=["legit", "card_testing"],
    )
    first, second = iter_wire_transactions(df)
    assert first == {
        "transaction_id": "tx-1",
        "timestamp": "2026-10-01T12:00:00.123Z",
        "amount": 12.0,
        "currency": "EUR",
        "card_id": "card-1",
        "merchant_id": "m-1",
        "card_bin": "412345",
        "device_id": "dev-1",
        "lat": 48.8566,
        "lon": 2.3522,
    }
    assert second == {
        "transaction_id": "tx-2",
        "timestamp": "2026-10-01T12:30:00.000Z",
        "amount": 7.5,
        "currency": "USD",
        "card_id": "card-2",
        "merchant_id": "m-2",
    }
    for record in (first, second):
        assert all(type(v) in (str, float) for v in record.values())
        assert parse_transaction(orjson.dumps(record)) == Transaction.model_validate(record, strict=False)


def test_wire_records_convert_raw_frames_with_numbers_and_other_time_zones() -> None:
    df = _frame(card_bin=[412345, 51234567], amount=[12, 7])
    df["timestamp"] = pd.to_datetime(["2026-10-01T14:00:00", "2026-10-01T15:00:00"]).tz_localize("Europe/Paris")
    first, second = iter_wire_transactions(df)
    assert first["timestamp"] == "2026-10-01T12:00:00.000Z"
    assert (first["card_bin"], second["card_bin"]) == ("412345", "51234567")
    assert (first["amount"], second["amount"]) == (12.0, 7.0)
    assert type(first["amount"]) is float


def test_wire_records_keep_row_order_across_chunks(generated: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(io, "_CHUNK_ROWS", 7)
    ids = [record["transaction_id"] for record in iter_wire_transactions(generated.iloc[::-1])]
    assert ids == generated["transaction_id"].tolist()[::-1]


def test_wire_records_need_the_required_columns(generated: pd.DataFrame) -> None:
    with pytest.raises(TransactionFileError, match="'amount'"):
        next(iter_wire_transactions(generated.drop(columns=["amount"])))
