"""BoundedRenderer: renders in limited worker processes, off the event loop, with a rehearsal cache."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio
from builders import BARE, KEY, SECRET

from storage_token.api.token import SecretTemplate
from storage_token.secrets.render import PRESETS, TemplateError, render_secret_data
from storage_token.secrets.worker import BoundedRenderer, placeholder_material

# Legal for the sandbox (under its budgets) but slow: ~0.1-0.3 s of CPU in the worker.
SLOW = "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(12) }}"
# Legal, and allocates a few MiB: 4000 distinct 200-character strings.
HUNGRY = "{% set s = 'x' * 200 %}{{ (([s] * 4000) | map('upper') | list) | length }}"


@pytest_asyncio.fixture
async def renderer() -> AsyncIterator[BoundedRenderer]:
    bounded = BoundedRenderer()
    yield bounded
    await bounded.aclose()


# cosi needs a one-bucket key, which neither is: tests/unit/test_cosi_preset.py takes it through the worker.
@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "cosi"])
@pytest.mark.parametrize("key", [KEY, BARE], ids=["full", "bare"])
async def test_every_preset_renders_the_same_through_the_worker(renderer: BoundedRenderer, preset: str, key) -> None:  # type: ignore[no-untyped-def]
    template = SecretTemplate(preset=preset, data={"extra.txt": "{{ accessKeyId }}|{{ buckets | join(',') }}\n"})
    assert await renderer.render(key, template) == render_secret_data(key, template)
    data = await renderer.render(key, template)
    assert list(data) == list(render_secret_data(key, template))  # the key order survives the trip


async def test_a_lone_surrogate_survives_the_trip(renderer: BoundedRenderer) -> None:
    data = await renderer.render(KEY, SecretTemplate(data={"x": "{{ '\\ud800' }}"}, include_preset=False))
    assert data == {"x": "\ud800"}


async def test_template_errors_come_back_as_template_errors(renderer: BoundedRenderer) -> None:
    with pytest.raises(TemplateError) as caught:
        await renderer.render(KEY, SecretTemplate(data={"conf": "{{ 1 // 0 }}"}))
    assert caught.value.reason == TemplateError.EVALUATION
    assert caught.value.secret_key == "conf"
    assert "division by zero" in str(caught.value)
    assert renderer.started == 1  # the worker survives an ordinary error


async def test_a_render_over_the_wall_time_is_killed_and_the_worker_replaced() -> None:
    renderer = BoundedRenderer(wall_seconds=0.02)
    try:
        await renderer.start()
        with pytest.raises(TemplateError) as caught:
            await renderer.render(KEY, SecretTemplate(data={"ok": "{{ bucket }}", "slow": SLOW}))
        assert caught.value.reason == TemplateError.LIMIT
        assert caught.value.secret_key == "slow"  # named from the worker's progress reports
        assert str(caught.value) == "Secret key 'slow': rendering exceeded the time limit and was stopped"
        assert renderer.killed == 1
        assert await renderer.render(KEY, SecretTemplate(data={"ok": "{{ bucket }}"})) == {
            **render_secret_data(KEY, SecretTemplate()),
            "ok": "media",
        }
        assert renderer.started == 2
    finally:
        await renderer.aclose()


async def test_a_render_over_the_memory_limit_fails_and_a_fresh_worker_follows() -> None:
    tight = BoundedRenderer(memory_bytes=256 * 1024)
    roomy = BoundedRenderer()  # the default limit lets the same template through
    try:
        with pytest.raises(TemplateError) as caught:
            await tight.render(KEY, SecretTemplate(data={"big": HUNGRY}, include_preset=False))
        assert caught.value.reason == TemplateError.LIMIT
        assert caught.value.secret_key == "big"
        assert SECRET not in str(caught.value)
        assert await tight.render(KEY, SecretTemplate(data={"ok": "{{ region }}"}, include_preset=False)) == {
            "ok": "us-west-004"
        }
        assert tight.started == 2  # the worker that ran out of memory was not reused
        assert await roomy.render(KEY, SecretTemplate(data={"big": HUNGRY}, include_preset=False)) == {"big": "4000"}
    finally:
        await tight.aclose()
        await roomy.aclose()


async def test_rehearse_returns_placeholder_data_and_caches_it(renderer: BoundedRenderer) -> None:
    template = SecretTemplate(preset="aws", data={"url": "{{ endpoint }}/{{ bucket }}"})
    data = await renderer.rehearse(template, ("media",), ())
    assert set(data) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "url"}
    assert data["url"].endswith("/media")
    requests = renderer.requests
    data["url"] = "changed by the caller"
    again = await renderer.rehearse(template, ("media",), ())
    assert renderer.requests == requests  # a cache hit: no worker involved
    assert again["url"].endswith("/media")  # and the cache kept its own copy
    await renderer.rehearse(template, ("other",), ())
    assert renderer.requests == requests + 1  # buckets are part of the cache key


async def test_a_failed_rehearsal_is_remembered(renderer: BoundedRenderer) -> None:
    template = SecretTemplate(data={"x": "{% if provider == 'b2' %}{{ 1 // 0 }}{% endif %}"})
    for _ in range(3):
        with pytest.raises(TemplateError, match="division by zero"):
            await renderer.rehearse(template, (), ())
    assert renderer.requests == 1


async def test_a_rehearsal_does_not_tell_itself_from_a_real_key(renderer: BoundedRenderer) -> None:
    # The M2 repro: a template that fails only outside the rehearsal.
    template = SecretTemplate(data={"x": "{% if provider != 'placeholder' %}{{ 1 // 0 }}{% endif %}"})
    with pytest.raises(TemplateError):
        await renderer.rehearse(template, (), ())


async def test_a_rehearsal_stopped_at_the_time_limit_is_retried_after_a_while() -> None:
    renderer = BoundedRenderer(wall_seconds=0.02, kill_retry_seconds=0.2)
    try:
        await renderer.start()
        template = SecretTemplate(data={"slow": SLOW})
        for _ in range(2):
            with pytest.raises(TemplateError, match="time limit"):
                await renderer.rehearse(template, (), ())
        assert renderer.requests == 1
        await asyncio.sleep(0.25)
        with pytest.raises(TemplateError, match="time limit"):
            await renderer.rehearse(template, (), ())
        assert renderer.requests == 2
    finally:
        await renderer.aclose()


async def test_validation_runs_in_the_rehearsal(renderer: BoundedRenderer) -> None:
    with pytest.raises(TemplateError) as caught:
        await renderer.rehearse(SecretTemplate(preset="vault"), (), ())
    assert caught.value.reason == TemplateError.UNKNOWN_PRESET
    with pytest.raises(TemplateError) as caught:
        await renderer.rehearse(SecretTemplate(data={"bad key": "x"}), (), ())
    assert caught.value.reason == TemplateError.INVALID_KEY


async def test_fifty_concurrent_renders_and_a_responsive_event_loop() -> None:
    renderer = BoundedRenderer(workers=2)
    ticks: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.05)

    try:
        beating = asyncio.create_task(heartbeat())
        keys = [replace(KEY, access_key_id=f"AKID{i:04d}") for i in range(50)]
        template = SecretTemplate(data={"id": "{{ accessKeyId }}", "slow": SLOW})
        bombs = [
            renderer.render(KEY, SecretTemplate(data={"bomb": "{% set s = 'a' * 65536 %}{{ [s] * 4096 }}"}))
            for _ in range(3)
        ]
        results = await asyncio.gather(
            *(renderer.render(key, template) for key in keys), *bombs, return_exceptions=True
        )
        stop.set()
        await beating
    finally:
        await renderer.aclose()
    for key, result in zip(keys, results, strict=False):
        assert isinstance(result, dict), result
        assert result["id"] == key.access_key_id
    assert all(isinstance(result, TemplateError) for result in results[50:])
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    assert len(gaps) >= 3
    assert max(gaps) < 0.25, f"the event loop stalled for {max(gaps):.3f} s"


async def test_the_worker_gets_none_of_the_operator_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("STORAGE_TOKEN_SECRET", SECRET)
    renderer = BoundedRenderer()
    try:
        await renderer.start()
        worker = renderer._idle[0].process
        with open(f"/proc/{worker.pid}/environ", "rb") as environ:
            variables = environ.read().split(b"\0")
        assert not any(b"KUBERNETES" in v or SECRET.encode() in v for v in variables)
    finally:
        await renderer.aclose()


async def test_aclose_stops_the_workers() -> None:
    renderer = BoundedRenderer(workers=2)
    await asyncio.gather(renderer.start(), renderer.start())
    processes = [worker.process for worker in renderer._idle]
    await renderer.aclose()
    assert all(process.returncode is not None for process in processes)


def test_placeholders_look_like_real_keys() -> None:
    b2 = placeholder_material("b2", ("b",), ("p/",))
    us3 = placeholder_material("us3", (), ())
    assert (b2.provider, us3.provider) == ("b2", "us3")
    assert len(b2.access_key_id) == 25
    assert len(b2.secret_access_key) == 31
    assert len(b2.key_name) == 100
    assert set(b2.native) == {"B2_APPLICATION_KEY_ID", "B2_APPLICATION_KEY"}
    assert {"US3_PUBLIC_KEY", "US3_PRIVATE_KEY"} <= set(us3.native)
    assert (b2.buckets, b2.prefixes) == (("b",), ("p/",))
