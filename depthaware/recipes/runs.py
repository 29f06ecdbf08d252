"""The training runs behind the findings report: planned, deduplicated, cached, run in parallel.

A finding asks for runs (:class:`RunSpec`: a kind, a frozen config, a seed, and the measurements
it needs, ``extras``). Findings that need the same run share it: the specs are merged by
``(kind, config, seed)`` and their extras united. Each result is a JSON-ready dict, written
atomically to ``cache_dir/<key>.json`` as soon as it is done, so an interrupted report resumes
run by run. Runs are independent, so ``jobs > 1`` spreads them over processes (one thread each).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .._io import finite_or_none, write_json

__all__ = ["RUNNERS", "RunSpec", "execute"]

#: kind -> "module:function" running ``f(config, seed, extras) -> dict``
RUNNERS = {
    "sine": "depthaware.recipes.sine:sine_run",
    "image": "depthaware.recipes.images:image_run",
}


@dataclass(frozen=True)
class RunSpec:
    kind: str
    config: object  # a frozen dataclass (SineConfig, ImageConfig)
    seed: int
    extras: frozenset = frozenset()

    @property
    def key(self) -> str:
        """Names the run by what determines it: the package's version, kind, config and seed
        (not the extras measured on it)."""
        from .. import __version__

        payload = {
            "version": __version__,
            "kind": self.kind,
            "config": asdict(self.config),
            "seed": self.seed,
        }
        digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return f"{self.kind}-{self.seed}-{digest[:16]}"


def _run(spec: RunSpec) -> dict:
    module, _, name = RUNNERS[spec.kind].partition(":")
    runner = getattr(importlib.import_module(module), name)
    return finite_or_none(runner(spec.config, spec.seed, sorted(spec.extras)))


def _one_thread() -> None:
    torch.set_num_threads(1)


def execute(
    specs: Iterable[RunSpec], cache_dir: str | os.PathLike, *, jobs: int = 1, progress=True
) -> tuple[dict[str, dict], int]:
    """Run every spec not cached yet; returns ``{spec.key: result}`` for all of them and the
    number of runs computed now (the others came from ``cache_dir``)."""
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
        path = cache_dir / f"{key}.json"
        if path.is_file():
            cached = json.loads(path.read_text(encoding="utf-8"))
            if spec.extras <= set(cached.get("extras", [])):
                results[key] = cached
                continue
        todo.append(spec)
    # the longest first (images, then runs with measurements), so that no process idles at the end
    todo.sort(key=lambda s: (s.kind != "image", -len(s.extras)))
    bar = tqdm(total=len(todo), disable=not progress, desc="runs")

    def done(spec: RunSpec, result: dict) -> None:
        write_json(cache_dir / f"{spec.key}.json", result)
        results[spec.key] = result
        bar.update()

    if jobs > 1 and len(todo) > 1:
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        with ProcessPoolExecutor(min(jobs, len(todo)), context, initializer=_one_thread) as pool:
            futures = {pool.submit(_run, spec): spec for spec in todo}
            for future in as_completed(futures):
                try:
                    result = future.result()
                except BaseException as err:  # a bug: stop at once, not after every queued run
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise RuntimeError(f"run {futures[future].key} failed: {err!r}") from err
                done(futures[future], result)
    else:
        for spec in todo:
            done(spec, _run(spec))
    bar.close()
    return results, len(todo)
