"""API keys: `name:key` entries name the actor, bare keys get a name that does not reveal them."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import SecretStr

from api.auth import ApiKeys


def test_named_and_bare_keys_identify_their_holder() -> None:
    keys = ApiKeys(SecretStr(" alice:k-alice-123 , bob.smith@ops:k-bob-456,bare-key-789"))
    assert keys.identify("k-alice-123") == "alice"
    assert keys.identify("k-bob-456") == "bob.smith@ops"
    assert keys.identify("bare-key-789") == "key-" + hashlib.sha256(b"bare-key-789").hexdigest()[:8]
    assert keys.identify("alice:k-alice-123") is None  # the name is not part of the key
    assert keys.identify("nope") is None
    assert keys.check("k-alice-123") and not keys.check("")


@pytest.mark.parametrize("entry", ["a b:key-1", ":key-1", "name:", "-x:key-1"])
def test_an_entry_that_is_not_name_colon_key_is_a_bare_key(entry: str) -> None:
    keys = ApiKeys(SecretStr(entry))
    assert keys.identify(entry) is not None


def test_a_key_name_that_looks_like_a_card_number_is_refused() -> None:
    with pytest.raises(ValueError, match="card number"):
        ApiKeys(SecretStr("4111111111111111:key-1"))
