"""Reconcilers: gather state, ask `policy`, act through `kube` and the provider clients.

`tokens` issues, renews and revokes; `providers` verifies accounts; `sweep`
revokes orphans; `runtime` queues and schedules the work.
"""
