"""Reconcilers: gather state, ask `policy`, act through `kube`, `secrets` and the provider clients.

`tokens` is the StorageToken reconciler; its steps (`steps/`: issuing, recording, readiness,
revocation, deletion) each do one job and talk through `.status`. `providers` verifies accounts and
`provider_release` holds them while tokens need them; `sweep` revokes leftovers; `manager` wires
watch events to queues.
"""
