"""Fast checks of Hugging Face Hub access, so offline users get an error in seconds, not after retries."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from huggingface_hub import constants

_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """Return True when the user switched the Hub off with HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """Return why the Hub cannot be used now, or None when a TCP connection to it opens within `timeout` s.

    huggingface_hub retries a failed request with backoff for close to a minute; this check lets the
    caller fail with a clear message first.
    """
    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(constants.ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as error:
        return f"{constants.ENDPOINT} could not be reached within {timeout:g} s ({error})"
