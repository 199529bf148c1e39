"""The StorageToken reconciler's steps, one job per module, talking through `.status`."""
