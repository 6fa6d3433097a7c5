"""Errors that reach the user as one clear line."""


class QhybridError(Exception):
    """Base class for errors the CLI prints as one line and exits non-zero on."""


class InputError(QhybridError):
    """Bad user input: names the field (flag, file, key) and what is wrong with it."""

    def __init__(self, field: str, problem: str) -> None:
        """Record which field is wrong and why."""
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class BackendUnavailable(QhybridError):
    """A backend cannot run here (missing package, device or service)."""


class RunDirError(QhybridError):
    """The run directory is missing pieces, holds another run, or is corrupt."""


class RunFailed(QhybridError):
    """The run started but could not finish (a backend kept failing); what finished is kept for --resume."""
