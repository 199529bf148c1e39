"""Talking to the Kubernetes API: an async face over the official client, events, conditions.

The only place that imports `kubernetes`; controllers go through `Kube`.
"""
