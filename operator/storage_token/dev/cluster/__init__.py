"""A real local Kubernetes control plane for tests and the sandbox.

`binaries` builds kube-apiserver, kube-controller-manager and etcd from Go
modules (cached outside git); `controlplane` starts and stops them.
"""
