"""The one place features are defined; imported by the Faust stream and by training alike.

Pure: importing it does not import faust, aiokafka, FastAPI or SQLAlchemy.
"""

from __future__ import annotations

import hashlib

from pipeline.features.definitions import (
    CARD_FEATURES,
    CARD_LABEL_FEATURES,
    DEVICE_FEATURES,
    ENTITY_GROUPS,
    FEATURE_NAMES,
    IP_FEATURES,
    MERCHANT_FEATURES,
    TX_FEATURES,
    TxLike,
    apply_label,
    assemble_vector,
    card_step,
    entity_features,
    entity_keys,
    entity_step,
    label_entities,
    label_visible_at_ms,
    transaction_features,
)
from pipeline.features.keystate import CardState, EntityKind, EntityState
from pipeline.features.offline import FeatureTable, LabelEvent, TxRow, compute_features, rows_from_frame

#: Bump the manual part on any change of a definition; the hash catches a changed name list.
_MANUAL_VERSION = "3"
FEATURE_CODE_VERSION = f"{_MANUAL_VERSION}-{hashlib.sha256(','.join(FEATURE_NAMES).encode()).hexdigest()[:8]}"

__all__ = [
    "CARD_FEATURES",
    "CARD_LABEL_FEATURES",
    "DEVICE_FEATURES",
    "ENTITY_GROUPS",
    "FEATURE_CODE_VERSION",
    "FEATURE_NAMES",
    "IP_FEATURES",
    "MERCHANT_FEATURES",
    "TX_FEATURES",
    "CardState",
    "EntityKind",
    "EntityState",
    "FeatureTable",
    "LabelEvent",
    "TxLike",
    "TxRow",
    "apply_label",
    "assemble_vector",
    "card_step",
    "compute_features",
    "entity_features",
    "entity_keys",
    "entity_step",
    "label_entities",
    "label_visible_at_ms",
    "rows_from_frame",
    "transaction_features",
]
