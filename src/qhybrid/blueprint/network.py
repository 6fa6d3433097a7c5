"""NetworkPolicy pieces shared by the parts that isolate their pods."""

from __future__ import annotations

from typing import Any


def namespace_peer(namespace: str, pod_labels: dict[str, str]) -> dict[str, Any]:
    """Return a policy peer: the pods with ``pod_labels`` in ``namespace``."""
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "podSelector": {"matchLabels": dict(pod_labels)},
    }


def dns_egress_rule() -> dict[str, Any]:
    """Return the egress rule to the cluster DNS (kube-dns/CoreDNS in kube-system), UDP and TCP 53."""
    return {
        "to": [namespace_peer("kube-system", {"k8s-app": "kube-dns"})],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
