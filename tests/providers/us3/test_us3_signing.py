"""UCloud request signing: the documented test vectors, flattening, and order independence."""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage_token.dev.emulators.us3 import signature_ok
from storage_token.providers.us3.signing import Value, encode_scalar, flatten, sign, signature

PRIVATE_KEY = "46f09bb9fab4f12dfc160dae12273d5332b5debe"
DESCRIBE_UHOST: dict[str, Value] = {"Action": "DescribeUHostInstance", "Region": "cn-bj2", "Limit": 10}

VECTORS = [
    pytest.param(
        "ucloudsomeone@example.com1296235120854146120",
        DESCRIBE_UHOST,
        "cba5cf5ec4d4233d206b1b54951e3787350a642f",
        id="row 1: DescribeUHostInstance",
    ),
    pytest.param(
        "someone@example.com1296235120854146120",
        DESCRIBE_UHOST,
        "4201919d267504385deb93af19e0197870fed36b",
        id="row 2: another public key",
    ),
    pytest.param(
        # The doc's row reads "Region=vn-sng": the other parameters of row 1 stay as they are.
        "john.doe@example.com1296235120854146120",
        {**DESCRIBE_UHOST, "Region": "vn-sng"},
        "52fc1191f026532c9100946c6a863a90d5f766ed",
        id="row 3: region vn-sng",
    ),
    pytest.param(
        "ucloudsomeone@example.com1296235120854146120",
        {
            "Action": "CreateUFileToken",
            "Region": "cn-bj2",
            "ProjectId": "org-xxx",
            "TokenName": "testname",
            "AllowedOps": ["TOKEN_ALLOW_READ", "TOKEN_ALLOW_WRITE"],
            "AllowedPrefixes": ["test/"],
            "AllowedBuckets": ["bucket0", "bucket1"],
            "ExpireTime": 1520411979,
        },
        "0b095d9ed03d7c2582e242ea7a11ed387ea34254",
        id="row 4: CreateUFileToken with lists",
    ),
]


@pytest.mark.parametrize(("public_key", "params", "expected"), VECTORS)
def test_documented_vectors(public_key: str, params: dict[str, Value], expected: str) -> None:
    signed = sign(flatten(params), public_key, PRIVATE_KEY)
    assert signed["Signature"] == expected
    assert signed["PublicKey"] == public_key


def test_row_one_signs_the_documented_string() -> None:
    import hashlib

    text = (
        "ActionDescribeUHostInstanceLimit10PublicKeyucloudsomeone@example.com1296235120854146120"
        "Regioncn-bj2" + PRIVATE_KEY
    )
    params = flatten({**DESCRIBE_UHOST, "PublicKey": "ucloudsomeone@example.com1296235120854146120"})
    assert signature(params, PRIVATE_KEY) == hashlib.sha1(text.encode()).hexdigest()


def test_lists_flatten_zero_based_and_empty_lists_send_nothing() -> None:
    flat = flatten({"AllowedOps": ["A", "B"], "AllowedBuckets": [], "TokenName": "t", "ExpireTime": None})
    assert flat == {"AllowedOps.0": "A", "AllowedOps.1": "B", "TokenName": "t"}


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(True, "true"), (False, "false"), (3.0, "3"), (2.5, "2.5"), (10, "10"), ("x", "x")],
    ids=["true", "false", "whole float as int", "fraction kept", "int", "string"],
)
def test_scalars_encode_like_the_sdk(value: str | int | float | bool, encoded: str) -> None:
    assert encode_scalar(value) == encoded


def test_names_sort_as_plain_strings_so_index_10_comes_before_2() -> None:
    ops = [f"OP{i}" for i in range(11)]
    flat = flatten({"AllowedOps": ops})
    order = sorted(flat)
    assert order.index("AllowedOps.10") < order.index("AllowedOps.2")


def test_an_incoming_signature_is_ignored_when_signing() -> None:
    params = {"Action": "X", "Signature": "stale"}
    assert sign(params, "pub", PRIVATE_KEY) == sign({"Action": "X"}, "pub", PRIVATE_KEY)


names = st.text(alphabet=string.ascii_letters + string.digits + ".", min_size=1, max_size=16).filter(
    lambda n: n not in ("Signature", "PublicKey")
)
values = st.text(max_size=24)


@given(params=st.dictionaries(names, values, min_size=1, max_size=16), seed=st.integers())
def test_signature_does_not_depend_on_parameter_order(params: dict[str, str], seed: int) -> None:
    items = list(params.items())
    random.Random(seed).shuffle(items)
    assert signature(dict(items), PRIVATE_KEY) == signature(params, PRIVATE_KEY)


@given(params=st.dictionaries(names, values, max_size=16), public_key=st.text(min_size=1, max_size=40))
def test_the_emulator_accepts_what_the_client_signs(params: dict[str, str], public_key: str) -> None:
    # Two implementations of the scheme (client signing, emulator verifier) must agree.
    assert signature_ok(sign(params, public_key, PRIVATE_KEY), PRIVATE_KEY)


@given(params=st.dictionaries(names, values, min_size=1, max_size=8), data=st.data())
def test_changing_a_value_breaks_the_signature(params: dict[str, str], data: st.DataObject) -> None:
    signed = sign(params, "pub", PRIVATE_KEY)
    name = data.draw(st.sampled_from(sorted(params)))
    tampered = {**signed, name: signed[name] + "x"}
    assert not signature_ok(tampered, PRIVATE_KEY)
