"""Decoding a Secret's base64 data into strings."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any


def decode_secret_data(secret: Mapping[str, Any]) -> dict[str, str]:
    result = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            result[key] = base64.b64decode(value).decode().strip()
        except (binascii.Error, UnicodeDecodeError):
            continue  # not ours to interpret; the provider reports missing credentials
    return result
