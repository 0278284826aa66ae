"""One contract: the JSON Schemas, the worker's parser and the API accept exactly the same documents.

Every case goes through three judges and their verdicts (accept or refuse) must be the same:

- the schema file (`schemas/*.v1.json`), validated by two JSON Schema implementations: jsonschema-rs
  (ECMA-262 regular expressions, as draft 2020-12 requires) and python-jsonschema (whose `pattern` and
  `date-time` checks use Python's `$`, which also matches before a final newline: a string ending in "\\n" is
  the one known difference, asserted as such), each with format assertion on. The rules the schema
  documents in its description but cannot express (no card number in an identifier, a plausible event
  time, a parseable IP address, lat with lon) are applied on top, by this file;
- the worker's parser (`parse_transaction` / `parse_label`, what `process_card_batch` runs);
- the API: the real app (`create_app`) in-process, POST with the document as the body. Kafka is not there,
  so a document that passes validation gets 503 (it reached the producer) and a refused one 422.

Cases are generated from the schema files themselves (a hypothesis strategy per property, read from the
schema: types, enums, patterns, bounds, formats, nullability, optional fields), plus random mutations of
those (a field dropped, given a wrong type or a malformed value, an extra field), plus targeted
mutations that are known to have split the judges (timestamps without seconds, with a space, "+0000", epoch
seconds; ids with "/"; non-ASCII digits...).

(hypothesis-jsonschema installs from PyPI but fails with this hypothesis version, hence the strategy here.)
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from asgi_lifespan import LifespanManager
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from api.main import create_app
from pipeline.db.migrate import upgrade_database
from pipeline.pan import contains_pan
from pipeline.records import RecordError, parse_label, parse_transaction
from pipeline.settings import Settings
from tests.fixtures.kafka import free_port

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
KEY = "contract-key-0123456789"
NOW = datetime.now(UTC)
MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_SKEW = timedelta(hours=24)


def load_schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.v1.json").read_text())
    return loaded


SCHEMA = {name: load_schema(name) for name in ("transaction", "label")}
RS = {name: jsonschema_rs.validator_for(s, validate_formats=True) for name, s in SCHEMA.items()}
PY = {name: Draft202012Validator(s, format_checker=FormatChecker()) for name, s in SCHEMA.items()}
PARSE: dict[str, Callable[[bytes], object]] = {"transaction": parse_transaction, "label": parse_label}
PATH = {"transaction": "/v1/score", "label": "/v1/labels"}
#: Fields the description says may not contain a card number.
NO_PAN = {
    "transaction": ("transaction_id", "card_id", "customer_id", "merchant_id", "device_id", "merchant_category"),
    "label": ("transaction_id", "card_id", "merchant_id", "source"),
}
TIME_FIELD = {"transaction": "timestamp", "label": "reported_at"}


# --- the judges ------------------------------------------------------------------------------------------


def _instant(value: str) -> datetime:
    """An RFC 3339 string the schema accepted, as an aware datetime (fraction cut to microseconds)."""
    text = value.upper().replace("Z", "+00:00")
    date, _, rest = text.partition("T")
    clock, sign, offset = rest.partition("+") if "+" in rest else rest.rpartition("-")
    if "." in clock:
        whole, _, frac = clock.partition(".")
        clock = f"{whole}.{frac[:6]:0<6}"
    return datetime.fromisoformat(f"{date}T{clock}{sign}{offset}")


def described_rules_hold(name: str, doc: dict[str, Any]) -> bool:
    """The rules in the schema's description, for a document the schema itself accepts."""
    if any(isinstance(doc.get(f), str) and contains_pan(doc[f]) for f in NO_PAN[name]):
        return False
    stamp = doc[TIME_FIELD[name]]
    if int(stamp[:4]) < 1999:  # before 2000 in any offset (and year 0000, which datetime has not)
        return False
    if not MIN_TIME <= _instant(stamp) <= datetime.now(UTC) + MAX_SKEW:
        return False
    if name == "transaction":
        if doc.get("ip") is not None:
            try:
                ipaddress.ip_address(doc["ip"])
            except ValueError:
                return False
        if (doc.get("lat") is None) != (doc.get("lon") is None):
            return False
    return True


def schema_verdict(name: str, doc: dict[str, Any]) -> bool:
    return bool(RS[name].is_valid(doc)) and described_rules_hold(name, doc)


def python_jsonschema_verdict(name: str, doc: dict[str, Any]) -> bool:
    return PY[name].is_valid(doc) and described_rules_hold(name, doc)


def worker_verdict(name: str, raw: bytes) -> bool:
    try:
        PARSE[name](raw)
    except RecordError:
        return False
    return True


def api_verdict(client: Gateway, name: str, raw: bytes) -> bool:
    response = client.post(PATH[name], raw)
    assert response.status_code in (422, 503), (response.status_code, response.text)
    if response.status_code == 503:
        assert "unavailable" in response.json()["detail"], response.text  # Kafka's absence, nothing else
    return response.status_code == 503


def ends_in_newline(doc: dict[str, Any]) -> bool:
    return any(isinstance(v, str) and v.endswith("\n") for v in doc.values())


def assert_one_verdict(client: Gateway, name: str, doc: dict[str, Any]) -> bool:
    """All judges agree on `doc`; returns their verdict."""
    raw = json.dumps(doc).encode()
    expected = schema_verdict(name, doc)
    verdicts = {
        "schema (jsonschema-rs)": expected,
        "worker parser": worker_verdict(name, raw),
        "API": api_verdict(client, name, raw),
    }
    if not ends_in_newline(doc):
        verdicts["schema (python-jsonschema)"] = python_jsonschema_verdict(name, doc)
    else:  # the known difference of python-jsonschema, and only it
        assert PY[name].is_valid(doc) or not RS[name].is_valid(doc), doc
    assert len(set(verdicts.values())) == 1, f"{name} judged differently: {verdicts}\n{raw!r}"
    return expected


class Gateway:
    """The gateway app served in-process on an event loop of its own, called from synchronous tests."""

    def __init__(self, portal: BlockingPortal, http: httpx.AsyncClient) -> None:
        self.portal = portal
        self.http = http

    def post(self, path: str, body: bytes) -> httpx.Response:
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        return self.portal.call(functools.partial(self.http.post, path, content=body, headers=headers))


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield http


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway app with its real routes, error handlers and middleware; Kafka is unreachable."""
    url = f"sqlite:///{tmp_path_factory.mktemp('contract') / 'riskstream.db'}"
    upgrade_database(url)
    settings = Settings.model_validate({
        "kafka": {"bootstrap": f"127.0.0.1:{free_port()}"},
        "gateway": {"api_keys": KEY},
        "database": {"url": url},
    })  # fmt: skip
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(serving(settings)) as http:
        yield Gateway(portal, http)


# --- cases from the schema -------------------------------------------------------------------------------


@st.composite
def rfc3339(draw: st.DrawFn, low: datetime, high: datetime) -> str:
    """Valid RFC 3339 spellings (offsets, fractions, T or t, Z or z) of an instant between `low` and `high`."""
    instant = draw(st.datetimes(min_value=low.replace(tzinfo=None), max_value=high.replace(tzinfo=None)))
    instant = instant.replace(tzinfo=UTC)
    minutes = draw(st.sampled_from([0, 0, 60, -300, 330, 23 * 60 + 59, -(23 * 60 + 59)]))
    local = instant + timedelta(minutes=minutes)
    fraction = draw(st.sampled_from(["", f".{local.microsecond // 100000}", f".{local.microsecond:06d}",
                                     f".{local.microsecond:06d}789"]))  # fmt: skip
    if minutes == 0:
        zone = draw(st.sampled_from(["Z", "z", "+00:00", "-00:00"]))
    else:
        zone = f"{'+' if minutes > 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return f"{local:%Y-%m-%d}{draw(st.sampled_from('Tt'))}{local:%H:%M:%S}{fraction}{zone}"


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each `weight` times as likely as a weight of 1 (`one_of` drops repeats)."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(pool) - 1).flatmap(lambda i: pool[i])


#: Clear of the edges of the accepted range by 10 minutes (the edges are unit-tested, and time passes).
_MARGIN = timedelta(minutes=10)
IN_RANGE = rfc3339(MIN_TIME + _MARGIN, NOW + MAX_SKEW - _MARGIN)
OUT_OF_RANGE = st.one_of(rfc3339(datetime(1995, 1, 1, tzinfo=UTC), MIN_TIME - _MARGIN),
                         rfc3339(NOW + MAX_SKEW + _MARGIN, NOW + timedelta(days=5)))  # fmt: skip


#: Hints for what a schema cannot say (values that pass its description's rules), mixed with the schema's.
HINTS: dict[str, st.SearchStrategy[Any]] = {"ip": st.ip_addresses().map(str)}
HINT_WEIGHT = 3  # a hinted value this many times as often as one the schema alone allows


def from_property(name: str, spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A strategy for one property, read from its schema."""
    if "anyOf" in spec:
        return st.one_of(*(from_property(name, alternative) for alternative in spec["anyOf"]))
    if "const" in spec:
        return st.just(spec["const"])
    if "enum" in spec:
        return st.sampled_from(spec["enum"])
    kind = spec["type"]
    if kind == "null":
        return st.none()
    if kind == "number":
        low, high = spec.get("minimum", spec.get("exclusiveMinimum", -1e12)), spec.get("maximum", 1e12)
        floats = st.floats(low, high, exclude_min="exclusiveMinimum" in spec, allow_nan=False)
        return st.one_of(floats, st.integers(int(low) + 1, int(high)))
    assert kind == "string", spec
    if spec.get("format") == "date-time":
        # Mostly real instants in range; sometimes out of it, or anything the pattern allows (mostly not).
        anything = st.from_regex(spec["pattern"], fullmatch=True) if "pattern" in spec else st.text(max_size=30)
        return weighted((4, IN_RANGE), (1, OUT_OF_RANGE), (1, anything))
    if "pattern" in spec:
        strings = st.from_regex(spec["pattern"], fullmatch=True)
    else:
        strings = st.text(max_size=spec.get("maxLength", 40) + 2)
    strings = strings.filter(lambda s: spec.get("minLength", 0) <= len(s) <= spec.get("maxLength", 10**6))
    return weighted((HINT_WEIGHT, HINTS[name]), (1, strings)) if name in HINTS else strings


@st.composite
def from_schema(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A document from the schema: every required property, each optional one or not."""
    schema = SCHEMA[name]
    doc: dict[str, Any] = {}
    for prop, spec in schema["properties"].items():
        if prop in schema["required"] or draw(st.booleans()):
            doc[prop] = draw(from_property(prop, spec))
    if "lat" in schema["properties"] and draw(st.integers(0, 3)):  # mostly as the description says: together
        if doc.get("lat") is None:
            doc.pop("lon", None)
        elif doc.get("lon") is None:
            doc["lon"] = draw(from_property("lon", schema["properties"]["lon"]["anyOf"][0]))
    return doc


JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A document from the schema with one thing broken, or maybe not broken (the judges decide)."""
    doc = draw(from_schema(name))
    fields = sorted(SCHEMA[name]["properties"])
    action = draw(st.sampled_from(["drop", "junk", "malformed", "extra"]))
    if action == "drop":
        doc.pop(draw(st.sampled_from(fields)), None)
    elif action == "junk":
        doc[draw(st.sampled_from(fields))] = draw(JUNK)
    elif action == "malformed":
        field, value = draw(st.sampled_from(sorted(MALFORMED[name].items())))
        doc[field] = draw(st.sampled_from(value))
    else:
        doc[draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in fields))] = draw(JUNK)
    return doc


RECENT = NOW - timedelta(hours=1)
#: Values that split the judges before they were one contract (each refused by all now).
BAD_TIMES = [
    str(int(RECENT.timestamp())),  # epoch seconds as a string
    RECENT.strftime("%Y-%m-%dT%H:%MZ"),  # no seconds
    RECENT.strftime("%Y-%m-%d %H:%M:%SZ"),  # a space for the T
    RECENT.strftime("%Y-%m-%dT%H:%M:%S+0000"),  # offset without colon
    RECENT.strftime("%Y-%m-%dT%H:%M:%S"),  # no offset
    RECENT.strftime("%Y-%m-%dT%H:%M:%S,5Z"),  # decimal comma
    RECENT.strftime("%Y-%m-%dT%H:%M:%S.Z"),  # a dot and no fraction
    RECENT.strftime("%Y-%m-%dT23:59:60Z"),  # a leap second
    RECENT.strftime("%Y-%m-%dT%H:%M:%S+24:00"),
    RECENT.strftime("%Y-%m-%dT%H:%M:%SZ\n"),  # a final newline
    RECENT.strftime("%Y-%m-%d"),
    RECENT.strftime("%Y-%m-%dT%H:%M:%S Z"),
    RECENT.strftime("%Y-%m-%dT%H:%M:%SUTC"),
    RECENT.strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace("0", "\uff10"),  # full-width digits
    "2026-02-30T10:00:00Z",
]
BAD_IDS = ["t/1", "a/b/c", "t-1\n", "-t", "t 1", "é", "t" * 129, "", "٤١١١"]
MALFORMED: dict[str, dict[str, list[Any]]] = {
    "transaction": {
        "timestamp": [*BAD_TIMES, int(RECENT.timestamp()), RECENT.timestamp()],
        "transaction_id": BAD_IDS,
        "card_id": [i for i in BAD_IDS if "/" not in i],
        "currency": ["XXX", "eur", "EURO", "", "€UR", "EU", None, 978],
        "card_bin": ["١٢٣٤٥٦", "41111", "411111111", "4111 11"],
        "country": ["FR\n", "fr", "FRA"],
        "amount": [0, -1, 10_000_000.01, "12.5", True, None],
        "merchant_category": ["Grocery", "", "a" * 33, "grocery\n"],
    },
    "label": {
        "reported_at": [*BAD_TIMES, int(RECENT.timestamp())],
        "transaction_id": BAD_IDS,
        "label": ["Chargeback", "fraud", "", None],
        "source": ["a\x00b", "line\nbreak", "x" * 65, "tab\there"],
    },
}

#: 120 documents per schema in `make test` (about 20 s); the hypothesis database keeps failures found before.
SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


@pytest.mark.parametrize("name", ["transaction", "label"])
def test_documents_generated_from_the_schema_get_one_verdict(api: Gateway, name: str) -> None:
    verdicts: Counter[bool] = Counter()

    @given(doc=st.one_of(from_schema(name), mutated(name)))
    @SETTINGS
    def judge(doc: dict[str, Any]) -> None:
        verdicts[assert_one_verdict(api, name, doc)] += 1

    judge()
    # Both answers were exercised: the generator is not producing only refusals (or only acceptances).
    least = SETTINGS.max_examples // 8  # about a fifth are valid documents (24 of 120 in one run)
    assert verdicts[True] >= least and verdicts[False] >= least, dict(verdicts)


def valid(name: str) -> dict[str, Any]:
    if name == "transaction":
        return {"transaction_id": "t-1", "timestamp": RECENT.isoformat(), "amount": 12.5, "currency": "EUR",
                "card_id": "card-1", "merchant_id": "m-1", "card_bin": "411111", "country": "FR",
                "merchant_category": "grocery", "lat": 48.8, "lon": 2.3}  # fmt: skip
    return {"transaction_id": "t-1", "label": "chargeback", "reported_at": RECENT.isoformat(), "source": "issuer"}


TARGETED = [
    (name, field, value) for name, fields in MALFORMED.items() for field, values in fields.items() for value in values
]


@pytest.mark.parametrize(("name", "field", "value"), TARGETED, ids=[f"{n}.{f}={v!r}" for n, f, v in TARGETED])
def test_each_malformed_value_is_refused_by_every_judge(api: Gateway, name: str, field: str, value: Any) -> None:
    assert assert_one_verdict(api, name, valid(name)), "the base document is valid"
    assert not assert_one_verdict(api, name, valid(name) | {field: value})


@pytest.mark.parametrize("name", ["transaction", "label"])
@pytest.mark.parametrize(
    "change",
    [{"extra": 1}, {"4111111111111111": 1}, {"4111/1111/1111/1111": "x"}],
    ids=["an extra field", "a PAN as a field name", "a grouped PAN as a field name"],
)
def test_extra_and_missing_fields_are_refused_by_every_judge(api: Gateway, name: str, change: dict[str, Any]) -> None:
    assert not assert_one_verdict(api, name, valid(name) | change)
    for required in SCHEMA[name]["required"]:
        assert not assert_one_verdict(api, name, {k: v for k, v in valid(name).items() if k != required})


@pytest.mark.parametrize("name", ["transaction", "label"])
@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_numbers_json_does_not_have_are_refused_by_the_parser_and_the_api(api: Gateway, name: str, token: str) -> None:
    """No schema judges these (they are not JSON, or not a finite number); the parser and the API refuse them."""
    field = "amount" if name == "transaction" else "reported_at"
    raw = json.dumps(valid(name) | {field: "@"}).replace('"@"', token).encode()
    assert not worker_verdict(name, raw)
    assert not api_verdict(api, name, raw)
