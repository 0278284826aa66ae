"""The handbook simulator (training.handbook): its statistics against the handbook's, each step's rules,
determinism, the transaction table it writes and the generate command's handbook profile."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from pipeline.io import LABEL_COLUMNS, TRANSACTION_FIELDS, iter_wire_transactions, read_transactions_file
from pipeline.records import parse_label, parse_transaction
from tests.fixtures.cli import command_app
from training.commands.generate import register
from training.dataset import label_records
from training.handbook import (
    COMPROMISED_CUSTOMER,
    COMPROMISED_TERMINAL,
    HIGH_AMOUNT,
    LEGIT,
    SCENARIOS,
    HandbookConfig,
    Transactions,
    add_frauds,
    build_profiles,
    daily_transactions,
    generate_handbook,
    simulate,
    terminals_within_radius,
)

SMALL = HandbookConfig(customers=400, terminals=800, days=60, seed=3)


@pytest.fixture(scope="module")
def default_world() -> Transactions:
    """The handbook's default sizes (about 1.75 million transactions, a few seconds)."""
    return simulate(HandbookConfig())[1]


@pytest.fixture(scope="module")
def small_frame() -> pd.DataFrame:
    return generate_handbook(SMALL)


# --- the handbook's figures at its default sizes ----------------------------------------------------------


def test_default_sizes_give_the_handbooks_volume_and_fraud_rate(default_world: Transactions) -> None:
    # The handbook reports 1,754,155 transactions and 14,681 frauds (0.84 %): 978 from scenario 1,
    # 9,099 from scenario 2 and 4,604 from scenario 3 (its own random draws; ours differ within noise).
    tx = default_world
    n = len(tx.day)
    assert 1_700_000 < n < 1_850_000
    assert 0.007 < tx.is_fraud.mean() < 0.0095
    counts = np.bincount(tx.scenario, minlength=4)
    assert 700 < counts[HIGH_AMOUNT] < 1_400
    assert 7_000 < counts[COMPROMISED_TERMINAL] < 11_500
    assert 3_800 < counts[COMPROMISED_CUSTOMER] < 5_500


def test_times_are_around_noon_inside_the_day(default_world: Transactions) -> None:
    second = default_world.second
    assert second.min() > 0 and second.max() < 86_400
    assert abs(second.mean() - 43_200) < 300
    assert 18_000 < second.std() < 20_000  # a normal of std 20,000 s, its tails beyond the day dropped
    assert np.all(np.diff(default_world.day * 86_400 + second) >= 0)  # event-time order


# --- each step's rules, on a small world ------------------------------------------------------------------


def test_customer_profiles_follow_the_handbooks_distributions() -> None:
    profiles = build_profiles(np.random.default_rng(1), HandbookConfig(customers=20_000, terminals=10_000))
    assert profiles.customer_xy.min() >= 0 and profiles.customer_xy.max() < 100
    assert profiles.mean_amount.min() >= 5 and profiles.mean_amount.max() < 100
    np.testing.assert_allclose(profiles.std_amount, profiles.mean_amount / 2)
    assert profiles.mean_tx_per_day.min() >= 0 and profiles.mean_tx_per_day.max() < 4
    assert abs(profiles.mean_tx_per_day.mean() - 2) < 0.05
    # pi r^2 terminals per unit area, fewer near the grid's edges
    assert 70 < profiles.terminal_counts().mean() < 79


def test_available_terminals_are_exactly_those_strictly_within_the_radius() -> None:
    rng = np.random.default_rng(5)
    customers, terminals = rng.uniform(0, 100, (300, 2)), rng.uniform(0, 100, (2_000, 2))
    terminals[0] = customers[0] + [5.0, 0.0]  # at exactly r: not available (strictly within)
    indptr, available = terminals_within_radius(customers, terminals, 5.0)
    for c in range(len(customers)):
        expected = np.flatnonzero(np.hypot(*(terminals - customers[c]).T) < 5.0)
        np.testing.assert_array_equal(available[indptr[c] : indptr[c + 1]], expected)
    assert 0 not in available[indptr[0] : indptr[1]]


def test_each_transaction_uses_one_of_its_customers_terminals_and_amounts_are_cents() -> None:
    config = replace(SMALL, radius=8.0)
    profiles, tx = simulate(config)
    for c, t in zip(tx.customer[::37], tx.terminal[::37], strict=True):
        assert t in profiles.available[profiles.indptr[c] : profiles.indptr[c + 1]]
    assert tx.amount.min() >= 0.01
    np.testing.assert_allclose(tx.amount, np.round(tx.amount, 2))


def test_scenario_one_is_every_amount_above_220_not_relabelled_later() -> None:
    _, tx = simulate(SMALL)
    assert np.all(tx.amount[tx.scenario == HIGH_AMOUNT] > 220)
    assert np.all(tx.amount[tx.scenario == LEGIT] <= 220)


def test_scenario_two_takes_every_transaction_of_a_compromised_terminal_that_day() -> None:
    config = replace(SMALL, customers=2_000, terminals=300)
    _, tx = simulate(config)
    frame = pd.DataFrame({"terminal": tx.terminal, "day": tx.day, "scenario": tx.scenario})
    by_terminal_day = frame.groupby(["terminal", "day"])["scenario"]
    hit = by_terminal_day.transform(lambda s: bool((s == COMPROMISED_TERMINAL).any())).astype(bool)
    # on a compromised terminal-day every row is fraud (scenario 3 may relabel some of them)
    assert set(frame.loc[hit, "scenario"]) <= {COMPROMISED_TERMINAL, COMPROMISED_CUSTOMER}
    # 2 terminals a day for 28 days: at most 2 x 28 x (days - 1) compromised terminal-days
    assert frame.loc[hit, ["terminal", "day"]].drop_duplicates().shape[0] <= 2 * 28 * (config.days - 1)


def test_scenario_three_multiplies_a_third_of_the_compromised_amounts_by_five() -> None:
    config = SMALL
    profiles = build_profiles(np.random.default_rng(7), config)
    tx = daily_transactions(np.random.default_rng(8), profiles, config.days)
    before = tx.amount.copy()
    add_frauds(np.random.default_rng(9), tx, config, config.terminals)
    hit = tx.scenario == COMPROMISED_CUSTOMER
    assert hit.any()
    factor = tx.amount[hit] / before[hit]
    # x5, or x25, x125... for a row drawn again by overlapping compromises of the same customer
    powers = np.log(factor) / np.log(5)
    assert np.allclose(powers, np.round(powers), atol=1e-3) and powers.min() > 0.999
    assert (np.round(powers) == 1).mean() > 0.9
    np.testing.assert_array_equal(tx.amount[~hit], before[~hit])
    # each draw takes a third (rounded down) of 3 customers' 14 days: about 1/3 of those customers' rows
    customers = np.unique(tx.customer[hit])
    assert 0.05 < hit.sum() / np.isin(tx.customer, customers).sum() < 0.34


# --- determinism, the table and the labels ----------------------------------------------------------------


def test_same_seed_gives_an_identical_frame_and_another_seed_another(small_frame: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(generate_handbook(SMALL), small_frame)
    other = generate_handbook(replace(SMALL, seed=SMALL.seed + 1))
    assert not np.array_equal(other["amount"].to_numpy()[:1000], small_frame["amount"].to_numpy()[:1000])
    assert not set(other["transaction_id"]) & set(small_frame["transaction_id"])


def test_frame_has_our_columns_and_every_row_is_a_valid_transaction(small_frame: pd.DataFrame) -> None:
    df = small_frame
    assert list(df.columns) == [*TRANSACTION_FIELDS, *LABEL_COLUMNS]
    assert df["transaction_id"].is_unique
    assert df["timestamp"].is_monotonic_increasing
    assert df["timestamp"].min() >= pd.Timestamp("2018-04-01", tz="UTC")
    assert df["timestamp"].max() < pd.Timestamp("2018-04-01", tz="UTC") + pd.Timedelta(days=SMALL.days)
    assert set(df["currency"]) == {"EUR"}
    assert df["card_id"].str.fullmatch(r"card-\d+").all() and df["merchant_id"].str.fullmatch(r"term-\d+").all()
    assert (df["customer_id"].str.removeprefix("cust-") == df["card_id"].str.removeprefix("card-")).all()
    for name in ("card_bin", "device_id", "ip", "merchant_category", "channel", "country", "card_country", "lat"):
        assert df[name].isna().all(), name
    assert set(df["scenario"]) <= set(SCENARIOS)
    assert (df["is_fraud"] == (df["scenario"] != "legit")).all()
    for record in list(iter_wire_transactions(df))[::53]:
        assert parse_transaction(orjson.dumps(record)).transaction_id == record["transaction_id"]


def test_fraud_labels_are_reported_the_label_delay_after_the_fraud(small_frame: pd.DataFrame) -> None:
    fraud = small_frame[small_frame["is_fraud"]]
    assert ((fraud["label_time"] - fraud["timestamp"]) == pd.Timedelta(days=SMALL.label_delay_days)).all()
    assert small_frame.loc[~small_frame["is_fraud"], "label_time"].isna().all()
    later = generate_handbook(replace(SMALL, label_delay_days=2.5))
    fraud = later[later["is_fraud"]]
    assert ((fraud["label_time"] - fraud["timestamp"]) == pd.Timedelta(days=2.5)).all()


def test_label_records_are_valid_chargebacks_in_report_order(small_frame: pd.DataFrame) -> None:
    records = label_records(small_frame, source="handbook")
    assert len(records) == int(small_frame["is_fraud"].sum())
    labels = [parse_label(orjson.dumps(r)) for r in records]
    assert all(label.is_fraud and label.source == "handbook" for label in labels)
    reported = [label.reported_at_ms for label in labels]
    assert reported == sorted(reported)
    first = small_frame.set_index("transaction_id").loc[labels[0].transaction_id]
    assert labels[0].reported_at_ms == int(first["label_time"].timestamp() * 1000)
    assert (labels[0].card_id, labels[0].merchant_id) == (first["card_id"], first["merchant_id"])


def test_parquet_round_trip_keeps_the_frame(small_frame: pd.DataFrame, tmp_path: Path) -> None:
    from pipeline.io import write_transactions

    write_transactions(small_frame, tmp_path / "hb.parquet")
    pd.testing.assert_frame_equal(read_transactions_file(tmp_path / "hb.parquet"), small_frame)


# --- the command ------------------------------------------------------------------------------------------


def _cli() -> typer.Typer:
    return command_app(register)


def test_generate_handbook_profile_writes_the_simulation_and_its_labels(tmp_path: Path) -> None:
    out, labels = tmp_path / "hb.parquet", tmp_path / "labels.jsonl"
    args = ["generate", "--profile", "handbook", "--customers", "200", "--terminals", "300", "--days", "20"]
    result = CliRunner().invoke(_cli(), [*args, "--seed", "4", "--out", str(out), "--labels-out", str(labels)])
    assert result.exit_code == 0, result.output
    expected = generate_handbook(HandbookConfig(customers=200, terminals=300, days=20, seed=4))
    pd.testing.assert_frame_equal(read_transactions_file(out), expected)
    lines = labels.read_bytes().splitlines()
    assert len(lines) == int(expected["is_fraud"].sum())
    assert "hb_compromised_terminal (fraud)" in result.output


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--profile", "handbook", "--transactions", "10"], "--transactions"),
        (["--customers", "10"], "only with --profile handbook"),
        (["--profile", "other"], "--profile"),
        (["--profile", "handbook", "--labels-out", "labels.csv"], "JSON Lines"),
    ],
)
def test_generate_refuses_options_the_profile_does_not_take(args: list[str], complaint: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(_cli(), ["generate", "--out", str(tmp_path / "x.parquet"), *args])
    assert result.exit_code != 0
    assert complaint in " ".join(result.output.replace("│", " ").split())
    assert not (tmp_path / "x.parquet").exists()
