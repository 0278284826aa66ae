"""A small typed client for the gateway, used by the tests, the benchmarks and the docs."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from pipeline.records import Verdict


class GatewayError(RuntimeError):
    def __init__(self, status_code: int, body: Any) -> None:
        super().__init__(f"HTTP {status_code}: {body}")
        self.status_code = status_code
        self.body = body


class RiskstreamClient:
    """Async client: `async with RiskstreamClient(url, api_key) as c: verdict = await c.score(tx)`."""

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 5.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=timeout_s, headers={"Authorization": f"Bearer {api_key}"}
        )

    async def __aenter__(self) -> RiskstreamClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def score(self, transaction: dict[str, Any]) -> Verdict:
        response = await self._http.post("/v1/score", json=transaction)
        if response.status_code != 200:
            raise GatewayError(response.status_code, _body(response))
        return Verdict.model_validate(response.json())

    async def ready(self) -> bool:
        response = await self._http.get("/readyz")
        return response.status_code == 200


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
