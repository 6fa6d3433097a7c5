"""Which canonical form each of a run's subexperiments is computed in: its leaf, else its own.

A subexperiment built from a partition template has a leaf form (:mod:`qhybrid.cache.leaves`):
made from the partition, canonicalised once, in an order all of the partition's leaves share.
Any other (a wire-cut partition with resets) is canonicalised on its own. Generate and
execute both ask here, so every process, worker and pod computes a subexperiment in the
same form: the plan's ``origins`` say where each comes from, and a process that did not
partition the problem itself partitions it again from the spec (deterministically) the
first time it needs a leaf.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from qiskit import QuantumCircuit

from qhybrid.cache.canonical_ref import CanonicalRef
from qhybrid.cache.leaves import Origin, ProblemLeaves
from qhybrid.cutting.assemble import SubcircuitTemplate
from qhybrid.cutting.plan import observable_collection, partition_templates
from qhybrid.cutting.problem import CuttingProblem
from qhybrid.pipeline.simulate import form_refs
from qhybrid.spec import RunSpec, problem_of

# Problems' leaves this process made, by spec hash: generate makes them, and an in-process
# execute of the same run uses them again.
_KEPT: OrderedDict[str, ProblemLeaves] = OrderedDict()
_KEPT_PROBLEMS = 4


def keep_problem_leaves(
    spec: RunSpec, problem: CuttingProblem, templates: Mapping[str, SubcircuitTemplate]
) -> ProblemLeaves:
    """Make the leaves of ``spec``'s problem from its partition templates, and keep them.

    Made again on every call (a few milliseconds): whoever just partitioned the problem
    pays for its leaves, as a cold process would.
    """
    groups = {label: observable_collection(problem.subobservables[label]).groups for label in templates}
    leaves = _KEPT[spec.spec_hash()] = ProblemLeaves(templates, groups)
    _KEPT.move_to_end(spec.spec_hash())
    while len(_KEPT) > _KEPT_PROBLEMS:
        _KEPT.popitem(last=False)
    return leaves


def problem_leaves(spec: RunSpec) -> ProblemLeaves:
    """The leaves of ``spec``'s problem, partitioning it again if this process has not."""
    leaves = _KEPT.get(spec.spec_hash())
    if leaves is not None:
        return leaves
    problem = problem_of(spec)
    return keep_problem_leaves(spec, problem, partition_templates(problem.subcircuits))


def origin_from_json(data: Any) -> Origin | None:
    """Read one of a manifest's ``origins``."""
    if data is None:
        return None
    label, group, local_ids = data
    return str(label), int(group), tuple(int(i) for i in local_ids)


def run_refs(
    spec: RunSpec,
    origins: Sequence[Origin | None],
    circuits: Sequence[QuantumCircuit],
    fingerprints: Sequence[str],
) -> list[CanonicalRef | None]:
    """Each unique subexperiment's canonical form as plain data: its leaf's, else its own circuit's."""
    leaves = problem_leaves(spec)
    refs, _ = form_refs(
        [leaves.leaf(origin) for origin in origins], lambda own: [circuits[i] for i in own], fingerprints
    )
    return refs
