"""A small client of the Kafka Connect REST API (embedded or real): what `connect apply` and the tests use."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from fraudstream.credentials import Credentials

T = TypeVar("T")


class ConnectAPIError(RuntimeError):
    """A non-2xx answer; `status` and Connect's `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


class ConnectClient:
    def __init__(self, url: str, timeout: float = 60.0) -> None:
        credentials = Credentials.from_env()
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            timeout=timeout,
            headers={"Accept": "application/json"},
            auth=credentials.http_auth("connect"),
            verify=credentials.http_verify(),
        )

    def request(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        response = self.http.request(method, path, json=body, params=params)
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise ConnectAPIError(response.status_code, message)
        return response.json() if response.content else None

    def create(self, name: str, config: dict[str, str], initial_state: str | None = None) -> Any:
        body = {"name": name, "config": config} | ({"initial_state": initial_state} if initial_state else {})
        return self.request("POST", "/connectors", body)

    def config(self, name: str) -> dict[str, str] | None:
        """The stored config, or None when there is no such connector."""
        try:
            return self.request("GET", f"/connectors/{name}/config")
        except ConnectAPIError as exc:
            if exc.status == 404:
                return None
            raise

    def put_config(self, name: str, config: dict[str, str]) -> Any:
        return self.request("PUT", f"/connectors/{name}/config", config)

    def status(self, name: str) -> Any:
        return self.request("GET", f"/connectors/{name}/status")

    def offsets(self, name: str) -> dict[tuple[str, int], int]:
        found = self.request("GET", f"/connectors/{name}/offsets")["offsets"]
        return {
            (o["partition"]["kafka_topic"], o["partition"]["kafka_partition"]): o["offset"]["kafka_offset"]
            for o in found
        }

    def close(self) -> None:
        self.http.close()


def wait_until(condition: Callable[[], T], timeout: float = 60.0, interval: float = 0.2, what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy (and return that), or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout:.0f} s")
        time.sleep(interval)
