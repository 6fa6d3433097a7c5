"""Provider credentials read from a mounted directory (a Kubernetes Secret) and reloaded on change.

The Secret volume holds one file per key. Kubernetes updates it by writing a new
timestamped directory and atomically swapping the ``..data`` symlink the files
point through, so a change shows up as a new resolved path (or inode, mtime,
size) of a file: that is what is compared, every ``interval`` seconds, by a
background thread and lazily on use. The token is held in a :class:`Secret`,
whose ``repr`` and ``str`` never show it, and :func:`redact` scrubs it from any
text that might reach a log, an error or a result.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# File names inside the credentials directory; they must equal the blueprint's
# (qhybrid.blueprint.gateway.PROVIDER_*_FILE), which a test checks.
PROVIDER_TOKEN_FILE = "ibm-quantum-token"
PROVIDER_INSTANCE_FILE = "ibm-quantum-instance"
_FILES = (PROVIDER_TOKEN_FILE, PROVIDER_INSTANCE_FILE)

log = logging.getLogger("qhybrid.gateway.credentials")


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        """Wrap ``value``."""
        self._value = value

    def reveal(self) -> str:
        """Return the secret; call only where it is handed to the provider's client."""
        return self._value

    def __repr__(self) -> str:
        """Return a placeholder."""
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        """Compare by value (used to notice a rotated token)."""
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        """Hash by value."""
        return hash(self._value)


@dataclass(frozen=True)
class Credentials:
    """One consistent view of the directory."""

    token: Secret | None
    instance: str | None
    generation: int  # increases by one at each load that changed something
    loaded_at: float  # time.time() of that load


_Stamp = tuple[str, int, int, int] | None


class CredentialStore:
    """Holds the current credentials and reloads them when their files change."""

    def __init__(self, directory: Path | None, *, interval: float = 2.0) -> None:
        """Load ``directory`` now (None: no provider credentials, for local backends only)."""
        self.directory = directory
        self.interval = interval
        self._lock = threading.Lock()
        self._stamps: dict[str, _Stamp] = {}
        self._checked = 0.0
        self._current = Credentials(None, None, 0, time.time())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reload_if_changed()

    def _stamp(self, name: str) -> _Stamp:
        assert self.directory is not None
        path = self.directory / name
        try:
            real = os.path.realpath(path)
            info = os.stat(real)
        except OSError:
            return None
        return (real, info.st_ino, info.st_mtime_ns, info.st_size)

    def reload_if_changed(self) -> bool:
        """Re-read the files if any changed since the last look; return True when something changed."""
        if self.directory is None:
            return False
        with self._lock:
            self._checked = time.monotonic()
            stamps = {name: self._stamp(name) for name in _FILES}
            if stamps == self._stamps:
                return False
            values: dict[str, str | None] = {}
            for name in _FILES:
                try:
                    values[name] = (self.directory / name).read_text(encoding="utf-8").strip() or None
                except OSError:
                    values[name] = None
            # Stamps are taken again after reading: a swap during the read is seen next time.
            self._stamps = {name: self._stamp(name) for name in _FILES}
            token = values[PROVIDER_TOKEN_FILE]
            new = Credentials(
                Secret(token) if token else None,
                values[PROVIDER_INSTANCE_FILE],
                self._current.generation + 1,
                time.time(),
            )
            changed = (new.token, new.instance) != (self._current.token, self._current.instance)
            if changed or self._current.generation == 0:
                self._current = new
                log.info(
                    "provider credentials loaded (generation %d): token %s, instance %s",
                    new.generation,
                    "present" if new.token else "absent",
                    "present" if new.instance else "absent",
                )
            return changed

    def current(self) -> Credentials:
        """Return the credentials, re-checking the files if the last look is older than the interval."""
        if time.monotonic() - self._checked >= self.interval:
            self.reload_if_changed()
        return self._current

    def secrets(self) -> list[str]:
        """Return the secret strings to scrub from text."""
        token = self._current.token
        return [token.reveal()] if token else []

    def start(self) -> None:
        """Poll the directory in a daemon thread until :meth:`stop`."""
        if self.directory is None or self._thread is not None:
            return

        def poll() -> None:
            while not self._stop.wait(self.interval):
                try:
                    self.reload_if_changed()
                except Exception:  # noqa: BLE001 - a bad read must not end polling
                    log.warning("provider credentials could not be re-read; keeping the previous ones")

        self._thread = threading.Thread(target=poll, name="credentials-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()


def redact(text: str, secrets: list[str]) -> str:
    """Replace every occurrence of each secret in ``text`` with ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs the current provider secrets from every record."""

    def __init__(self, store: CredentialStore) -> None:
        """Scrub the secrets ``store`` holds at the time of each record."""
        super().__init__()
        self.store = store

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once, scrubbed, and drop the arguments."""
        secrets = self.store.secrets()
        if secrets:
            message = redact(record.getMessage(), secrets)
            record.msg, record.args = message, None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info), secrets)
                record.exc_info = None
        return True


class QueryStringFilter(logging.Filter):
    """Drop query strings from uvicorn's access log: a client may put a token there (never honoured).

    uvicorn logs ``(client, method, full path, HTTP version, status)``; the path keeps
    everything before ``?``, so nothing a client sent after it reaches a log.
    """

    ACCESS_LOGGER = "uvicorn.access"

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite an access record's path to the part before ``?``."""
        if record.name == self.ACCESS_LOGGER and isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            if isinstance(args[2], str) and "?" in args[2]:
                args[2] = args[2].split("?", 1)[0] + "?<redacted>"
                record.args = tuple(args)
        return True
