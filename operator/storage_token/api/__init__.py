"""The custom resources as typed values: parsed specs and statuses, durations.

Nothing here talks to Kubernetes or a provider; `policy` and the controllers
read these values instead of raw dicts.
"""
