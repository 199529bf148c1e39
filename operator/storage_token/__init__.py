"""StorageToken operator: scoped, expiring object-storage credentials in Secrets."""

__version__ = "0.1.0"
