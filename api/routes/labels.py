"""`POST /v1/labels`: feedback (chargebacks, analyst decisions) onto the `labels` topic.

Workers read labels for the merchant fraud-rate features, the sink stores them for `train --from-db`.
A label without `merchant_id` is completed from the stored verdict when there is one: the workers can
only count a label for a merchant they know.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.bridge import BridgeUnavailable
from api.deps import Authorized, GatewayState, JsonBody, State
from api.errors import InvalidTransaction, ServiceUnavailable
from api.payloads import LABEL_REQUEST_BODY, ErrorBody
from api.routes.verdicts import lookup_verdict
from pipeline.records import Label, RecordError, parse_label

log = logging.getLogger("riskstream.gateway")

router = APIRouter(prefix="/v1", tags=["labels"], dependencies=[Authorized])


class LabelAccepted(BaseModel):
    transaction_id: str
    accepted: bool = True
    #: The merchant the label counts for in fraud-rate features; null when it is not known.
    merchant_id: str | None = None


async def _completed(state: GatewayState, label: Label) -> Label:
    """The label with card and merchant taken from the stored verdict, when it names no merchant."""
    if label.merchant_id is not None or state.sessions is None:
        return label
    try:
        verdict = await lookup_verdict(state, label.transaction_id)
    except ServiceUnavailable as e:
        log.warning("label for %s sent without merchant: %s", label.transaction_id, e.detail)
        return label
    if verdict is None:
        return label
    return label.model_copy(update={"merchant_id": verdict.merchant_id, "card_id": label.card_id or verdict.card_id})


@router.post(
    "/labels",
    response_model=LabelAccepted,
    status_code=202,
    openapi_extra=LABEL_REQUEST_BODY,
    dependencies=[JsonBody],
    responses={
        401: {"model": ErrorBody},
        413: {"model": ErrorBody},
        415: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def post_label(request: Request, state: State) -> LabelAccepted:
    """Report a chargeback, confirmed fraud or confirmed legitimate transaction."""
    body = await request.body()  # at most gateway.max_body_bytes: api.limits.BodyLimit stops more
    try:
        label = parse_label(body)
    except RecordError as e:
        raise InvalidTransaction(e.reason) from None
    label = await _completed(state, label)
    try:
        await state.bridge.publish(
            state.settings.kafka.labels_topic,
            key=label.transaction_id.encode(),
            value=label.model_dump_json().encode(),
        )
    except BridgeUnavailable as e:
        raise ServiceUnavailable(f"labels are unavailable: {e}") from None
    return LabelAccepted(transaction_id=label.transaction_id, merchant_id=label.merchant_id)
