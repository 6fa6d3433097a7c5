"""The platform blueprint as plain data.

Every Kubernetes object the Pulumi program creates is built here by a pure
function that returns a plain dict, so the same objects are unit-tested,
validated against schemas and rendered to YAML (``qhybrid platform render``) without
Pulumi, a cluster or Docker. ``infra/`` only wires them into resources.
"""
