"""The synthetic world the generator draws from: cities, merchant categories, cards, customers, devices,
IPs and merchants.

Everything is a struct of numpy arrays indexed by entity number, so the generator draws a million
transactions with fancy indexing instead of a Python loop. Entity ids are opaque tokens (a bijective
scramble of the index), never sequential numbers that a model could learn ages from.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ObjectArray = npt.NDArray[np.object_]

PHYSICAL, ONLINE, ATM = 0, 1, 2
EARTH_RADIUS_KM = 6371.0
#: Amounts are drawn in euros and capped there, so no currency conversion can exceed the wire maximum.
MAX_AMOUNT_EUR = 20_000.0


@dataclass(frozen=True)
class City:
    name: str
    country: str
    lat: float
    lon: float
    utc_offset_hours: float
    weight: float  # relative share of cardholders and merchants


CITIES: Final[tuple[City, ...]] = (
    City("new_york", "US", 40.71, -74.01, -5, 9),
    City("chicago", "US", 41.88, -87.63, -6, 5),
    City("los_angeles", "US", 34.05, -118.24, -8, 7),
    City("houston", "US", 29.76, -95.37, -6, 4),
    City("miami", "US", 25.76, -80.19, -5, 3),
    City("toronto", "CA", 43.65, -79.38, -5, 4),
    City("vancouver", "CA", 49.28, -123.12, -8, 2),
    City("london", "GB", 51.51, -0.13, 0, 8),
    City("manchester", "GB", 53.48, -2.24, 0, 3),
    City("berlin", "DE", 52.52, 13.40, 1, 5),
    City("munich", "DE", 48.14, 11.58, 1, 3),
    City("hamburg", "DE", 53.55, 9.99, 1, 3),
    City("paris", "FR", 48.86, 2.35, 1, 7),
    City("lyon", "FR", 45.76, 4.84, 1, 2),
    City("madrid", "ES", 40.42, -3.70, 1, 4),
    City("barcelona", "ES", 41.39, 2.17, 1, 3),
    City("rome", "IT", 41.90, 12.50, 1, 3),
    City("milan", "IT", 45.46, 9.19, 1, 3),
    City("amsterdam", "NL", 52.37, 4.90, 1, 3),
    City("sao_paulo", "BR", -23.55, -46.63, -3, 5),
    City("rio_de_janeiro", "BR", -22.91, -43.17, -3, 3),
    City("mexico_city", "MX", 19.43, -99.13, -6, 4),
    City("tokyo", "JP", 35.68, 139.69, 9, 6),
    City("osaka", "JP", 34.69, 135.50, 9, 3),
    City("sydney", "AU", -33.87, 151.21, 10, 3),
    City("melbourne", "AU", -37.81, 144.96, 10, 3),
    City("mumbai", "IN", 19.08, 72.88, 5.5, 4),
    City("delhi", "IN", 28.61, 77.21, 5.5, 4),
    City("singapore", "SG", 1.35, 103.82, 8, 3),
    City("dubai", "AE", 25.20, 55.27, 4, 2),
    City("johannesburg", "ZA", -26.20, 28.05, 2, 2),
)

COUNTRY_CURRENCY: Final[dict[str, str]] = {
    "US": "USD", "CA": "CAD", "GB": "GBP", "DE": "EUR", "FR": "EUR", "ES": "EUR", "IT": "EUR", "NL": "EUR",
    "BR": "BRL", "MX": "MXN", "JP": "JPY", "AU": "AUD", "IN": "INR", "SG": "SGD", "AE": "AED", "ZA": "ZAR",
}  # fmt: skip
#: Units of each currency per euro: a coffee in Tokyo costs hundreds of yen.
EUR_FX: Final[dict[str, float]] = {
    "USD": 1.08, "CAD": 1.5, "GBP": 0.85, "EUR": 1.0, "BRL": 5.6, "MXN": 19.5, "JPY": 162.0, "AUD": 1.65,
    "INR": 90.0, "SGD": 1.45, "AED": 3.97, "ZAR": 20.0,
}  # fmt: skip
ZERO_DECIMAL_CURRENCIES: Final = frozenset({"JPY"})
#: Countries that host the big cross-border online merchants.
GLOBAL_ONLINE_COUNTRIES: Final = ("US", "GB", "NL", "SG")


@dataclass(frozen=True)
class Category:
    """A merchant category: its amount distribution (lognormal, in euros) and how scenarios favour it."""

    name: str
    median_eur: float
    sigma: float
    physical_share: float
    online_share: float
    travel_affinity: float = 1.0
    spree_affinity: float = 1.0
    takeover_affinity: float = 0.0
    testing_affinity: float = 0.0


CATEGORIES: Final[tuple[Category, ...]] = (
    Category("grocery", 38, 0.75, 0.22, 0.03, travel_affinity=0.6, spree_affinity=1.0),
    Category("restaurants", 32, 0.7, 0.16, 0.04, travel_affinity=2.5, spree_affinity=0.3),
    Category("cafe", 6.5, 0.5, 0.09, 0.0, travel_affinity=1.5, spree_affinity=0.1),
    Category("fuel", 55, 0.45, 0.08, 0.0, travel_affinity=0.5, spree_affinity=1.5),
    Category("pharmacy", 22, 0.7, 0.06, 0.02, travel_affinity=0.7, spree_affinity=0.5),
    Category("transport", 9, 0.8, 0.07, 0.06, travel_affinity=2.5, spree_affinity=0.2),
    Category("clothing", 65, 0.8, 0.08, 0.12, travel_affinity=1.2, spree_affinity=1.5, takeover_affinity=1),
    Category("electronics", 160, 1.0, 0.05, 0.10, travel_affinity=0.6, spree_affinity=4, takeover_affinity=3),
    Category("jewelry", 280, 1.0, 0.02, 0.02, spree_affinity=5, takeover_affinity=3),
    Category("entertainment", 40, 0.8, 0.05, 0.06, travel_affinity=1.5, spree_affinity=0.5),
    Category("travel", 320, 0.9, 0.04, 0.16, travel_affinity=3, spree_affinity=0.3, takeover_affinity=2),
    Category("online_services", 14, 0.8, 0.0, 0.20, takeover_affinity=0.3, testing_affinity=3),
    Category("gaming", 22, 0.9, 0.0, 0.10, takeover_affinity=1, testing_affinity=2),
    Category("gift_cards", 60, 0.6, 0.01, 0.06, spree_affinity=3, takeover_affinity=4, testing_affinity=1),
    Category("charity", 25, 0.9, 0.0, 0.03, testing_affinity=3),
    Category("atm", 120, 0.6, 0.0, 0.0),
)
ATM_CATEGORY: Final = len(CATEGORIES) - 1

#: First octets of IPv4 space handed out to synthetic countries, proxies and clouds (no private ranges).
_PUBLIC_OCTETS: Final = tuple(o for o in range(11, 223) if o not in {100, 127, 169, 172, 192, 198, 203})


class GroupSampler:
    """Draws one member of a given group, weighted: e.g. a merchant of a city by popularity.

    One cumulative-weight array over members sorted by group; a draw is a uniform number inside the
    group's slice of it and a binary search, so millions of draws over thousands of groups stay vectorised.
    """

    def __init__(self, groups: IntArray, weights: FloatArray, n_groups: int, ids: IntArray) -> None:
        order = np.argsort(groups, kind="stable")
        sorted_groups = groups[order]
        self._members = ids[order]
        self._cum = np.cumsum(weights[order])
        cum0 = np.concatenate([[0.0], self._cum])
        wanted = np.arange(n_groups)
        self._first = np.searchsorted(sorted_groups, wanted, side="left").astype(np.int64)
        self._last = np.searchsorted(sorted_groups, wanted, side="right").astype(np.int64)
        self._lo = cum0[self._first]
        self._hi = cum0[self._last]

    def has_members(self, groups: IntArray) -> BoolArray:
        return np.asarray(self._hi[groups] > self._lo[groups])

    def sample(self, rng: np.random.Generator, groups: IntArray) -> IntArray:
        """One member per entry of `groups`; -1 where the group has no member with positive weight."""
        lo, hi = self._lo[groups], self._hi[groups]
        u = lo + rng.random(len(groups)) * (hi - lo)
        pos = np.searchsorted(self._cum, u, side="right")
        pos = np.clip(pos, self._first[groups], np.maximum(self._last[groups] - 1, self._first[groups]))
        pos = np.minimum(pos, len(self._members) - 1)
        out = self._members[pos].astype(np.int64) if len(self._members) else np.zeros(len(groups), np.int64)
        out[hi <= lo] = -1
        return out


@dataclass
class Population:
    """Every entity of the synthetic world as parallel arrays. Index -1 means "none" everywhere."""

    # geography
    city_lat: FloatArray
    city_lon: FloatArray
    city_utc_offset_hours: FloatArray
    city_country: IntArray
    countries: tuple[str, ...]
    country_currency: IntArray
    currencies: tuple[str, ...]
    currency_fx: FloatArray
    currency_decimals: IntArray
    currency_cash_unit: FloatArray
    category_median_eur: FloatArray
    category_sigma: FloatArray
    # BINs (issuer ranges) and their issuing country
    bins: ObjectArray
    bin_country: IntArray
    # customers and what they transact from
    customer_ids: ObjectArray
    customer_city: IntArray
    customer_lat: FloatArray
    customer_lon: FloatArray
    customer_phone: IntArray
    customer_laptop: IntArray
    customer_tablet: IntArray
    customer_new_phone: IntArray  # the phone that replaces theirs during the period, or -1
    customer_home_ip: IntArray
    customer_carrier: IntArray
    # cards: the population's first, then cards enumerated by BIN attacks (see add_enumerated_cards)
    card_ids: ObjectArray
    card_customer: IntArray
    card_bin: IntArray
    card_city: IntArray
    card_level: FloatArray
    card_activity: FloatArray
    card_channel_mix: FloatArray  # cumulative probabilities of physical / online / ATM, shape (cards, 3)
    card_fav_physical: IntArray  # shape (cards, 8), most used first
    card_fav_online: IntArray  # shape (cards, 5)
    card_fav_atm: IntArray  # shape (cards, 2)
    n_population_cards: int
    # devices: customers' own, one-off web fingerprints, then a pool only attackers use
    device_ids: ObjectArray
    fresh_fingerprints: IntArray
    attacker_devices: IntArray
    # IPs
    ips: ObjectArray
    carrier_ip_first: IntArray
    carrier_ip_count: IntArray
    country_public_ip_first: IntArray
    country_public_ip_count: IntArray
    proxy_ips: IntArray
    proxy_city: IntArray
    # merchants
    merchant_ids: ObjectArray
    merchant_category: IntArray
    merchant_kind: IntArray
    merchant_city: IntArray
    merchant_country: IntArray
    merchant_lat: FloatArray
    merchant_lon: FloatArray
    merchant_popularity: FloatArray
    physical_by_city: GroupSampler
    atm_by_city: GroupSampler
    online_by_country: GroupSampler
    online_any: GroupSampler
    travel_by_city: GroupSampler
    spree_by_city: GroupSampler
    takeover_by_country: GroupSampler
    takeover_any: GroupSampler
    testing_any: GroupSampler
    cards_by_bin: GroupSampler
    _id_key: int = 0

    @property
    def n_cities(self) -> int:
        return len(self.city_lat)

    def card_country(self, cards: IntArray) -> IntArray:
        return self.bin_country[self.card_bin[cards]]

    def home_country(self, cards: IntArray) -> IntArray:
        """Where the cardholder lives (may differ from the issuing country: expats, foreign cards)."""
        return self.city_country[self.card_city[cards]]

    def merchant_currency(self, merchants: IntArray) -> IntArray:
        return self.country_currency[self.merchant_country[merchants]]

    def add_enumerated_cards(self, bins: IntArray) -> IntArray:
        """Append cards that exist only in a BIN attack: numbers guessed within a BIN, no customer."""
        n, start = len(bins), len(self.card_ids)
        new = np.arange(start, start + n, dtype=np.int64)
        self.card_ids = np.concatenate([self.card_ids, opaque_ids("card_", start, n, self._id_key)])
        self.card_customer = np.concatenate([self.card_customer, np.full(n, -1, np.int64)])
        self.card_bin = np.concatenate([self.card_bin, bins.astype(np.int64)])
        self.card_city = np.concatenate([self.card_city, np.full(n, -1, np.int64)])
        self.card_level = np.concatenate([self.card_level, np.ones(n)])
        self.card_activity = np.concatenate([self.card_activity, np.zeros(n)])
        return new

    def public_ips(self, rng: np.random.Generator, countries: IntArray) -> IntArray:
        """Work, café and hotel networks of a country: shared by whoever is there."""
        first, count = self.country_public_ip_first[countries], self.country_public_ip_count[countries]
        return first + (rng.random(len(countries)) * count).astype(np.int64)

    def carrier_ips(self, rng: np.random.Generator, customers: IntArray) -> IntArray:
        """Mobile carrier-grade NAT: one address is shared by many customers of the carrier at once."""
        carrier = self.customer_carrier[customers]
        first, count = self.carrier_ip_first[carrier], self.carrier_ip_count[carrier]
        return first + (rng.random(len(customers)) * count).astype(np.int64)


def opaque_ids(prefix: str, start: int, n: int, key: int) -> ObjectArray:
    """Unique, stable tokens: a bijection of the index mod 2^40 (odd multiplier, then xor), keyed by the
    seed and the prefix, so a customer's and their phone's ids share nothing visible."""
    mask = (1 << 40) - 1
    salt = int.from_bytes(hashlib.blake2b(f"{prefix}{key}".encode(), digest_size=10).digest(), "big")
    idx = np.arange(start, start + n, dtype=np.uint64) + np.uint64(salt & mask)
    scrambled = ((idx * np.uint64(0x9E3779B97F)) & np.uint64(mask)) ^ np.uint64((salt >> 40) & mask)
    return np.array([f"{prefix}{v:010x}" for v in scrambled.tolist()], dtype=object)


def haversine_km(lat1: FloatArray, lon1: FloatArray, lat2: FloatArray, lon2: FloatArray) -> FloatArray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat, dlon = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))))


def jitter(rng: np.random.Generator, lat: FloatArray, lon: FloatArray, km: float) -> tuple[FloatArray, FloatArray]:
    """Scatter points by about `km` (normal, per axis) around the given centres."""
    dlat = rng.normal(0.0, km / 111.0, len(lat))
    dlon = rng.normal(0.0, km / 111.0, len(lat)) / np.maximum(np.cos(np.radians(lat)), 0.2)
    return np.clip(lat + dlat, -89.9, 89.9), ((lon + dlon + 180.0) % 360.0) - 180.0


def draw_amounts(
    rng: np.random.Generator,
    pop: Population,
    merchants: IntArray,
    level: FloatArray,
    log_multiplier: float | FloatArray = 0.0,
    extra_sigma: float = 0.0,
) -> FloatArray:
    """Lognormal per category, scaled by the card's spending level, in the merchant's currency.

    Cash withdrawals are rounded to the currency's usual note multiple, everything else to its minor unit.
    """
    category = pop.merchant_category[merchants]
    currency = pop.merchant_currency(merchants)
    sigma = np.sqrt(pop.category_sigma[category] ** 2 + extra_sigma**2)
    eur = pop.category_median_eur[category] * level * np.exp(rng.normal(0.0, 1.0, len(merchants)) * sigma)
    eur = np.minimum(eur * np.exp(log_multiplier), MAX_AMOUNT_EUR)
    local = eur * pop.currency_fx[currency]
    scale = 10.0 ** pop.currency_decimals[currency]
    rounded = np.maximum(np.round(local * scale), 1.0) / scale
    unit = pop.currency_cash_unit[currency]
    cash = np.maximum(np.round(local / unit), 1.0) * unit
    return np.asarray(np.where(category == ATM_CATEGORY, cash, rounded))


def _nice_unit(value: float) -> float:
    """The 1-2-5 multiple of a power of ten nearest below `value`: ATMs dispense 20 EUR, 2000 JPY."""
    power = 10.0 ** np.floor(np.log10(value))
    return float(max(m for m in (1.0, 2.0, 5.0) if m * power <= value) * power)


def _ipv4_strings(values: npt.NDArray[np.uint32]) -> ObjectArray:
    return np.array([f"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}" for v in values.tolist()], dtype=object)


def _ipv4_block(rng: np.random.Generator, first_octets: IntArray, n: int) -> ObjectArray:
    """n addresses whose first octet is drawn from `first_octets` (a country's or a cloud's ranges)."""
    high = rng.choice(first_octets, n).astype(np.uint32) << np.uint32(24)
    low = rng.integers(1 << 8, (1 << 24) - 1, n, dtype=np.uint32)
    return _ipv4_strings(high | low)


def build_population(rng: np.random.Generator, *, transactions: int) -> Population:
    """Size the world to the number of transactions: ~20 transactions per card over the period."""
    id_key = int(rng.integers(0, 1 << 40))
    # --- geography ---------------------------------------------------------------------------------
    countries = tuple(dict.fromkeys(c.country for c in CITIES))
    currencies = tuple(dict.fromkeys(COUNTRY_CURRENCY[c] for c in countries))
    city_lat = np.array([c.lat for c in CITIES])
    city_lon = np.array([c.lon for c in CITIES])
    city_weight = np.array([c.weight for c in CITIES], dtype=np.float64)
    city_share = city_weight / city_weight.sum()
    city_country = np.array([countries.index(c.country) for c in CITIES], dtype=np.int64)
    n_cities, n_countries = len(CITIES), len(countries)
    country_share = np.bincount(city_country, weights=city_share, minlength=n_countries)
    fx = np.array([EUR_FX[c] for c in currencies])

    # --- households and customers: a household shares a city, a home IP and maybe a tablet ------------
    n_cards_target = max(400, transactions // 20)
    n_households = max(200, round(n_cards_target / 1.25 / 1.63))
    household_size = rng.choice(np.array([1, 2, 3, 4]), n_households, p=[0.6, 0.23, 0.11, 0.06])
    household_city = rng.choice(n_cities, n_households, p=city_share).astype(np.int64)
    household_lat, household_lon = jitter(rng, city_lat[household_city], city_lon[household_city], 6.0)
    customer_household = np.repeat(np.arange(n_households), household_size)
    n_customers = len(customer_household)
    customer_city = household_city[customer_household]

    # --- devices: a phone each, a laptop for some, a tablet shared by some households ------------------
    has_laptop = rng.random(n_customers) < 0.55
    has_tablet = rng.random(n_households) < np.where(household_size > 1, 0.35, 0.1)
    n_laptops, n_tablets = int(has_laptop.sum()), int(has_tablet.sum())
    n_attacker_devices = max(60, transactions // 2000)
    customer_phone = np.arange(n_customers, dtype=np.int64)
    customer_laptop = np.full(n_customers, -1, np.int64)
    customer_laptop[has_laptop] = n_customers + np.arange(n_laptops)
    household_tablet = np.full(n_households, -1, np.int64)
    household_tablet[has_tablet] = n_customers + n_laptops + np.arange(n_tablets)
    # legitimate churn, so that "a device new to the card" is a signal and not a verdict: some buy a new
    # phone during the period, and some web sessions have a fresh fingerprint (cleared cookies, new browser)
    replaces_phone = rng.random(n_customers) < 0.04
    n_new_phones = int(replaces_phone.sum())
    customer_new_phone = np.full(n_customers, -1, np.int64)
    customer_new_phone[replaces_phone] = n_customers + n_laptops + n_tablets + np.arange(n_new_phones)
    n_fresh = max(100, int(transactions * 0.006))
    first_fresh = n_customers + n_laptops + n_tablets + n_new_phones
    fresh_fingerprints = np.arange(first_fresh, first_fresh + n_fresh, dtype=np.int64)
    n_devices = first_fresh + n_fresh + n_attacker_devices
    attacker_devices = np.arange(first_fresh + n_fresh, n_devices, dtype=np.int64)

    # --- IPs: home lines, carrier NAT pools, public networks per country, proxies --------------------
    octets = rng.choice(np.array(_PUBLIC_OCTETS, dtype=np.int64), 3 * n_countries + 4, replace=False)
    country_octets = octets[: 3 * n_countries].reshape(n_countries, 3)
    proxy_octets = octets[3 * n_countries :]
    household_country = city_country[household_city]
    hh_per_country = np.bincount(household_country, minlength=n_countries)
    ip_parts: list[ObjectArray] = []
    home_ips = np.empty(n_households, dtype=object)
    for country in range(n_countries):
        members = np.flatnonzero(household_country == country)
        home_ips[members] = _ipv4_block(rng, country_octets[country], len(members))
    v6 = np.flatnonzero(rng.random(n_households) < 0.12)
    v6_host = rng.integers(1, 1 << 62, len(v6), dtype=np.int64)
    home_ips[v6] = [
        ipaddress.IPv6Address((0x2A02 << 112) | ((0x100 + country) << 96) | host).compressed
        for country, host in zip(household_country[v6].tolist(), v6_host.tolist(), strict=True)
    ]
    ip_parts.append(home_ips)
    offset = n_households
    carriers_per_country = 3
    carrier_ip_count = np.repeat(np.maximum(2, hh_per_country // 150), carriers_per_country).astype(np.int64)
    carrier_ip_first = offset + np.concatenate([[0], np.cumsum(carrier_ip_count)[:-1]]).astype(np.int64)
    for carrier, count in enumerate(carrier_ip_count.tolist()):
        ip_parts.append(_ipv4_block(rng, country_octets[carrier // carriers_per_country], count))
    offset += int(carrier_ip_count.sum())
    public_count = np.maximum(10, hh_per_country // 4).astype(np.int64)
    public_first = offset + np.concatenate([[0], np.cumsum(public_count)[:-1]]).astype(np.int64)
    for country, count in enumerate(public_count.tolist()):
        ip_parts.append(_ipv4_block(rng, country_octets[country], count))
    offset += int(public_count.sum())
    n_proxies = max(40, transactions // 4000)
    ip_parts.append(_ipv4_block(rng, proxy_octets, n_proxies))
    proxy_ips = np.arange(offset, offset + n_proxies, dtype=np.int64)
    proxy_city = rng.integers(0, n_cities, n_proxies).astype(np.int64)
    customer_country = city_country[customer_city]
    carrier_pick = rng.choice(carriers_per_country, n_customers, p=[0.45, 0.35, 0.2])
    customer_carrier = (customer_country * carriers_per_country + carrier_pick).astype(np.int64)

    # --- BINs: a few issuers per country, big issuers hold most cards ----------------------------------
    bins_per_country = np.maximum(3, np.round(country_share * 60)).astype(np.int64)
    bin_country = np.repeat(np.arange(n_countries), bins_per_country).astype(np.int64)
    n_bins = len(bin_country)
    scheme = rng.choice(np.array([4, 5, 2, 3]), n_bins, p=[0.55, 0.33, 0.07, 0.05])
    eight = rng.random(n_bins) < 0.25
    body = rng.permutation(10**5)[:n_bins].tolist()
    extension = rng.integers(0, 100, n_bins).tolist()
    bins = np.array(
        [
            f"{s}{b:05d}{x:02d}" if e else f"{s}{b:05d}"
            for s, b, e, x in zip(scheme.tolist(), body, eight.tolist(), extension, strict=True)
        ],
        dtype=object,
    )
    bin_weight = rng.pareto(1.0, n_bins) + 1.0

    # --- cards: 1-2 per customer; 3% issued abroad (expats, foreign accounts) ------------------------
    cards_per_customer = 1 + (rng.random(n_customers) < 0.25)
    card_customer = np.repeat(np.arange(n_customers, dtype=np.int64), cards_per_customer)
    n_cards = len(card_customer)
    card_city = customer_city[card_customer]
    issuing_country = city_country[card_city].copy()
    abroad = rng.random(n_cards) < 0.03
    issuing_country[abroad] = rng.integers(0, n_countries, int(abroad.sum()))
    bins_by_country = GroupSampler(bin_country, bin_weight, n_countries, np.arange(n_bins, dtype=np.int64))
    card_bin = bins_by_country.sample(rng, issuing_country)
    card_level = np.exp(rng.normal(0.0, 0.45, n_cards))
    card_activity = rng.gamma(0.9, 1.0, n_cards)
    mix = rng.dirichlet(np.array([0.62, 0.33, 0.05]) * 12, n_cards)
    card_channel_mix = np.cumsum(mix, axis=1)
    card_channel_mix[:, -1] = 1.0

    # --- merchants: physical shops and ATMs per city, online shops per country plus global ones -------
    cat_physical = np.array([c.physical_share for c in CATEGORIES])
    cat_online = np.array([c.online_share for c in CATEGORIES])
    n_physical = np.maximum(30, np.round(city_share * transactions / 250)).astype(np.int64)
    n_atms = np.maximum(4, np.round(city_share * transactions / 4000)).astype(np.int64)
    n_online = np.maximum(6, np.round(country_share * transactions / 2000)).astype(np.int64)
    n_global = max(20, transactions // 40_000)
    kind = np.concatenate([
        np.full(int(n_physical.sum()), PHYSICAL), np.full(int(n_atms.sum()), ATM),
        np.full(int(n_online.sum()) + n_global, ONLINE),
    ]).astype(np.int64)  # fmt: skip
    merchant_city = np.concatenate([
        np.repeat(np.arange(n_cities), n_physical), np.repeat(np.arange(n_cities), n_atms),
        np.full(int(n_online.sum()) + n_global, -1),
    ]).astype(np.int64)  # fmt: skip
    global_country = np.array([countries.index(c) for c in GLOBAL_ONLINE_COUNTRIES], dtype=np.int64)
    merchant_country = np.concatenate([
        city_country[merchant_city[kind != ONLINE]], np.repeat(np.arange(n_countries), n_online),
        rng.choice(global_country, n_global),
    ]).astype(np.int64)  # fmt: skip
    n_merchants = len(kind)
    category = np.full(n_merchants, ATM_CATEGORY, np.int64)
    category[kind == PHYSICAL] = rng.choice(len(CATEGORIES), int(n_physical.sum()), p=cat_physical / cat_physical.sum())
    category[kind == ONLINE] = rng.choice(len(CATEGORIES), int((kind == ONLINE).sum()), p=cat_online / cat_online.sum())
    popularity = rng.pareto(1.3, n_merchants) + 1.0
    popularity[-n_global:] *= 15.0
    located = kind != ONLINE
    merchant_lat = np.full(n_merchants, np.nan)
    merchant_lon = np.full(n_merchants, np.nan)
    merchant_lat[located], merchant_lon[located] = jitter(
        rng, city_lat[merchant_city[located]], city_lon[merchant_city[located]], 5.0
    )
    merchant_lat, merchant_lon = np.round(merchant_lat, 5), np.round(merchant_lon, 5)

    ids = np.arange(n_merchants, dtype=np.int64)
    city_group = np.where(merchant_city >= 0, merchant_city, 0)

    def by_city(mask: BoolArray, weight: FloatArray) -> GroupSampler:
        return GroupSampler(city_group[mask], weight[mask], n_cities, ids[mask])

    def by_country(mask: BoolArray, weight: FloatArray) -> GroupSampler:
        return GroupSampler(merchant_country[mask], weight[mask], n_countries, ids[mask])

    def anywhere(mask: BoolArray, weight: FloatArray) -> GroupSampler:
        return GroupSampler(np.zeros(int(mask.sum()), np.int64), weight[mask], 1, ids[mask])

    travel = np.array([c.travel_affinity for c in CATEGORIES])[category]
    spree = np.array([c.spree_affinity for c in CATEGORIES])[category]
    takeover = np.array([c.takeover_affinity for c in CATEGORIES])[category]
    testing = np.array([c.testing_affinity for c in CATEGORIES])[category]
    physical_by_city = by_city(kind == PHYSICAL, popularity)
    online_by_country = by_country(kind == ONLINE, popularity)
    online_any = anywhere(kind == ONLINE, popularity)
    atm_by_city = by_city(kind == ATM, popularity)

    # --- habits: favourite shops near home, favourite online shops (mostly domestic), a usual ATM ------
    card_home_country = city_country[card_city]
    fav_physical = physical_by_city.sample(rng, np.repeat(card_city, 8)).reshape(n_cards, 8)
    fav_online = np.concatenate([
        online_by_country.sample(rng, np.repeat(card_home_country, 4)).reshape(n_cards, 4),
        online_any.sample(rng, np.zeros(n_cards, np.int64)).reshape(n_cards, 1),
    ], axis=1)  # fmt: skip
    fav_atm = atm_by_city.sample(rng, np.repeat(card_city, 2)).reshape(n_cards, 2)

    cash_unit = np.array([_nice_unit(20.0 * v) for v in fx])
    return Population(
        city_lat=city_lat,
        city_lon=city_lon,
        city_utc_offset_hours=np.array([c.utc_offset_hours for c in CITIES], dtype=np.float64),
        city_country=city_country,
        countries=countries,
        country_currency=np.array([currencies.index(COUNTRY_CURRENCY[c]) for c in countries], dtype=np.int64),
        currencies=currencies,
        currency_fx=fx,
        currency_decimals=np.array([0 if c in ZERO_DECIMAL_CURRENCIES else 2 for c in currencies], np.int64),
        currency_cash_unit=cash_unit,
        category_median_eur=np.array([c.median_eur for c in CATEGORIES], dtype=np.float64),
        category_sigma=np.array([c.sigma for c in CATEGORIES], dtype=np.float64),
        bins=bins,
        bin_country=bin_country,
        customer_ids=opaque_ids("cust_", 0, n_customers, id_key),
        customer_city=customer_city,
        customer_lat=household_lat[customer_household],
        customer_lon=household_lon[customer_household],
        customer_phone=customer_phone,
        customer_laptop=customer_laptop,
        customer_tablet=household_tablet[customer_household],
        customer_new_phone=customer_new_phone,
        customer_home_ip=customer_household.astype(np.int64),
        customer_carrier=customer_carrier,
        card_ids=opaque_ids("card_", 0, n_cards, id_key),
        card_customer=card_customer,
        card_bin=card_bin,
        card_city=card_city,
        card_level=card_level,
        card_activity=card_activity,
        card_channel_mix=card_channel_mix,
        card_fav_physical=fav_physical,
        card_fav_online=fav_online,
        card_fav_atm=fav_atm,
        n_population_cards=n_cards,
        device_ids=opaque_ids("dev_", 0, n_devices, id_key),
        fresh_fingerprints=fresh_fingerprints,
        attacker_devices=attacker_devices,
        ips=np.concatenate(ip_parts),
        carrier_ip_first=carrier_ip_first,
        carrier_ip_count=carrier_ip_count,
        country_public_ip_first=public_first,
        country_public_ip_count=public_count,
        proxy_ips=proxy_ips,
        proxy_city=proxy_city,
        merchant_ids=opaque_ids("merch_", 0, n_merchants, id_key),
        merchant_category=category,
        merchant_kind=kind,
        merchant_city=merchant_city,
        merchant_country=merchant_country,
        merchant_lat=merchant_lat,
        merchant_lon=merchant_lon,
        merchant_popularity=popularity,
        physical_by_city=physical_by_city,
        atm_by_city=atm_by_city,
        online_by_country=online_by_country,
        online_any=online_any,
        travel_by_city=by_city(kind == PHYSICAL, popularity * travel),
        spree_by_city=by_city(kind == PHYSICAL, np.sqrt(popularity) * spree),  # any shop will do
        takeover_by_country=by_country(kind == ONLINE, popularity * takeover),
        takeover_any=anywhere(kind == ONLINE, popularity * takeover),
        testing_any=anywhere(kind == ONLINE, popularity * testing),
        cards_by_bin=GroupSampler(card_bin, np.ones(n_cards), n_bins, np.arange(n_cards, dtype=np.int64)),
        _id_key=id_key,
    )
