"""UCloud API request encoding and SHA1 signing (us3-api.md, "Signature").

    flat = flatten({"Action": "DescribeUFileToken", "AllowedOps": ["TOKEN_ALLOW_READ"]})
    body = sign(flat, public_key, private_key)  # adds PublicKey and Signature

The string that gets hashed ends with the private key: it is built and hashed
here and nowhere else, and never returned or logged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

Scalar = str | int | float | bool
Value = Scalar | Sequence[Scalar] | None


def encode_scalar(value: Scalar) -> str:
    """Bool as true/false, a whole float as an int, everything else as str()."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def flatten(params: Mapping[str, Value]) -> dict[str, str]:
    """Lists become `Name.0`, `Name.1`, ... (0-based); None and empty lists send nothing."""
    flat: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, str | int | float | bool):
            flat[name] = encode_scalar(value)
        else:
            for index, item in enumerate(value):
                flat[f"{name}.{index}"] = encode_scalar(item)
    return flat


def signature(params: Mapping[str, str], private_key: str) -> str:
    """sha1(name+value for each name in plain sorted order, then the private key), lowercase hex."""
    text = "".join(name + params[name] for name in sorted(params) if name != "Signature")
    return hashlib.sha1((text + private_key).encode("utf-8")).hexdigest()


def sign(params: Mapping[str, str], public_key: str, private_key: str) -> dict[str, str]:
    """`params` plus PublicKey and the Signature over all of them."""
    signed = {name: value for name, value in params.items() if name != "Signature"}
    signed["PublicKey"] = public_key
    signed["Signature"] = signature(signed, private_key)
    return signed
