"""Why the job store refused a write: the exceptions admission turns into HTTP answers."""

from __future__ import annotations


class BudgetExceeded(Exception):
    """The job would take the client over its shot budget."""

    def __init__(self, client: str, used: int, budget: int, cost: int) -> None:
        """Record the figures the error message names."""
        super().__init__(client, used, budget, cost)
        self.client, self.used, self.budget, self.cost = client, used, budget, cost


class KeyConflict(Exception):
    """The job key was used before for a different request."""

    def __init__(self, job_id: str) -> None:
        """Record the existing job."""
        super().__init__(job_id)
        self.job_id = job_id


class QueueFull(Exception):
    """The admission bound is reached."""


class StorageFull(Exception):
    """SQLite could not write for lack of space (or an I/O error); nothing of the write was kept."""
