"""The operator process: the `storage-token` CLI, kopf wiring (`handlers`), logging."""
