"""Helpers for live tests that watch event streams and change data from another process."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx


class Stream:
    """An event stream read in a background thread: its ``message`` events as they arrive (with the
    monotonic time of arrival), the legacy ``endpoint`` event, and when the server ended it."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.endpoint: str | None = None
        self.status: int | None = None
        self.ended_at: float | None = None
        self._opened = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(5, read=120))
        self._stop = False
        self._thread = threading.Thread(target=self._read, args=(url, headers), daemon=True)
        self._thread.start()
        assert self._opened.wait(15), "the stream did not open"
        assert self.status == 200, f"the stream answered {self.status}"

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers={**headers, "accept": "text/event-stream"}) as response:
                self.status = response.status_code
                self._opened.set()
                event = "message"
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        if event == "endpoint":
                            self.endpoint = line[6:]
                        else:
                            self.messages.append((time.monotonic(), json.loads(line[6:])))
                        event = "message"
            if not self._stop:
                self.ended_at = time.monotonic()
        except httpx.HTTPError:
            pass  # closed by close() below
        finally:
            self._opened.set()

    def methods(self) -> list[str]:
        return [m.get("method", "") for _, m in self.messages]

    def wait_ended(self, timeout: float) -> float | None:
        """When the server ended the stream (monotonic time), or None if it is still open after ``timeout``."""
        self._thread.join(timeout)
        return self.ended_at

    def wait_for(self, method: str, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.methods().count(method) >= count:
                return True
            time.sleep(0.05)
        return self.methods().count(method) >= count

    def close(self) -> None:
        """Stop reading (a read blocked in another thread ends at the latest when the server stops)."""
        self._stop = True
        self._client.close()
        self._thread.join(2)
