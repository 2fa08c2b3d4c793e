"""`Sr3EnvClient`: OpenEnv's `GenericEnvClient` that also sends the server's API key.

OpenEnv's clients take no headers; a server started with ``--api-key`` refuses a WebSocket handshake
without ``Authorization: Bearer KEY``. Without a key this is `GenericEnvClient` itself.
"""

from __future__ import annotations

from typing import Any

from openenv.core.generic_client import GenericEnvClient


class Sr3EnvClient(GenericEnvClient):
    """``Sr3EnvClient(base_url, api_key=None, **GenericEnvClient options)``; actions ``{"embedding": [...]}``."""

    def __init__(self, base_url: str, api_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self._api_key = api_key

    async def connect(self) -> "Sr3EnvClient":
        if self._ws is not None or self._api_key is None:
            await super().connect()
            return self
        from websockets.asyncio.client import connect as ws_connect

        try:
            self._ws = await ws_connect(self._ws_url, open_timeout=self._connect_timeout, max_size=self._max_message_size,
                                        additional_headers={"Authorization": f"Bearer {self._api_key}"})
        except Exception as error:  # the handshake's refusal (403: wrong key) or an unreachable server
            raise ConnectionError(f"Failed to connect to {self._ws_url}: {error}") from error
        return self
