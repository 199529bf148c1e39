"""The development harness, beside the operator and not in its image: the local control plane
builder (`cluster`), strict provider emulators (`emulators`) and the sandbox."""
