"""Everyday traffic, the legitimate look-alikes and the labelled fraud scenarios, drawn as arrays.

Each fraud scenario is built so that no single feature gives it away: card-testing bursts share an IP
with many cards, but so do mobile carriers' NAT addresses; an account takeover is far from home with a
high amount, but so is a traveller's hotel bill; a stolen-card spree hits many new merchants with large
amounts, as a tourist or a big purchase at a usual shop does. What separates them is the combination,
which is what the model has to learn.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np

from pipeline.records import Channel
from training.populations import (
    ATM_CATEGORY,
    PHYSICAL,
    BoolArray,
    FloatArray,
    IntArray,
    Population,
    draw_amounts,
    haversine_km,
    jitter,
)

CHANNELS: tuple[str, ...] = typing.get_args(Channel)
POS, ECOM, ATM_CHANNEL, MOTO, IN_APP = (CHANNELS.index(c) for c in ("pos", "ecom", "atm", "moto", "in_app"))

SCENARIOS: tuple[str, ...] = (
    "legit",
    "legit_travel",
    "legit_big_purchase",
    "card_testing",
    "account_takeover",
    "compromised_merchant",
    "stolen_card_spree",
)
LEGIT, LEGIT_TRAVEL, LEGIT_BIG_PURCHASE, CARD_TESTING = range(4)
ACCOUNT_TAKEOVER, COMPROMISED_MERCHANT, SPREE = range(4, 7)
#: Scenario codes at or above this one are fraud.
FIRST_FRAUD = CARD_TESTING
FRAUD_SCENARIOS: tuple[str, ...] = SCENARIOS[FIRST_FRAUD:]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MINUTE_MS = 60_000

#: Relative activity by local hour: night lull, lunch and evening peaks; weekends start later.
_WEEKDAY_HOURS = np.array([
    0.15, 0.08, 0.05, 0.04, 0.05, 0.12, 0.35, 0.70, 0.95, 1.00, 1.05, 1.20,
    1.45, 1.35, 1.10, 1.05, 1.15, 1.35, 1.50, 1.45, 1.20, 0.95, 0.65, 0.35,
])  # fmt: skip
_WEEKEND_HOURS = np.array([
    0.25, 0.15, 0.09, 0.06, 0.05, 0.07, 0.15, 0.30, 0.55, 0.85, 1.10, 1.35,
    1.50, 1.45, 1.35, 1.30, 1.30, 1.35, 1.40, 1.35, 1.15, 0.95, 0.70, 0.45,
])  # fmt: skip
#: Monday .. Sunday: Friday and Saturday busiest, Sunday quiet (shops closed in much of Europe).
_DAY_FACTOR = np.array([0.92, 0.95, 0.97, 1.0, 1.12, 1.15, 0.85])
#: How often a cardholder returns to their n-th favourite shop, most favoured first.
_FAV_PHYSICAL_P = np.array([0.3, 0.2, 0.15, 0.12, 0.09, 0.07, 0.04, 0.03])
_FAV_ONLINE_P = np.array([0.35, 0.25, 0.15, 0.1, 0.15])


@dataclass(frozen=True)
class Period:
    start_ms: int
    end_ms: int

    @property
    def length_ms(self) -> int:
        return self.end_ms - self.start_ms

    @property
    def days(self) -> float:
        return self.length_ms / DAY_MS


@dataclass
class Rows:
    """Transactions as parallel arrays of entity indices (into the Population); -1 / NaN mean absent."""

    timestamp_ms: IntArray
    card: IntArray
    merchant: IntArray
    channel: IntArray
    amount: FloatArray
    device: IntArray
    ip: IntArray
    lat: FloatArray
    lon: FloatArray
    scenario: IntArray

    @classmethod
    def empty(cls, n: int, scenario: int) -> Rows:
        def missing() -> IntArray:
            return np.full(n, -1, np.int64)

        return cls(
            timestamp_ms=np.zeros(n, np.int64), card=missing(), merchant=missing(), channel=missing(),
            amount=np.zeros(n), device=missing(), ip=missing(), lat=np.full(n, np.nan),
            lon=np.full(n, np.nan), scenario=np.full(n, scenario, np.int64),
        )  # fmt: skip

    @classmethod
    def concat(cls, parts: Sequence[Rows]) -> Rows:
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def take(self, index: IntArray) -> Rows:
        return Rows(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def __len__(self) -> int:
        return len(self.timestamp_ms)


def incident_sizes(rng: np.random.Generator, total: int, draw: Callable[[int], IntArray]) -> IntArray:
    """Incident sizes summing to exactly `total`; a short remainder joins the last incident."""
    if total <= 0:
        return np.zeros(0, np.int64)
    sizes = np.zeros(0, np.int64)
    while sizes.sum() < total:
        sizes = np.concatenate([sizes, np.maximum(draw(max(8, total // 4)), 1).astype(np.int64)])
    cum = np.cumsum(sizes)
    n = int(np.searchsorted(cum, total)) + 1
    sizes = sizes[:n].copy()
    sizes[-1] -= int(cum[n - 1]) - total
    if n > 1 and sizes[-1] < sizes[:-1].min():
        sizes[-2] += sizes[-1]
        sizes = sizes[:-1]
    return sizes


def _lognormal_int(
    rng: np.random.Generator, median: float, sigma: float, low: int, high: int
) -> Callable[[int], IntArray]:
    def draw(n: int) -> IntArray:
        return np.clip(np.round(rng.lognormal(math.log(median), sigma, n)), low, high).astype(np.int64)

    return draw


def draw_local_times(rng: np.random.Generator, period: Period, utc_offset_hours: FloatArray) -> IntArray:
    """UTC event times whose local wall clock follows the daily and weekly shape.

    Sampling in local time puts the night lull at night where each cardholder lives, not at UTC night.
    A local time that falls outside the period in UTC wraps around by the period length.
    """
    n = len(utc_offset_hours)
    hours = -(-period.length_ms // HOUR_MS)
    absolute_hour = period.start_ms // HOUR_MS + np.arange(hours)
    hour_of_day = absolute_hour % 24
    day_of_week = (absolute_hour // 24 + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    weight = np.where(day_of_week >= 5, _WEEKEND_HOURS[hour_of_day], _WEEKDAY_HOURS[hour_of_day])
    weight = weight * _DAY_FACTOR[day_of_week]
    cum = np.cumsum(weight)
    slot = np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), hours - 1)
    local = period.start_ms + slot * HOUR_MS + (rng.random(n) * HOUR_MS).astype(np.int64)
    utc = local - np.round(utc_offset_hours * HOUR_MS).astype(np.int64)
    return np.asarray(period.start_ms + (utc - period.start_ms) % period.length_ms, dtype=np.int64)


def _choose_where(rng: np.random.Generator, p: float, n: int) -> BoolArray:
    return rng.random(n) < p


def _cardholder_devices_and_ips(rng: np.random.Generator, pop: Population, rows: Rows, customer: IntArray) -> None:
    """Fill device and IP of a cardholder's own online traffic: laptop or shared tablet for web shops,
    phone for apps; home broadband mostly, the carrier's NAT on mobile, sometimes work or a café."""
    n = len(rows)
    u = rng.random(n)
    laptop, tablet, phone = (
        pop.customer_laptop[customer],
        pop.customer_tablet[customer],
        pop.customer_phone[customer],
    )
    web_device = np.where((laptop >= 0) & (u < 0.6), laptop, np.where((tablet >= 0) & (u < 0.75), tablet, phone))
    app_device = np.where((tablet >= 0) & (u < 0.12), tablet, phone)
    ecom, in_app = rows.channel == ECOM, rows.channel == IN_APP
    rows.device = np.where(ecom & _choose_where(rng, 0.92, n), web_device, np.where(in_app, app_device, -1))
    home = pop.customer_home_ip[customer]
    carrier = pop.carrier_ips(rng, customer)
    public = pop.public_ips(rng, pop.city_country[pop.customer_city[customer]])
    v = rng.random(n)
    web_ip = np.where(v < 0.72, home, np.where(v < 0.86, carrier, public))
    app_ip = np.where(v < 0.6, carrier, home)
    has_ip = _choose_where(rng, 0.97, n)
    rows.ip = np.where(ecom & has_ip, web_ip, np.where(in_app & has_ip, app_ip, -1))


def _locate(
    rng: np.random.Generator, pop: Population, rows: Rows, center_lat: FloatArray, center_lon: FloatArray
) -> None:
    """Card-present rows sit at the terminal; app rows carry the phone's GPS (usually); web rows an IP
    geolocation (half the time, coarse); phone orders no location at all."""
    n = len(rows)
    app_lat, app_lon = jitter(rng, center_lat, center_lon, 3.0)
    web_lat, web_lon = jitter(rng, center_lat, center_lon, 8.0)
    present = rows.merchant >= 0
    terminal = (rows.channel == POS) | (rows.channel == ATM_CHANNEL)
    app = (rows.channel == IN_APP) & _choose_where(rng, 0.85, n)
    web = (rows.channel == ECOM) & _choose_where(rng, 0.5, n)
    m = np.where(present, rows.merchant, 0)
    lat = np.where(terminal, pop.merchant_lat[m], np.where(app, app_lat, np.where(web, web_lat, np.nan)))
    lon = np.where(terminal, pop.merchant_lon[m], np.where(app, app_lon, np.where(web, web_lon, np.nan)))
    rows.lat, rows.lon = np.round(lat, 5).astype(np.float64), np.round(lon, 5).astype(np.float64)


def _online_channel(rng: np.random.Generator, n: int) -> IntArray:
    u = rng.random(n)
    return np.where(u < 0.6, ECOM, np.where(u < 0.96, IN_APP, MOTO)).astype(np.int64)


def _fill(primary: IntArray, fallback: IntArray) -> IntArray:
    return np.where(primary >= 0, primary, fallback)


def _population_cards(rng: np.random.Generator, pop: Population, n: int, *, distinct: bool = False) -> IntArray:
    """Cards weighted by how much they are used (busy cards are the ones that get stolen or taken over)."""
    weight = pop.card_activity[: pop.n_population_cards]
    if distinct and n <= pop.n_population_cards // 2:
        return rng.choice(pop.n_population_cards, n, replace=False, p=weight / weight.sum()).astype(np.int64)
    cum = np.cumsum(weight)
    drawn = np.searchsorted(cum, rng.random(n) * cum[-1], side="right")
    return np.asarray(np.minimum(drawn, len(cum) - 1), dtype=np.int64)


# --- everyday traffic -----------------------------------------------------------------------------------


def legit_rows(rng: np.random.Generator, pop: Population, n: int, period: Period) -> Rows:
    """Cardholders at home: favourite shops, the usual ATM, domestic web shops, at local-time hours."""
    rows = Rows.empty(n, LEGIT)
    card = _population_cards(rng, pop, n)
    city = pop.card_city[card]
    country = pop.city_country[city]
    rows.card = card
    rows.timestamp_ms = draw_local_times(rng, period, pop.city_utc_offset_hours[city])
    mode = (rng.random(n)[:, None] > pop.card_channel_mix[card]).sum(axis=1)
    favourite = rng.random(n)
    fav_physical = pop.card_fav_physical[card, rng.choice(8, n, p=_FAV_PHYSICAL_P)]
    fav_online = pop.card_fav_online[card, rng.choice(5, n, p=_FAV_ONLINE_P)]
    fav_atm = pop.card_fav_atm[card, rng.integers(0, 2, n)]
    physical = np.where(favourite < 0.72, fav_physical, pop.physical_by_city.sample(rng, city))
    domestic = _fill(pop.online_by_country.sample(rng, country), pop.online_any.sample(rng, np.zeros(n, np.int64)))
    other_online = np.where(rng.random(n) < 0.75, domestic, pop.online_any.sample(rng, np.zeros(n, np.int64)))
    online = np.where(favourite < 0.6, fav_online, other_online)
    atm = np.where(favourite < 0.8, fav_atm, pop.atm_by_city.sample(rng, city))
    rows.merchant = np.where(mode == 0, physical, np.where(mode == 1, online, atm))
    rows.channel = np.where(mode == 0, POS, np.where(mode == 1, _online_channel(rng, n), ATM_CHANNEL))
    rows.amount = draw_amounts(rng, pop, rows.merchant, pop.card_level[card])
    customer = pop.card_customer[card]
    _cardholder_devices_and_ips(rng, pop, rows, customer)
    _churn_devices(rng, pop, rows, customer, period)
    _locate(rng, pop, rows, pop.customer_lat[customer], pop.customer_lon[customer])
    return rows


def _churn_devices(rng: np.random.Generator, pop: Population, rows: Rows, customer: IntArray, period: Period) -> None:
    """New phones from a date on, and one-off web fingerprints: legitimate devices new to the card."""
    switch_ms = period.start_ms + (rng.random(len(pop.customer_ids)) * period.length_ms).astype(np.int64)
    new_phone = pop.customer_new_phone[customer]
    switched = (
        (new_phone >= 0) & (rows.device == pop.customer_phone[customer]) & (rows.timestamp_ms >= switch_ms[customer])
    )
    rows.device = np.where(switched, new_phone, rows.device)
    fresh = np.flatnonzero((rows.channel == ECOM) & (rows.device >= 0) & (rng.random(len(rows)) < 0.03))
    pool = pop.fresh_fingerprints
    rows.device[fresh] = pool[np.arange(len(fresh)) % len(pool)]


# --- legitimate look-alikes -----------------------------------------------------------------------------


def apply_travel(rng: np.random.Generator, pop: Population, rows: Rows, target_rows: int, period: Period) -> None:
    """Send some cardholders on a trip: their transactions during it move to a far city.

    Departure to arrival takes the flight time (800 km/h plus airports) and nothing is paid in between,
    so the implied speed between the last purchase at home and the first abroad stays plausible; this
    is what tells a traveller from an account takeover, not the distance.
    """
    if target_rows <= 0 or period.days < 4:
        return
    n_pop = pop.n_population_cards
    rate_per_ms = len(rows) * pop.card_activity[:n_pop] / pop.card_activity[:n_pop].sum() / period.length_ms
    scale = min(1.0, period.days / 20)
    rows_per_trip = len(rows) / n_pop / period.days * 6.0 * scale
    batch = min(n_pop, max(16, int(3 * target_rows / max(rows_per_trip, 0.5))))
    card = _population_cards(rng, pop, batch)
    card, first = np.unique(card, return_index=True)
    card = card[np.argsort(first)]
    duration = (rng.uniform(2.0, 10.0, len(card)) * scale * DAY_MS).astype(np.int64)
    home = pop.card_city[card]
    destination = (home + rng.integers(1, pop.n_cities, len(card))) % pop.n_cities
    distance = haversine_km(
        pop.city_lat[home], pop.city_lon[home], pop.city_lat[destination], pop.city_lon[destination]
    )
    flight = ((distance / 800.0 + 1.5) * HOUR_MS).astype(np.int64)
    # a day free at each end, room for the flight back and for rows pushed past it, and a trip long
    # enough that rows pushed past the outbound flight still land inside it
    room = period.end_ms - duration - 2 * flight - DAY_MS - (period.start_ms + DAY_MS)
    fits = (room > 0) & (duration >= 3 * flight)
    keep = fits & (np.cumsum(np.where(fits, rate_per_ms[card] * duration, 0.0)) <= target_rows)
    keep[np.argmax(fits)] |= bool(fits.any())  # at least one trip, however busy the card
    card, duration, destination, flight, room = (a[keep] for a in (card, duration, destination, flight, room))
    depart = period.start_ms + DAY_MS + (rng.random(len(card)) * room).astype(np.int64)
    back = depart + duration

    trip = np.full(pop.n_population_cards, -1, np.int64)
    trip[card] = np.arange(len(card))
    t = trip[np.where(rows.card < n_pop, rows.card, 0)]
    sel = np.flatnonzero((t >= 0) & (rows.card < n_pop) & (rows.scenario == LEGIT))
    t = t[sel]
    ts = rows.timestamp_ms[sel]
    in_flight = ((ts >= depart[t]) & (ts < depart[t] + flight[t])) | ((ts >= back[t]) & (ts < back[t] + flight[t]))
    ts = np.where(in_flight, ts + flight[t], ts)
    rows.timestamp_ms[sel] = ts
    away = (ts >= depart[t] + flight[t]) & (ts < back[t])
    sel, t = sel[away], t[away]
    sub = rows.take(sel)
    where = destination[t]
    where_country = pop.city_country[where]
    sub.merchant = np.where(
        sub.channel == POS, pop.travel_by_city.sample(rng, where),
        np.where(sub.channel == ATM_CHANNEL, pop.atm_by_city.sample(rng, where), sub.merchant),
    )  # fmt: skip
    redraw = (sub.channel == POS) | (sub.channel == ATM_CHANNEL)
    new_amount = draw_amounts(rng, pop, sub.merchant, pop.card_level[sub.card])
    sub.amount = np.where(redraw, new_amount, sub.amount)
    # hotel wifi for the web; an app on roaming keeps the home carrier's address (traffic is tunnelled home)
    sub.ip = np.where((sub.channel == ECOM) & (sub.ip >= 0), pop.public_ips(rng, where_country), sub.ip)
    _locate(rng, pop, sub, pop.city_lat[where], pop.city_lon[where])
    sub.scenario[:] = LEGIT_TRAVEL
    for f in ("merchant", "amount", "ip", "lat", "lon", "scenario"):
        getattr(rows, f)[sel] = getattr(sub, f)


def apply_big_purchases(rng: np.random.Generator, pop: Population, rows: Rows, target_rows: int) -> None:
    """One large amount at a merchant the card has already paid at, through the same channel.

    Among the card's previous few transactions the most expensive category is chosen: the electronics
    shop for a television, the travel agent for a holiday.
    """
    if target_rows <= 0:
        return
    order = np.lexsort((rows.timestamp_ms, rows.card))
    card, channel, scenario = rows.card[order], rows.channel[order], rows.scenario[order]
    merchant = rows.merchant[order]
    eligible = np.flatnonzero((scenario == LEGIT) & (channel != ATM_CHANNEL) & (channel != MOTO))
    if len(eligible) == 0:
        return
    candidates = rng.choice(eligible, min(len(eligible), 3 * target_rows), replace=False)
    best = np.full(len(candidates), -1, np.int64)
    best_median = np.zeros(len(candidates))
    for back in range(1, 6):
        prev = candidates - back
        ok = prev >= 0
        prev = np.where(ok, prev, 0)
        ok &= (card[prev] == card[candidates]) & (channel[prev] == channel[candidates]) & (scenario[prev] == LEGIT)
        median = pop.category_median_eur[pop.merchant_category[merchant[prev]]]
        better = ok & (median > best_median)
        best = np.where(better, prev, best)
        best_median = np.where(better, median, best_median)
    found = best >= 0
    chosen, source = candidates[found], best[found]
    # a source row must stay as it was, or its merchant would no longer be one the card used before
    independent = ~np.isin(source, chosen)
    chosen, source = chosen[independent][:target_rows], source[independent][:target_rows]
    index = order[chosen]
    usual = merchant[source]
    rows.merchant[index] = usual
    rows.amount[index] = draw_amounts(
        rng, pop, usual, pop.card_level[rows.card[index]], log_multiplier=math.log(5.0), extra_sigma=0.3
    )
    terminal = rows.channel[index] == POS
    rows.lat[index] = np.where(terminal, pop.merchant_lat[usual], rows.lat[index])
    rows.lon[index] = np.where(terminal, pop.merchant_lon[usual], rows.lon[index])
    rows.scenario[index] = LEGIT_BIG_PURCHASE


# --- fraud ----------------------------------------------------------------------------------------------


def card_testing_rows(rng: np.random.Generator, pop: Population, target_rows: int, period: Period) -> Rows:
    """Bots checking which card numbers work: small amounts on many cards within minutes, at one web shop.

    Every burst comes from one IP, one device or both (some bots rotate proxies but keep the device).
    Four in ten are BIN attacks: cards sharing one BIN, half of them numbers guessed within the range.
    A card may be retried with another small amount.
    """
    sizes = incident_sizes(rng, target_rows, _lognormal_int(rng, 20, 0.6, 6, 150))
    n, k = int(sizes.sum()), len(sizes)
    rows = Rows.empty(n, CARD_TESTING)
    if n == 0:
        return rows
    incident = np.repeat(np.arange(k), sizes)
    start = np.cumsum(sizes) - sizes
    duration = np.clip(rng.lognormal(math.log(8 * MINUTE_MS), 0.7, k), MINUTE_MS, 45 * MINUTE_MS)
    t0 = period.start_ms + (rng.random(k) * max(1, period.length_ms - duration.max())).astype(np.int64)
    rows.timestamp_ms = t0[incident] + (rng.random(n) * duration[incident]).astype(np.int64)
    merchant = pop.testing_any.sample(rng, np.zeros(k, np.int64))
    rows.merchant = merchant[incident]
    rows.channel[:] = ECOM
    sharing = rng.choice(3, k, p=[0.5, 0.3, 0.2])  # 0: IP and device, 1: IP only, 2: device, rotating IPs
    # each burst its own address and device (while the pools last); rotating bots draw from a separate
    # slice, and the other half of the attacker devices is left to account takeovers
    cut = len(pop.proxy_ips) * 3 // 4
    shared_ips, rotating_ips = pop.proxy_ips[:cut], pop.proxy_ips[cut:]
    devices = pop.attacker_devices[::2]
    ip = rng.choice(shared_ips, k, replace=k > len(shared_ips))
    device = rng.choice(devices, k, replace=k > len(devices))
    rotating = rng.choice(rotating_ips, n)
    rows.ip = np.where(sharing[incident] == 2, rotating, ip[incident])
    rows.device = np.where(sharing[incident] == 1, -1, device[incident])

    card = rng.integers(0, pop.n_population_cards, n).astype(np.int64)
    bin_attack = rng.random(k) < 0.4
    attacked_bin = pop.card_bin[rng.integers(0, pop.n_population_cards, k)]
    in_bin_attack = bin_attack[incident]
    row_bin = attacked_bin[incident]
    existing = pop.cards_by_bin.sample(rng, row_bin)
    guessed = in_bin_attack & ((rng.random(n) < 0.5) | (existing < 0))
    card = np.where(in_bin_attack, existing, card)
    if guessed.any():
        card[guessed] = pop.add_enumerated_cards(row_bin[guessed])
    retry = (rng.random(n) < 0.3) & (np.arange(n) != start[incident])
    carried = np.maximum.accumulate(np.where(retry, 0, np.arange(n)))
    rows.card = card[carried]

    u = rng.random(n)
    eur = np.where(
        u < 0.45, rng.uniform(0.5, 5.0, n),
        np.where(u < 0.8, rng.choice(np.array([0.5, 1.0, 1.0, 2.0, 5.0]), n), rng.uniform(5.0, 15.0, n)),
    )  # fmt: skip
    currency = pop.merchant_currency(rows.merchant)
    scale = 10.0 ** pop.currency_decimals[currency]
    rows.amount = np.maximum(np.round(eur * pop.currency_fx[currency] * scale), 1.0) / scale
    proxy = np.searchsorted(pop.proxy_ips, np.where(rows.ip >= 0, rows.ip, pop.proxy_ips[0]))
    city = pop.proxy_city[proxy]
    _locate(rng, pop, rows, pop.city_lat[city], pop.city_lon[city])
    return rows


def account_takeover_rows(rng: np.random.Generator, pop: Population, target_rows: int, period: Period) -> Rows:
    """Someone else logs into the cardholder's account: a device the card has never used, in another
    city (mostly abroad), buying high-value goods (electronics, jewellery, gift cards) within hours."""
    sizes = incident_sizes(rng, target_rows, lambda m: np.minimum(1 + rng.poisson(2.0, m), 8).astype(np.int64))
    n, k = int(sizes.sum()), len(sizes)
    rows = Rows.empty(n, ACCOUNT_TAKEOVER)
    if n == 0:
        return rows
    incident = np.repeat(np.arange(k), sizes)
    victim = _population_cards(rng, pop, k, distinct=True)
    span = np.clip(rng.lognormal(math.log(90 * MINUTE_MS), 0.8, k), 5 * MINUTE_MS, 10 * HOUR_MS)
    t0 = period.start_ms + (rng.random(k) * max(1, period.length_ms - span.max())).astype(np.int64)
    rows.timestamp_ms = t0[incident] + (rng.random(n) * span[incident]).astype(np.int64)
    home_country = pop.home_country(victim)
    attacker_city = _far_cities(rng, pop, pop.card_city[victim], domestic_share=0.3)
    attacker_country = pop.city_country[attacker_city]
    ip = np.where(rng.random(k) < 0.6, pop.public_ips(rng, attacker_country), rng.choice(pop.proxy_ips, k))
    device = rng.choice(pop.attacker_devices[1::2], k)
    channel = np.where(rng.random(k) < 0.6, ECOM, IN_APP)
    rows.card = victim[incident]
    rows.ip, rows.device, rows.channel = ip[incident], device[incident], channel[incident].astype(np.int64)
    domestic = _fill(
        pop.takeover_by_country.sample(rng, home_country[incident]),
        pop.takeover_any.sample(rng, np.zeros(n, np.int64)),
    )
    rows.merchant = np.where(rng.random(n) < 0.7, domestic, pop.takeover_any.sample(rng, np.zeros(n, np.int64)))
    rows.amount = draw_amounts(
        rng, pop, rows.merchant, pop.card_level[rows.card], log_multiplier=math.log(3.5), extra_sigma=0.3
    )
    where = attacker_city[incident]
    _locate(rng, pop, rows, pop.city_lat[where], pop.city_lon[where])
    return rows


def _far_cities(rng: np.random.Generator, pop: Population, home: IntArray, *, domestic_share: float) -> IntArray:
    """Another city than home: in the same country for `domestic_share` of them (where it has another
    city; attackers rent in-country proxies too), abroad for the rest."""
    n = len(home)
    home_country = pop.city_country[home]
    city = rng.integers(0, pop.n_cities, n)
    for _ in range(16):
        same = pop.city_country[city] == home_country
        city[same] = rng.integers(0, pop.n_cities, int(same.sum()))
    same_country = [
        np.flatnonzero((pop.city_country == pop.city_country[c]) & (np.arange(pop.n_cities) != c))
        for c in range(pop.n_cities)
    ]
    width = max(1, max(len(o) for o in same_country))
    others = np.full((pop.n_cities, width), -1, np.int64)
    for c, o in enumerate(same_country):
        others[c, : len(o)] = o
    count = np.array([len(o) for o in same_country], dtype=np.int64)
    pick = (rng.random(n) * np.maximum(count[home], 1)).astype(np.int64)
    domestic = others[home, pick]
    return np.where((rng.random(n) < domestic_share) & (domestic >= 0), domestic, city)


@dataclass(frozen=True)
class CompromisedWindows:
    """Per merchant index, the [start, end) event-time window during which all its transactions are fraud."""

    merchant: IntArray
    start_ms: IntArray
    end_ms: IntArray

    def contains(self, merchant: IntArray, timestamp_ms: IntArray, n_merchants: int) -> BoolArray:
        lo = np.full(n_merchants, -1, np.int64)
        hi = np.full(n_merchants, -1, np.int64)
        lo[self.merchant], hi[self.merchant] = self.start_ms, self.end_ms
        m = np.where(merchant >= 0, merchant, 0)
        return np.asarray((merchant >= 0) & (lo[m] <= timestamp_ms) & (timestamp_ms < hi[m]))


def compromised_merchant_rows(
    rng: np.random.Generator, pop: Population, target_rows: int, period: Period
) -> tuple[Rows, CompromisedWindows]:
    """A shop whose terminal is run by fraudsters for some hours: cloned cards from anywhere swiped (or
    keyed in as phone orders) at fraudster-chosen amounts. Its genuine customers' transactions in that
    window are fraud too (they are the skimmed cards), which the caller relabels with the windows."""
    sizes = incident_sizes(rng, target_rows, _lognormal_int(rng, 35, 0.6, 8, 200))
    physical = np.flatnonzero(pop.merchant_kind == PHYSICAL)
    weight = np.sqrt(pop.merchant_popularity[physical])
    k = min(len(sizes), len(physical))
    sizes = sizes[:k]
    n = int(sizes.sum())
    rows = Rows.empty(n, COMPROMISED_MERCHANT)
    merchant = rng.choice(physical, k, replace=False, p=weight / weight.sum()).astype(np.int64)
    duration = np.clip(rng.lognormal(math.log(6 * HOUR_MS), 0.6, k), HOUR_MS, 48 * HOUR_MS).astype(np.int64)
    duration = np.minimum(duration, period.length_ms)
    lo = period.start_ms + (rng.random(k) * (period.length_ms - duration)).astype(np.int64)
    windows = CompromisedWindows(merchant=merchant, start_ms=lo, end_ms=lo + duration)
    if n == 0:
        return rows, windows
    incident = np.repeat(np.arange(k), sizes)
    rows.timestamp_ms = lo[incident] + (rng.random(n) * duration[incident]).astype(np.int64)
    rows.merchant = merchant[incident]
    rows.card = rng.integers(0, pop.n_population_cards, n).astype(np.int64)
    rows.channel = np.where(rng.random(n) < 0.75, POS, MOTO).astype(np.int64)
    rows.amount = draw_amounts(rng, pop, rows.merchant, np.ones(n), log_multiplier=math.log(2.2))
    city = pop.merchant_city[rows.merchant]
    _locate(rng, pop, rows, pop.city_lat[city], pop.city_lon[city])
    return rows, windows


def stolen_card_spree_rows(rng: np.random.Generator, pop: Population, target_rows: int, period: Period) -> Rows:
    """A thief with the physical card, in daytime in the owner's city: shop after new shop and a cash
    withdrawal or two, amounts a few times what the owner spends, until the card is blocked."""
    sizes = incident_sizes(rng, target_rows, _lognormal_int(rng, 7, 0.4, 3, 20))
    n, k = int(sizes.sum()), len(sizes)
    rows = Rows.empty(n, SPREE)
    if n == 0:
        return rows
    incident = np.repeat(np.arange(k), sizes)
    victim = _population_cards(rng, pop, k, distinct=True)
    city = pop.card_city[victim]
    span = np.clip(rng.lognormal(math.log(2.5 * HOUR_MS), 0.5, k), 30 * MINUTE_MS, 8 * HOUR_MS).astype(np.int64)
    day = rng.integers(0, max(1, int(period.days)), k)
    local_hour = rng.uniform(9.0, 19.0, k)
    t0 = period.start_ms + day * DAY_MS + ((local_hour - pop.city_utc_offset_hours[city]) * HOUR_MS).astype(np.int64)
    t0 = np.clip(t0, period.start_ms, period.end_ms - span - 1)
    rows.timestamp_ms = t0[incident] + (rng.random(n) * span[incident]).astype(np.int64)
    rows.card = victim[incident]
    row_city = city[incident]
    cash = rng.random(n) < 0.18

    def draw(rows_city: IntArray, rows_cash: BoolArray) -> IntArray:
        return np.where(rows_cash, pop.atm_by_city.sample(rng, rows_city), pop.spree_by_city.sample(rng, rows_city))

    rows.merchant = _redraw_repeats(incident, draw(row_city, cash), lambda i: draw(row_city[i], cash[i]))
    rows.channel = np.where(pop.merchant_category[rows.merchant] == ATM_CATEGORY, ATM_CHANNEL, POS).astype(np.int64)
    rows.amount = draw_amounts(rng, pop, rows.merchant, pop.card_level[rows.card], log_multiplier=math.log(3.0))
    _locate(rng, pop, rows, pop.city_lat[row_city], pop.city_lon[row_city])
    return rows


def _redraw_repeats(incident: IntArray, merchant: IntArray, draw: Callable[[IntArray], IntArray]) -> IntArray:
    """Draw again where an incident already has the merchant: a thief moves on to the next shop."""
    merchant = merchant.copy()
    for _ in range(6):
        order = np.lexsort((merchant, incident))
        repeat = np.zeros(len(merchant), dtype=bool)
        repeat[order[1:]] = (incident[order[1:]] == incident[order[:-1]]) & (
            merchant[order[1:]] == merchant[order[:-1]]
        )
        index = np.flatnonzero(repeat)
        if len(index) == 0:
            break
        merchant[index] = draw(index)
    return merchant


def label_delays_ms(rng: np.random.Generator, scenario: IntArray) -> IntArray:
    """Days until fraud is known: some the same week (cardholder calls the bank, the issuer spots card
    testing), most as a chargeback weeks later (lognormal, median three weeks, capped at 120 days)."""
    n = len(scenario)
    quick = rng.random(n) < np.where(scenario == CARD_TESTING, 0.45, 0.25)
    days = np.where(quick, rng.uniform(0.2, 4.0, n), rng.lognormal(math.log(21.0), 0.45, n))
    return (np.clip(days, 0.1, 120.0) * DAY_MS).astype(np.int64)
