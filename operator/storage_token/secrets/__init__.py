"""What goes into an issued key's Secret: presets and sandboxed templates (`render`), rendered in
bounded worker processes (`worker`), checked as the API server would check them (`checks`). Pure:
no Kubernetes, no provider calls."""
