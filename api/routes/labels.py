"""`POST /v1/labels`: feedback (chargebacks, analyst decisions) onto the `labels` topic.

Workers read labels for the delayed-label features, the sink stores them for `train --from-db`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.bridge import BridgeUnavailable
from api.deps import Authorized, State
from api.errors import InvalidTransaction, ServiceUnavailable
from api.payloads import ErrorBody
from pipeline.records import RecordError, parse_label

router = APIRouter(prefix="/v1", tags=["labels"], dependencies=[Authorized])


class LabelAccepted(BaseModel):
    transaction_id: str
    accepted: bool = True


@router.post(
    "/labels",
    response_model=LabelAccepted,
    status_code=202,
    responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def post_label(request: Request, state: State) -> LabelAccepted:
    """Report a chargeback, confirmed fraud or confirmed legitimate transaction."""
    body = await request.body()
    if len(body) > state.settings.gateway.max_body_bytes:
        raise InvalidTransaction("label body too large")
    try:
        label = parse_label(body)
    except RecordError as e:
        raise InvalidTransaction(e.reason) from None
    try:
        await state.bridge.publish(
            state.settings.kafka.labels_topic,
            key=label.transaction_id.encode(),
            value=label.model_dump_json().encode(),
        )
    except BridgeUnavailable as e:
        raise ServiceUnavailable(f"labels are unavailable: {e}") from None
    return LabelAccepted(transaction_id=label.transaction_id)
