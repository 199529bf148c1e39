"""Generic runtime the controllers run on: settings, the work queue and workers, provider clients
per account with their rate limits, and metrics. Knows no StorageToken rule."""
