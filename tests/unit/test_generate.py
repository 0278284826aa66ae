"""The synthetic generator: determinism, the shape of every scenario, lateness, labels and the CLI."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from pipeline.io import LABEL_COLUMNS, TRANSACTION_FIELDS, iter_wire_transactions, read_transactions_file
from pipeline.records import Transaction, parse_transaction
from tests.fixtures.cli import command_app
from training.commands.generate import register
from training.generate import DEFAULT_END, FRAUD_SCENARIOS, SCENARIOS, GeneratorConfig, generate
from training.populations import EUR_FX, haversine_km

CONFIG = GeneratorConfig(transactions=40_000)


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return generate(CONFIG)


def _epoch_ms(series: pd.Series) -> npt.NDArray[np.int64]:
    return np.asarray(series.dt.tz_localize(None).to_numpy(dtype="datetime64[ms]"), dtype=np.int64)


def _amount_eur(frame: pd.DataFrame) -> pd.Series:
    return frame["amount"] / frame["currency"].map(EUR_FX)


def _home_locations(df: pd.DataFrame) -> pd.DataFrame:
    """Each card's usual place: the median location of its everyday, located transactions."""
    everyday = df[(df["scenario"] == "legit") & df["lat"].notna()]
    return everyday.groupby("card_id")[["lat", "lon"]].median()


def _km_from_home(rows: pd.DataFrame, home: pd.DataFrame) -> np.ndarray:
    located = rows[rows["lat"].notna() & rows["card_id"].isin(home.index)]
    h = home.loc[located["card_id"]]
    return haversine_km(located["lat"].to_numpy(), located["lon"].to_numpy(), h["lat"].to_numpy(), h["lon"].to_numpy())


# --- shape, determinism, validity -----------------------------------------------------------------------


def test_columns_are_the_transaction_fields_then_the_labels(df: pd.DataFrame) -> None:
    assert list(df.columns) == [*TRANSACTION_FIELDS, *LABEL_COLUMNS]
    assert len(df) == CONFIG.transactions
    assert df["transaction_id"].is_unique
    assert str(df["timestamp"].dtype) == "datetime64[ms, UTC]"
    assert df["is_fraud"].dtype == bool


def test_same_seed_gives_an_identical_frame(df: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(generate(CONFIG), df)


def test_another_seed_gives_other_transactions_and_ids(df: pd.DataFrame) -> None:
    other = generate(replace(CONFIG, seed=CONFIG.seed + 1))
    assert not set(other["transaction_id"]) & set(df["transaction_id"])
    assert not np.array_equal(other["amount"].to_numpy(), df["amount"].to_numpy())


def test_every_generated_row_validates_as_a_transaction(df: pd.DataFrame) -> None:
    wire = list(iter_wire_transactions(df))
    assert len(wire) == len(df)
    for record in wire:
        Transaction.model_validate(record, strict=False)
    for record in wire[::97]:  # the producer's path: JSON bytes through the strict parser
        assert parse_transaction(orjson.dumps(record)).transaction_id == record["transaction_id"]


@pytest.mark.parametrize("transactions", [1, 10, 500])
def test_tiny_sizes_still_give_exactly_that_many_valid_rows(transactions: int) -> None:
    small = generate(GeneratorConfig(transactions=transactions))
    assert len(small) == transactions
    for record in iter_wire_transactions(small):
        Transaction.model_validate(record, strict=False)


def test_progress_is_reported_from_start_to_done() -> None:
    seen: list[tuple[str, float]] = []
    generate(GeneratorConfig(transactions=2_000), progress=lambda stage, done: seen.append((stage, done)))
    fractions = [done for _, done in seen]
    assert fractions[0] == 0.0
    assert fractions[-1] == 1.0
    assert fractions == sorted(fractions)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"transactions": 0}, "transactions"),
        ({"days": 0}, "days"),
        ({"end": datetime(2026, 11, 1)}, "UTC offset"),  # naive on purpose
        ({"card_testing_rate": 0.6}, "card_testing_rate"),
        ({"out_of_order_fraction": -0.1}, "out_of_order_fraction"),
        ({"max_lateness_seconds": -1.0}, "max_lateness_seconds"),
        (
            {"card_testing_rate": 0.2, "account_takeover_rate": 0.2, "stolen_card_spree_rate": 0.2},
            "add up",
        ),
    ],
)
def test_config_refuses_impossible_values(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeneratorConfig(**overrides)


# --- time: period, seasonality, lateness, labels ---------------------------------------------------------


def test_timestamps_stay_inside_the_period_and_never_after_end(df: pd.DataFrame) -> None:
    assert df["timestamp"].max() < DEFAULT_END
    assert df["timestamp"].min() >= DEFAULT_END - timedelta(days=CONFIG.days)


def test_a_custom_end_and_short_period_are_respected() -> None:
    end = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    small = generate(GeneratorConfig(transactions=5_000, days=2, end=end))
    assert small["timestamp"].max() < end
    assert small["timestamp"].min() >= end - timedelta(days=2)
    assert set(FRAUD_SCENARIOS) <= set(small["scenario"])


def test_late_rows_are_never_later_than_max_lateness(df: pd.DataFrame) -> None:
    ts = _epoch_ms(df["timestamp"])
    lateness_ms = np.maximum.accumulate(ts) - ts
    assert lateness_ms.max() <= CONFIG.max_lateness_seconds * 1000


def test_more_late_events_make_out_of_order_rows_within_the_bound() -> None:
    config = GeneratorConfig(transactions=20_000, out_of_order_fraction=0.05, max_lateness_seconds=600)
    late = generate(config)
    ts = _epoch_ms(late["timestamp"])
    lateness_ms = np.maximum.accumulate(ts) - ts
    assert (lateness_ms > 0).sum() > 50
    assert lateness_ms.max() <= 600_000


def test_without_late_events_rows_are_sorted_by_timestamp() -> None:
    ordered = generate(GeneratorConfig(transactions=5_000, out_of_order_fraction=0.0))
    assert ordered["timestamp"].is_monotonic_increasing


def test_nights_are_quieter_than_middays_in_local_time(df: pd.DataFrame) -> None:
    in_japan = df[(df["country"] == "JP") & (df["channel"] == "pos")]
    local_hour = (in_japan["timestamp"].dt.hour + 9) % 24
    assert local_hour.between(2, 4).sum() * 4 < local_hour.between(11, 13).sum()


def test_fraud_label_time_follows_the_event_by_days_and_legit_has_none(df: pd.DataFrame) -> None:
    fraud = df[df["is_fraud"]]
    delay_days = (fraud["label_time"] - fraud["timestamp"]).dt.total_seconds() / 86_400
    assert delay_days.min() > 0
    assert delay_days.max() <= 120
    assert 7 < delay_days.median() < 35
    assert df.loc[~df["is_fraud"], "label_time"].isna().all()


# --- scenarios -------------------------------------------------------------------------------------------


def test_every_scenario_is_present_and_only_fraud_scenarios_are_fraud(df: pd.DataFrame) -> None:
    assert set(df["scenario"]) == set(SCENARIOS)
    assert (df["is_fraud"] == df["scenario"].isin(FRAUD_SCENARIOS)).all()


def test_fraud_rate_is_between_half_and_two_percent(df: pd.DataFrame) -> None:
    assert 0.005 <= df["is_fraud"].mean() <= 0.02


def test_point_of_sale_rows_have_a_terminal_location_but_no_device_or_ip(df: pd.DataFrame) -> None:
    pos = df[df["channel"] == "pos"]
    assert pos["device_id"].isna().all()
    assert pos["ip"].isna().all()
    assert pos["lat"].notna().all()
    assert (df["lat"].isna() == df["lon"].isna()).all()
    online = df[df["channel"].isin(["ecom", "in_app"])]
    assert 0.0 < online["device_id"].isna().mean() < 0.2  # some merchants send no fingerprint


def test_card_testing_bursts_share_an_ip_or_device_across_many_cards_with_small_amounts(
    df: pd.DataFrame,
) -> None:
    testing = df[df["scenario"] == "card_testing"].copy()
    testing["t"] = _epoch_ms(testing["timestamp"])
    for _, row in testing.iterrows():
        near = testing[(testing["t"] - row["t"]).abs() <= 45 * 60_000]
        cards_on_ip = near.loc[near["ip"] == row["ip"], "card_id"].nunique()
        cards_on_device = near.loc[near["device_id"] == row["device_id"], "card_id"].nunique()
        assert max(cards_on_ip, cards_on_device) >= 3, row.to_dict()
    assert _amount_eur(testing).max() <= 15.5
    assert (testing["channel"] == "ecom").all()


def test_card_testing_includes_bin_attacks_on_guessed_cards(df: pd.DataFrame) -> None:
    testing = df[df["scenario"] == "card_testing"]
    single_bin_bursts = 0
    for key in ("ip", "device_id"):
        burst = testing.groupby(key).agg(cards=("card_id", "nunique"), bins=("card_bin", "nunique"))
        single_bin_bursts += int(((burst["cards"] >= 3) & (burst["bins"] == 1)).sum())
    assert single_bin_bursts > 0
    guessed = testing[testing["customer_id"].isna()]
    assert len(guessed) > 0
    assert not guessed["card_id"].isin(df.loc[df["scenario"] != "card_testing", "card_id"]).any()


def test_account_takeover_uses_a_device_new_to_the_card_far_from_home_with_high_amounts(
    df: pd.DataFrame,
) -> None:
    takeover = df[df["scenario"] == "account_takeover"]
    assert takeover["device_id"].notna().all()
    assert takeover["channel"].isin(["ecom", "in_app"]).all()
    others = df[df["scenario"] != "account_takeover"]
    for _, row in takeover.iterrows():
        before = others[(others["card_id"] == row["card_id"]) & (others["timestamp"] < row["timestamp"])]
        assert row["device_id"] not in set(before["device_id"].dropna())
    assert (_km_from_home(takeover, _home_locations(df)) > 150).all()
    usual = df[df["scenario"] == "legit"].groupby("card_id")["amount"].median()
    ratio = takeover["amount"] / takeover["card_id"].map(usual)
    assert ratio.median() > 2


def test_compromised_merchant_transactions_in_its_window_are_all_fraud(df: pd.DataFrame) -> None:
    compromised = df[df["scenario"] == "compromised_merchant"]
    windows = compromised.groupby("merchant_id")["timestamp"].agg(["min", "max"])
    assert len(windows) >= 1
    for merchant, (start, end) in windows.iterrows():
        at = df[(df["merchant_id"] == merchant) & df["timestamp"].between(start, end)]
        assert at["is_fraud"].all()
        assert len(at) >= 2
    assert compromised["channel"].isin(["pos", "moto"]).all()


def test_stolen_card_spree_hits_many_new_merchants_within_hours(df: pd.DataFrame) -> None:
    spree = df[df["scenario"] == "stolen_card_spree"]
    usual = df[df["scenario"] == "legit"].groupby("card_id")["amount"].median()
    for card, rows in spree.groupby("card_id"):
        assert rows["merchant_id"].nunique() >= max(2, len(rows) // 2), card
        assert rows["timestamp"].max() - rows["timestamp"].min() <= timedelta(hours=8)
    assert spree["channel"].isin(["pos", "atm"]).all()
    assert (spree["amount"] / spree["card_id"].map(usual)).median() > 1.5


def test_travellers_are_far_from_home_at_plausible_speed_and_not_fraud(df: pd.DataFrame) -> None:
    travel = df[df["scenario"] == "legit_travel"]
    assert not travel["is_fraud"].any()
    assert np.median(_km_from_home(travel[travel["channel"] == "pos"], _home_locations(df))) > 200
    genuine = df[~df["is_fraud"] & df["card_id"].isin(travel["card_id"]) & df["lat"].notna()]
    genuine = genuine.sort_values("timestamp")
    for _, rows in genuine.groupby("card_id"):
        lat, lon = rows["lat"].to_numpy(), rows["lon"].to_numpy()
        km = haversine_km(lat[:-1], lon[:-1], lat[1:], lon[1:])
        hours = np.diff(_epoch_ms(rows["timestamp"])) / 3_600_000
        far = km > 100
        assert (km[far] / np.maximum(hours[far], 1e-9) <= 900).all()


def test_big_purchases_are_large_at_a_merchant_the_card_already_used(df: pd.DataFrame) -> None:
    big = df[df["scenario"] == "legit_big_purchase"]
    assert not big["is_fraud"].any()
    for _, row in big.iterrows():
        earlier = df[(df["card_id"] == row["card_id"]) & (df["timestamp"] < row["timestamp"])]
        assert row["merchant_id"] in set(earlier["merchant_id"])
    usual = df[df["scenario"] == "legit"].groupby("card_id")["amount"].median()
    assert (big["amount"] / big["card_id"].map(usual)).median() > 3


def test_look_alikes_overlap_fraud_in_single_features(df: pd.DataFrame) -> None:
    """No one field gives fraud away: legitimate rows reach into fraud's ranges."""
    home = _home_locations(df)
    takeover_km = _km_from_home(df[df["scenario"] == "account_takeover"], home)
    travel_km = _km_from_home(df[df["scenario"] == "legit_travel"], home)
    assert np.median(travel_km) > np.quantile(takeover_km, 0.25)
    big_eur = _amount_eur(df[df["scenario"] == "legit_big_purchase"])
    fraud_eur = _amount_eur(df[df["scenario"].isin(["account_takeover", "stolen_card_spree"])])
    assert big_eur.median() > fraud_eur.quantile(0.25)
    small_legit = _amount_eur(df[df["scenario"] == "legit"]) < 5
    assert small_legit.mean() > 0.03  # card testing's small amounts are everyday amounts too
    shared_ip = df[~df["is_fraud"]].groupby("ip")["card_id"].nunique()
    assert (shared_ip >= 10).any()  # carrier NAT: many legitimate cards behind one address


# --- the command -----------------------------------------------------------------------------------------


def _cli() -> typer.Typer:
    return command_app(register)


def test_generate_command_writes_the_file_and_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "data" / "tx.parquet"
    result = CliRunner().invoke(
        _cli(), ["generate", "--out", str(out), "--transactions", "3000", "--days", "10", "--seed", "7"]
    )
    assert result.exit_code == 0, result.output
    written = read_transactions_file(out)
    assert len(written) == 3000
    pd.testing.assert_frame_equal(written, generate(GeneratorConfig(transactions=3000, days=10, seed=7)))
    assert "fraud" in result.output
    assert "card_testing" in result.output


def test_generate_command_refuses_an_unknown_suffix_before_generating(tmp_path: Path) -> None:
    result = CliRunner().invoke(_cli(), ["generate", "--out", str(tmp_path / "tx.xlsx")])
    assert result.exit_code != 0
    assert ".xlsx" in result.output
    assert not (tmp_path / "tx.xlsx").exists()
