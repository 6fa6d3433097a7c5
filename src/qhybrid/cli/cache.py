"""``qhybrid cache stats|gc|verify|clear``: look after the result cache that runs share."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from qhybrid.cache.session import CacheSettings
from qhybrid.cache.stores import ResultStore, open_store
from qhybrid.cli.options import cache_options
from qhybrid.cli.terminal import EXIT_RUN_FAILED, user_errors
from qhybrid.errors import InputError

cache_app = typer.Typer(no_args_is_help=True, help="The result cache: stats, gc, verify, clear.")
_JSON = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _store(cache: CacheSettings) -> ResultStore:
    location = cache.resolved()
    if location is None:
        raise InputError("--no-cache", "name the cache to look at with --cache (or leave the default)")
    try:
        return open_store(location, max_bytes=cache.max_bytes)
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - lmdb and redis raise their own kinds
        raise InputError("--cache", f"{location}: cannot open: {error}") from None


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, sort_keys=True))
        return
    for key, value in result.items():
        if key != "problems":
            typer.echo(f"{key:<24}{value}")
    for problem in result.get("problems", []):
        typer.echo(f"problem: {problem['key']}: {problem['problem']}")


@cache_app.command("stats")
@cache_options
def stats(cache: CacheSettings, as_json: _JSON = False) -> None:
    """Entries, bytes used, the size bound and how entries are evicted."""
    with user_errors():
        store = _store(cache)
        try:
            result = store.stats()
        except Exception as error:  # noqa: BLE001 - an unreachable Redis, say
            raise InputError("--cache", f"{store.location}: {error}") from None
        finally:
            store.close()
    _print(result, as_json)


@cache_app.command("gc")
@cache_options
def gc(
    cache: CacheSettings,
    max_mib: Annotated[
        int | None, typer.Option(help="Evict least recently used entries down to this size (MiB).")
    ] = None,
    as_json: _JSON = False,
) -> None:
    """Evict least recently used entries (LMDB; Redis evicts by its own maxmemory policy)."""
    with user_errors():
        store = _store(cache)
        try:
            evicted = store.gc(None if max_mib is None else max_mib << 20)
            result = {"evicted": evicted, **store.stats()}
        finally:
            store.close()
    _print(result, as_json)


@cache_app.command("verify")
@cache_options
def verify(
    cache: CacheSettings,
    sample: Annotated[int, typer.Option(help="How many entries to recompute, chosen at random.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the random choice.")] = 0,
    backend: Annotated[str, typer.Option(help="Simulator to recompute on: cpu or gpu.")] = "cpu",
    as_json: _JSON = False,
) -> None:
    """Recompute a random sample of entries and compare bitwise; exit 1 on any mismatch."""
    from qhybrid.pipeline.cache_verify import verify_sample

    with user_errors():
        if sample < 1:
            raise InputError("--sample", f"must be at least 1, got {sample}")
        if backend not in ("cpu", "gpu"):
            raise InputError("--backend", f"only simulators can recompute entries, not {backend!r}")
        store = _store(cache)
        try:
            result = verify_sample(store, sample, seed=seed, backend=backend)
        finally:
            store.close()
    _print(result, as_json)
    if result["mismatch"] or result["corrupt"]:
        raise typer.Exit(EXIT_RUN_FAILED)


@cache_app.command("clear")
@cache_options
def clear(
    cache: CacheSettings,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    as_json: _JSON = False,
) -> None:
    """Delete every qhybrid entry from the store (other keys in a shared Redis stay)."""
    with user_errors():
        store = _store(cache)
        try:
            if not yes and not typer.confirm(f"delete every qhybrid entry in {store.location}?"):
                raise typer.Exit(1)
            deleted = store.delete(list(store.keys(b"qhybrid:")))
        finally:
            store.close()
    _print({"store": store.location, "deleted": deleted}, as_json)
