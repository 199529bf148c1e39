"""The operator's metrics describe tokens, providers and calls."""

from __future__ import annotations

from e2e_support import apply_provider, create_token, metrics_text, wait_condition, wait_for
from kubernetes import client

from storage_token.dev.sandbox import Emulators, OperatorProcess


def test_metrics_describe_tokens_providers_and_calls(
    api: client.ApiClient, namespace: str, emulators: Emulators, operator: OperatorProcess
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2")
    create_token(api, namespace, "watched", providerRef={"name": "b2"}, permissions=["read"])
    wait_condition(api, namespace, "watched", "True")
    labels = f'name="watched",namespace="{namespace}"'  # the exposition sorts label names

    def published() -> str | None:
        text = metrics_text(operator)
        return text if f"storage_token_token_ready{{{labels}}}" in text else None

    text = wait_for(published, 10, "the token's metrics")
    for expected in (
        f"storage_token_token_ready{{{labels}}} 1.0",
        f"storage_token_token_expiry_timestamp_seconds{{{labels}}}",
        f"storage_token_token_renewal_timestamp_seconds{{{labels}}}",
        f"storage_token_pending_revocations{{{labels}}} 0.0",
        'storage_token_issuances_total{provider="b2",result="issued"}',
        'storage_token_provider_call_seconds_count{call="issue",outcome="ok",provider="b2"}',
        'storage_token_provider_call_seconds_count{call="check",outcome="ok",provider="b2"}',
        'storage_token_reconciles_total{kind="tokens",result="ok"}',
        "storage_token_work_queue_depth",
        'storage_token_token_watch_up{scope="*"} 1.0',  # a cluster-wide install: one scope, listed
    ):
        assert expected in text, expected
