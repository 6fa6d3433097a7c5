"""The Pod Security Standards (``baseline`` and ``restricted``, policy version ``latest``) as checks.

Written from the standards as Kubernetes documents them (concepts/security/
pod-security-standards), control by control, so that a pod spec can be checked here
the way the PodSecurity admission plugin checks it in a ``restricted`` namespace.
Each violation is one line naming the control and the containers or volumes at fault,
in the admission plugin's words where it has them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

PodSpec = Mapping[str, Any]

BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
        "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    }
)  # fmt: skip
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)  # fmt: skip
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
SECCOMP_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})


def containers(spec: PodSpec) -> Iterator[Mapping[str, Any]]:
    """Yield every container of a pod spec: init, regular and ephemeral."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _security(container: Mapping[str, Any]) -> Mapping[str, Any]:
    return container.get("securityContext") or {}


def _names(spec: PodSpec, bad: Callable[[Mapping[str, Any]], bool]) -> list[str]:
    return [str(c.get("name")) for c in containers(spec) if bad(c)]


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def _container_rule(
    spec: PodSpec, bad: Callable[[Mapping[str, Any]], bool], what: str, must: str
) -> list[str]:
    names = _names(spec, bad)
    if not names:
        return []
    noun = "container" if len(names) == 1 else "containers"
    return [f"{what} ({noun} {_quoted(names)} must {must})"]


def baseline_violations(spec: PodSpec, annotations: Mapping[str, str] | None = None) -> list[str]:
    """Return how ``spec`` breaks the ``baseline`` standard (empty when it meets it)."""
    pod_security = spec.get("securityContext") or {}
    out: list[str] = []
    # HostProcess
    host_process = bool((pod_security.get("windowsOptions") or {}).get("hostProcess")) or bool(
        _names(spec, lambda c: bool((_security(c).get("windowsOptions") or {}).get("hostProcess")))
    )
    if host_process:
        out.append(
            "hostProcess (pod and containers must not set securityContext.windowsOptions.hostProcess=true)"
        )
    # Host namespaces
    shared = [key for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    if shared:
        out.append(f"host namespaces ({'='.join(shared)}=true)")
    # Privileged containers
    out += _container_rule(
        spec,
        lambda c: bool(_security(c).get("privileged")),
        "privileged",
        "not set securityContext.privileged=true",
    )
    # Capabilities beyond the baseline set
    out += _container_rule(
        spec,
        lambda c: bool(
            set((_security(c).get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        ),
        "non-default capabilities",
        "not include capabilities beyond the baseline set in securityContext.capabilities.add",
    )
    # HostPath volumes
    host_paths = [str(v.get("name")) for v in spec.get("volumes") or [] if "hostPath" in v]
    if host_paths:
        out.append(f"hostPath volumes (volumes {_quoted(host_paths)})")
    # Host ports
    out += _container_rule(
        spec,
        lambda c: any(port.get("hostPort") for port in c.get("ports") or []),
        "hostPort",
        "not set hostPort",
    )
    # AppArmor
    allowed_apparmor = ("RuntimeDefault", "Localhost")
    if (pod_security.get("appArmorProfile") or {}).get("type", "RuntimeDefault") not in allowed_apparmor:
        out.append("forbidden AppArmor profile (pod securityContext.appArmorProfile.type)")
    out += _container_rule(
        spec,
        lambda c: (
            (_security(c).get("appArmorProfile") or {}).get("type", "RuntimeDefault") not in allowed_apparmor
        ),
        "forbidden AppArmor profile",
        "not set securityContext.appArmorProfile.type=Unconfined",
    )
    for key, value in (annotations or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            out.append(f"forbidden AppArmor profile (annotation {key}={value})")

    # SELinux
    def bad_selinux(options: Mapping[str, Any]) -> bool:
        return options.get("type", "") not in SELINUX_TYPES or "user" in options or "role" in options

    if bad_selinux(pod_security.get("seLinuxOptions") or {}):
        out.append("seLinuxOptions (pod securityContext.seLinuxOptions: forbidden type, user or role)")
    out += _container_rule(
        spec,
        lambda c: bad_selinux(_security(c).get("seLinuxOptions") or {}),
        "seLinuxOptions",
        "not set a forbidden securityContext.seLinuxOptions type, user or role",
    )
    # /proc mount
    out += _container_rule(
        spec,
        lambda c: _security(c).get("procMount", "Default") != "Default",
        "procMount",
        "not set securityContext.procMount other than Default",
    )
    # Seccomp (baseline: never Unconfined)
    if (pod_security.get("seccompProfile") or {}).get("type") == "Unconfined":
        out.append("seccompProfile (pod must not set securityContext.seccompProfile.type=Unconfined)")
    out += _container_rule(
        spec,
        lambda c: (_security(c).get("seccompProfile") or {}).get("type") == "Unconfined",
        "seccompProfile",
        "not set securityContext.seccompProfile.type=Unconfined",
    )
    # Sysctls
    unsafe = [s.get("name") for s in pod_security.get("sysctls") or [] if s.get("name") not in SAFE_SYSCTLS]
    if unsafe:
        out.append(f"forbidden sysctls ({', '.join(map(str, unsafe))})")
    return out


def restricted_violations(spec: PodSpec, annotations: Mapping[str, str] | None = None) -> list[str]:
    """Return how ``spec`` breaks the ``restricted`` standard (empty when it meets it)."""
    pod_security = spec.get("securityContext") or {}
    out = baseline_violations(spec, annotations)
    # Volume types
    restricted_volumes = [
        str(v.get("name"))
        for v in spec.get("volumes") or []
        if not set(v) - {"name"} <= RESTRICTED_VOLUME_TYPES
    ]
    if restricted_volumes:
        out.append(
            f"restricted volume types (volumes {_quoted(restricted_volumes)} must use an allowed type)"
        )
    # Privilege escalation
    out += _container_rule(
        spec,
        lambda c: _security(c).get("allowPrivilegeEscalation") is not False,
        "allowPrivilegeEscalation != false",
        "set securityContext.allowPrivilegeEscalation=false",
    )
    # Running as non-root
    pod_non_root = pod_security.get("runAsNonRoot") is True

    def not_non_root(c: Mapping[str, Any]) -> bool:
        value = _security(c).get("runAsNonRoot")
        return value is False or (value is None and not pod_non_root)

    if pod_security.get("runAsNonRoot") is False:
        out.append("runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)")
    out += _container_rule(
        spec, not_non_root, "runAsNonRoot != true", "set securityContext.runAsNonRoot=true"
    )
    # Running as a non-root user
    if pod_security.get("runAsUser") == 0:
        out.append("runAsUser=0 (pod must not set runAsUser=0)")
    out += _container_rule(
        spec, lambda c: _security(c).get("runAsUser") == 0, "runAsUser=0", "not set runAsUser=0"
    )
    # Seccomp (restricted: RuntimeDefault or Localhost, at pod level or on every container)
    pod_seccomp = (pod_security.get("seccompProfile") or {}).get("type") in SECCOMP_ALLOWED

    def no_seccomp(c: Mapping[str, Any]) -> bool:
        kind = (_security(c).get("seccompProfile") or {}).get("type")
        return kind not in SECCOMP_ALLOWED and not (kind is None and pod_seccomp)

    out += _container_rule(
        spec,
        no_seccomp,
        "seccompProfile",
        'set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"',
    )

    # Capabilities: drop ALL, add at most NET_BIND_SERVICE
    def capabilities_not_dropped(c: Mapping[str, Any]) -> bool:
        capabilities = _security(c).get("capabilities") or {}
        return "ALL" not in (capabilities.get("drop") or []) or bool(
            set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
        )

    out += _container_rule(
        spec,
        capabilities_not_dropped,
        "unrestricted capabilities",
        'set securityContext.capabilities.drop=["ALL"] and add at most NET_BIND_SERVICE',
    )
    return out
