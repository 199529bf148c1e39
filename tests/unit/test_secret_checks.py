"""secret_problems: the API server's Secret validation, before any key exists."""

from __future__ import annotations

import pytest

from storage_token.secrets.checks import MAX_ANNOTATIONS_BYTES, MAX_SECRET_BYTES, secret_problems

GOOD_DATA = {"accessKeyId": "AKID", "rclone.conf": "[x]\n", ".s3cfg": "y", "a-b_c.D9": "z"}


def test_an_ordinary_secret_has_no_problems() -> None:
    labels = {"app": "web", "example.com/team": "a-b_c.9", "empty": "", "k8s.io/x": "Y"}
    annotations = {"Example.COM/Note": "any text at all, even\nlines", "plain": ""}
    assert secret_problems(GOOD_DATA, labels, annotations) == ""
    assert secret_problems({}, {}, {}) == ""


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        pytest.param("bad/key", "[-._a-zA-Z0-9]", id="slash"),
        pytest.param("a b", "[-._a-zA-Z0-9]", id="space"),
        pytest.param("", "1-253", id="empty"),
        pytest.param(".", "'.'", id="dot"),
        pytest.param("..", "'..'", id="dot-dot"),
        pytest.param("..x", "start with '..'", id="dot-dot prefix"),
        pytest.param("clé", "[-._a-zA-Z0-9]", id="non-ASCII"),
        pytest.param("k" * 254, "253", id="too long"),
        pytest.param("\ud800", "1-253", id="lone surrogate"),
    ],
)
def test_bad_data_keys(key: str, fragment: str) -> None:
    problem = secret_problems({key: "v"}, {}, {})
    assert problem.startswith("Secret key ")
    assert fragment in problem


def test_a_lone_surrogate_in_a_value_is_refused_without_showing_the_value() -> None:
    problem = secret_problems({"x": "s3cr3tVALUE\ud800"}, {}, {})
    assert "lone surrogate" in problem
    assert "s3cr3t" not in problem


@pytest.mark.parametrize(
    "key",
    [
        "bad key!",
        "-leading",
        "trailing-",
        "a/b/c",
        "/name",
        "prefix/",
        "Upper.Case/name",
        "under_score.com/x",
        "x" * 64,
        "p" * 254 + "/x",
        "",
    ],
)
def test_bad_label_keys(key: str) -> None:
    assert secret_problems({}, {key: "v"}, {}).startswith("Secret label ")


@pytest.mark.parametrize("value", ["v" * 64, "-x", "x-", "a b", "a/b", "é"])
def test_bad_label_values(value: str) -> None:
    assert "the value" in secret_problems({}, {"app": value}, {})


@pytest.mark.parametrize("key", ["x" * 63, "a" * 253 + "/" + "n" * 63, "a.b-c/D_e.f"])
def test_label_keys_at_the_limits_are_fine(key: str) -> None:
    assert secret_problems({}, {key: "v" * 63}, {}) == ""


@pytest.mark.parametrize("key", ["bad key", "a/b/c", "x" * 64, "-x"])
def test_bad_annotation_keys(key: str) -> None:
    assert secret_problems({}, {}, {key: "v"}).startswith("Secret annotation ")


def test_annotations_are_capped_in_total() -> None:
    half = MAX_ANNOTATIONS_BYTES // 2
    assert secret_problems({}, {}, {"a": "x" * (half - 10), "b": "y" * (half - 10)}) == ""
    assert "annotations take" in secret_problems({}, {}, {"a": "x" * half, "b": "y" * half})


def test_the_whole_secret_is_capped_counting_base64() -> None:
    raw = (MAX_SECRET_BYTES * 3) // 4  # fits decoded, not once base64-encoded with its metadata
    assert "at most 1048576" in secret_problems({"x": "a" * raw}, {}, {})
    assert secret_problems({"x": "a" * (raw - 4096)}, {}, {}) == ""


def test_several_problems_are_summarised() -> None:
    problem = secret_problems({"a b": "x", "c d": "y", "e f": "z", "g h": "w"}, {}, {})
    assert problem.count("Secret key ") == 3
    assert problem.endswith("and 1 more problem")
