"""NetworkPolicy pieces shared by the parts that isolate their pods."""

from __future__ import annotations

from collections.abc import Sequence
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


# The API server listens on 6443 on kind and kubeadm clusters and on 443 on EKS.
API_SERVER_PORTS = (443, 6443)


def api_server_egress_rule(cidrs: Sequence[str]) -> dict[str, Any]:
    """Return the egress rule to the API server at its endpoints in ``cidrs`` (the cluster's own ranges).

    Most CNIs apply policies after the ``kubernetes`` Service's ClusterIP:443 is
    translated to the API server's endpoint (6443 on kind and kubeadm, 443 on EKS);
    some match before the translation: 443 again.
    """
    return {
        "to": [{"ipBlock": {"cidr": cidr}} for cidr in cidrs],
        "ports": [{"protocol": "TCP", "port": port} for port in API_SERVER_PORTS],
    }
