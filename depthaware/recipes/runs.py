"""The training runs behind the findings report: planned, deduplicated, cached, run in parallel.

A finding asks for runs (:class:`RunSpec`: a kind, a frozen config, a seed, and the measurements
it needs, ``extras``). Findings that need the same run share it: the specs are merged by
``(kind, config, seed)`` and their extras united. Each result (:mod:`.results`) is written, as
its ``to_dict``'s JSON, atomically to ``cache_dir/<key>.json`` as soon as it is done, so an
interrupted report resumes run by run. Runs are independent, so ``jobs > 1`` spreads them over
processes (one thread each).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .._io import finite_or_none, write_json
from ..errors import Interrupted, Terminated
from ..version import __version__
from .acting_run import acting_run
from .images import image_run
from .results import RESULTS, CachedResult
from .sine import sine_run

__all__ = ["RUNNERS", "RunSpec", "execute"]

log = logging.getLogger(__name__)

#: kind -> the function running ``f(config, seed, extras) -> result`` (of ``RESULTS[kind]``)
RUNNERS: dict[str, Callable[[Any, int, list[str]], CachedResult]] = {
    "sine": sine_run,
    "image": image_run,
    "acting": acting_run,
}


@dataclass(frozen=True)
class RunSpec:
    kind: str
    config: Any  # a frozen dataclass (SineConfig, ImageConfig, ActingConfig)
    seed: int
    extras: frozenset = frozenset()

    @property
    def key(self) -> str:
        """Names the run by what determines it: the package's version, kind, config and seed
        (not the extras measured on it)."""
        payload = {
            "version": __version__,
            "kind": self.kind,
            "config": asdict(self.config),
            "seed": self.seed,
        }
        digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return f"{self.kind}-{self.seed}-{digest[:16]}"


def _run(spec: RunSpec) -> dict:
    """The run's result as its cache file holds it (what a worker process sends back)."""
    runner = RUNNERS[spec.kind]
    return finite_or_none(runner(spec.config, spec.seed, sorted(spec.extras)).to_dict())


def _worker_init(parent: int) -> None:
    """One thread per worker; SIGINT is the main process's to handle (a terminal's Ctrl-C reaches
    the whole process group): it stops the queue and ends the workers itself. A parent killed
    with SIGKILL (the OOM killer, a scheduler's hard kill) can end nothing, so each worker
    watches its parent and exits once it is gone (:func:`_exit_with_parent`). ``parent`` is the
    main process's pid, given by it: a worker still starting when the parent was killed is
    already another process's child, and exits at once."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True
    ).start()


def _exit_with_parent(parent: int, every: float = 0.5) -> None:
    """Ends this worker process as soon as ``parent`` is no longer its parent (the parent died
    and the worker was handed to another process): a run in flight, or a wait on the empty
    queue, would otherwise hold its memory forever."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def _raise_terminated(signum, frame):
    raise Terminated


def _read_cached(path: Path, kind: str):
    """The cached result at ``path`` (a :data:`~depthaware.recipes.results.RESULTS` object), or
    None (with a warning naming the file) if it is damaged: the run is computed again."""
    if not path.is_file():
        return None
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(cached, dict) or not isinstance(cached.get("extras", []), list):
            raise ValueError("not a run's result (a JSON object with a list of extras)")
        return RESULTS[kind].from_dict(cached)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
        log.warning("%s is damaged (%s); computing the run again", path, e)
        return None


def execute(
    specs: Iterable[RunSpec],
    cache_dir: str | os.PathLike,
    *,
    jobs: int = 1,
    progress=True,
    names: dict[str, str] | None = None,
) -> tuple[dict, int]:
    """Run every spec not cached yet; returns ``{spec.key: result}`` (a
    :data:`~depthaware.recipes.results.RESULTS` object) for all of them and the
    number of runs computed now (the others came from ``cache_dir``). The progress bar names
    each run as it finishes (``names[spec.key]``, e.g. its findings, then kind and seed), with
    an ETA from the finished runs' mean duration.

    A cached run that lacks some of the extras asked for now is computed again with the union of
    its extras and the new ones, so the cache only grows. A damaged cache file is named in a
    warning and its run computed again. Ctrl-C (SIGINT) or SIGTERM stops the queue at once and
    ends the worker processes; every run finished by then is already saved, and
    :class:`~depthaware.errors.Interrupted` says how many.
    """
    merged: dict[str, RunSpec] = {}
    for spec in specs:
        if spec.kind not in RUNNERS:
            raise ValueError(f"unknown run kind {spec.kind!r}; known: {sorted(RUNNERS)}")
        old = merged.get(spec.key)
        extras = spec.extras | (old.extras if old else frozenset())
        merged[spec.key] = RunSpec(spec.kind, spec.config, spec.seed, frozenset(extras))
    cache_dir = Path(cache_dir)
    results, todo = {}, []
    for key, spec in merged.items():
        cached = _read_cached(cache_dir / f"{key}.json", spec.kind)
        if cached is not None:
            have = frozenset(cached.extras)
            if spec.extras <= have:
                results[key] = cached
                continue
            spec = RunSpec(spec.kind, spec.config, spec.seed, spec.extras | have)
        todo.append(spec)
    # the longest first (images, then runs with measurements), so that no process idles at the end
    todo.sort(key=lambda s: (s.kind != "image", -len(s.extras)))
    bar = tqdm(total=len(todo), disable=not progress, desc="runs", smoothing=0)
    names = names or {}

    def done(spec: RunSpec, result: dict) -> None:
        write_json(cache_dir / f"{spec.key}.json", result)
        results[spec.key] = RESULTS[spec.kind].from_dict(result)  # as a cached one reads
        label = f"{names[spec.key]}: " if spec.key in names else ""
        bar.set_postfix_str(f"done {label}{spec.kind} seed {spec.seed}", refresh=False)
        bar.update()

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main else None
    try:
        if jobs > 1 and len(todo) > 1:
            _in_pool(todo, jobs, done)
        else:
            for spec in todo:
                done(spec, _run(spec))
    except (KeyboardInterrupt, Terminated):
        finished = sum(spec.key in results for spec in todo)
        raise Interrupted(
            f"interrupted: kept the {finished} runs finished now and {len(merged) - len(todo)} "
            f"cached before in {cache_dir}; {len(todo) - finished} not finished. The same "
            "command resumes from them."
        ) from None
    finally:
        bar.close()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    return results, len(todo)


def _in_pool(todo: list[RunSpec], jobs: int, done) -> None:
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    ours = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(
        min(jobs, len(todo)), context, initializer=_worker_init, initargs=(os.getpid(),)
    )
    try:
        futures = {pool.submit(_run, spec): spec for spec in todo}
        for future in as_completed(futures):
            try:
                result = future.result()
            except BaseException as err:  # a bug: stop at once, not after every queued run
                raise RuntimeError(f"run {futures[future].key} failed: {err!r}") from err
            done(futures[future], result)
    except BaseException:
        # stop the queue and end the runs in flight (their work is lost either way); waiting for
        # them, as the pool's exit would, computes every queued run only to discard it
        pool.shutdown(wait=False, cancel_futures=True)
        for child in set(multiprocessing.active_children()) - ours:
            child.terminate()
        for child in set(multiprocessing.active_children()) - ours:
            child.join(timeout=5)
        raise
    pool.shutdown()
