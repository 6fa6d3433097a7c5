"""``qhybrid gateway ...``: serve the gateway, mint and hash client tokens.

Only typer is imported here; the service's modules load when a command runs,
so ``qhybrid --help`` stays fast.
"""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from qhybrid.backends import GatewaySettings
from qhybrid.cli.options import gateway_client_options
from qhybrid.cli.terminal import fail

gateway_app = typer.Typer(no_args_is_help=True, help="The QPU gateway service and its client tokens.")

DEFAULT_STATE_DIR = Path("runs/gateway")
LOCAL_CLIENT = "local"
LOCAL_TOKEN_FILE = "local-client.token"


def _lock_state_dir(state_dir: Path) -> object:
    """Hold an exclusive lock on the state directory for the life of the process."""
    import fcntl

    handle = open(state_dir / "gateway.lock", "a+")  # noqa: SIM115 - held until the process exits
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise fail(f"--state-dir: {state_dir} is in use by another gateway process") from None
    return handle


@gateway_app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for the API, probes and /metrics.")] = 8080,
    config: Annotated[
        Path | None,
        typer.Option(
            envvar="QHYBRID_GATEWAY_CONFIG", help="Config file (YAML) [default: built-in, aer + fake_manila]."
        ),
    ] = None,
    credentials_dir: Annotated[
        Path | None, typer.Option(help="Directory of provider credential files (the mounted Secret).")
    ] = None,
    state_dir: Annotated[
        Path, typer.Option(help="Writable directory for the job database.")
    ] = DEFAULT_STATE_DIR,
    client_token_file: Annotated[
        list[Path] | None,
        typer.Option(help="Also accept the token in this file (client named after the file); repeatable."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error.")] = "info",
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Run the gateway until SIGTERM/SIGINT; accepted jobs survive a restart."""
    from qhybrid.errors import QhybridError
    from qhybrid.gateway.auth import hash_token, new_token, write_token_file
    from qhybrid.gateway.config import ClientConfig, default_config, load_config
    from qhybrid.gateway.credentials import CredentialStore, QueryStringFilter, RedactingFilter

    state_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock_state_dir(state_dir)
    try:
        settings = load_config(config) if config is not None else default_config()
    except QhybridError as error:
        raise fail(" ".join(str(error).split())) from None
    extra: list[ClientConfig] = []
    for path in client_token_file or []:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise fail(f"--client-token-file: {path}: cannot read ({error.strerror})") from None
        if not token:
            raise fail(f"--client-token-file: {path}: empty")
        extra.append(ClientConfig(name=path.stem, token_sha256=hash_token(token)))
    if not settings.clients and not extra:
        # Local use without a config: a token file only this user can read.
        token_path = state_dir / LOCAL_TOKEN_FILE
        if not token_path.is_file():
            write_token_file(token_path, new_token())
        extra.append(ClientConfig(name=LOCAL_CLIENT, token_sha256=hash_token(token_path.read_text().strip())))
    settings = settings.with_clients(tuple(extra))

    credentials = CredentialStore(credentials_dir, interval=settings.reload_interval_seconds)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(QueryStringFilter())  # before the secrets filter renders the message
    handler.addFilter(RedactingFilter(credentials))
    logging.basicConfig(level=log_level.upper(), handlers=[handler], force=True)
    # Qiskit logs every transpiler pass at INFO.
    logging.getLogger("qiskit").setLevel(max(logging.WARNING, logging.getLevelName(log_level.upper())))
    log = logging.getLogger("qhybrid.gateway")
    if any(c.name == LOCAL_CLIENT for c in extra):
        log.info("client %r authenticates with the token in %s", LOCAL_CLIENT, state_dir / LOCAL_TOKEN_FILE)

    import uvicorn

    from qhybrid.gateway.app import build_gateway, create_app
    from qhybrid.gateway.store import JobStore
    from qhybrid.gateway.timing import timed_protocol

    store = JobStore(state_dir / "jobs.sqlite3", synchronous=settings.synchronous)
    try:
        gateway = build_gateway(settings, store, credentials)
    except (ValueError, QhybridError) as error:
        raise fail(f"--config: {error}") from None
    app = create_app(gateway)
    gateway.parser.warm()  # start the OpenQASM parse workers now, not on the first submission
    # Qiskit's import leaves some hundred thousand long-lived objects; without freezing them
    # every full collection walks them all and stalls the event loop for tens of milliseconds.
    gc.freeze()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=access_log,
        timeout_graceful_shutdown=10,
        server_header=False,
        http=timed_protocol(),
    )
    store.close()
    del lock


@gateway_app.command("hash-token")
def hash_token_command(
    token_file: Annotated[
        Path | None, typer.Option(help="File holding the token [default: read one line from stdin].")
    ] = None,
) -> None:
    """Print the SHA-256 a config's ``token_sha256`` needs for a client token (never the token)."""
    from qhybrid.gateway.auth import hash_token

    token = token_file.read_text(encoding="utf-8") if token_file else sys.stdin.readline()
    if not token.strip():
        raise fail("no token given")
    print(hash_token(token))


@gateway_app.command("new-token")
def new_token_command(
    out: Annotated[Path, typer.Option(help="File to write the new token to (mode 0600).")],
    name: Annotated[str, typer.Option(help="Client name for the config snippet.")] = "qhybrid-workflow",
) -> None:
    """Mint a client token into a file and print the config entry (with its hash) for it."""
    from qhybrid.gateway.auth import hash_token, new_token, write_token_file

    if out.exists():
        raise fail(f"--out: {out} exists; remove it first or choose another path")
    token = new_token()
    write_token_file(out, token)
    print(f"- name: {name}\n  token_sha256: {hash_token(token)}")


def _client(gateway: GatewaySettings) -> Any:
    """Return a gateway client for the settings, or fail naming the missing flag."""
    from qhybrid.gateway.client import GatewayClient

    if gateway.url is None:
        raise fail("--gateway-url: not given (or set QHYBRID_GATEWAY_URL)")
    if gateway.token_file is None:
        raise fail("--gateway-token-file: not given (or set QHYBRID_GATEWAY_TOKEN_FILE)")
    return GatewayClient(gateway.url, gateway.token_file, max_attempts=3)


@gateway_app.command("jobs")
@gateway_client_options
def jobs_command(
    gateway: GatewaySettings,
    state: Annotated[
        str | None,
        typer.Option(help="Only jobs in this state: queued, running, succeeded, failed, cancelled."),
    ] = None,
    limit: Annotated[int, typer.Option(help="Jobs per page.")] = 50,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow every page.")] = False,
) -> None:
    """List your own jobs at the gateway, newest first."""
    from qhybrid.gateway.client import GatewayError

    client = _client(gateway)
    after = None
    rows = []
    try:
        while True:
            page = client.jobs(state=state, limit=limit, after=after)
            rows += page["jobs"]
            after = page["next"]
            if not all_pages or after is None:
                break
    except GatewayError as error:
        raise fail(f"--gateway-url: {error}") from None
    finally:
        client.close()
    for job in rows:
        typer.echo(
            f"{job['id']}  {job['state']:<9}  {job['backend']:<14}  {job['num_circuits']:>4} circuits  "
            f"{job['shots']:>6} shots  {job['job_key']}"
        )
    if after is not None and not all_pages:
        typer.echo(f"(more: --all, or {len(rows)} shown)")


@gateway_app.command("cancel")
@gateway_client_options
def cancel_command(
    gateway: GatewaySettings, job_id: Annotated[str, typer.Argument(help="The job to cancel.")]
) -> None:
    """Cancel one of your queued jobs at the gateway."""
    from qhybrid.gateway.client import GatewayError

    client = _client(gateway)
    try:
        job = client.cancel(job_id)
    except GatewayError as error:
        raise fail(f"JOB_ID: {error}") from None
    finally:
        client.close()
    typer.echo(f"{job['id']} {job['state']}")
