"""Reconcilers: gather state, ask `policy`, act through `kube`, `secrets` and the provider clients.

`tokens` issues, renews and revokes; `providers` verifies accounts and `provider_release` holds
them while tokens need them; `sweep` revokes leftovers; `manager` wires watch events to queues.
"""
