"""Where the parallel work of `index`, `prepare` and `predict` runs: a local pool or a Dask cluster.

Without `--dask` each command starts its own local process pool (the default). With
``--dask SPEC`` the same tasks (file chunks for `index`, whole series for `prepare`) go to a
`dask.distributed` cluster through `concurrent.futures`: the commands only see an `Executor`.

SPEC is either ``local:N`` (a `LocalCluster` of N single-threaded worker processes on this
machine; ``local`` alone: one per usable CPU) or the address of a running scheduler
(``tcp://10.0.0.5:8786``, ``host:8786``), e.g. one started by dask-jobqueue on SLURM or by the
Dask Helm chart / dask-kubernetes (docs/SCALING.md). With a remote scheduler every worker must
see the input files and the output folder at the same paths (a shared file system).

A killed worker is Dask's business: the scheduler hands its tasks to another worker (a task that
kills three workers in a row fails with `KilledWorker`, which the commands report as an error on
that series). Every output is written under a temporary name and renamed (`ichscan.files`), so a
task cut short leaves no half-written file that looks complete.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeVar

Result = TypeVar("Result")

LOCAL_PREFIX: Final[str] = "local"
_LOCAL: Final[re.Pattern[str]] = re.compile(r"^local(?::(\d+))?$")
_ADDRESS: Final[re.Pattern[str]] = re.compile(r"^(?:(tcp|tls|ucx|inproc|ws|wss)://)?[\w.\-\[\]:]+:\d+$")
CONNECT_TIMEOUT_S: Final[float] = 30.0
# Tasks kept submitted per cluster task slot: a cluster round trip (scheduler → worker → result)
# takes milliseconds, so two per slot (the local pool's setting) leave workers idle between
# tasks; eight halved prepare's wall time on a LocalCluster (docs/bench/dask.md). Tasks are small
# (file lists) and results are metadata, so the queue costs no memory to speak of.
CLUSTER_TASKS_IN_FLIGHT_PER_SLOT: Final[int] = 8


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class DaskSpec:
    """A parsed ``--dask`` value: a local cluster of `local_workers`, or a scheduler `address`."""

    address: str | None = None
    local_workers: int | None = None

    def __post_init__(self) -> None:
        if (self.address is None) == (self.local_workers is None):
            raise ValueError("a Dask spec is either a scheduler address or a local worker count")
        if self.local_workers is not None and self.local_workers < 1:
            raise ValueError(f"local:N needs N ≥ 1, got {self.local_workers}")

    def __str__(self) -> str:
        return self.address if self.address is not None else f"{LOCAL_PREFIX}:{self.local_workers}"


def parse_dask_spec(text: str) -> DaskSpec:
    """``local``, ``local:N`` or a scheduler address (``[tcp://]host:port``) → `DaskSpec`.

    Raises ValueError with the accepted forms when `text` is none of them.
    """
    text = text.strip()
    local = _LOCAL.match(text)
    if local:
        workers = int(local.group(1)) if local.group(1) else usable_cpus()
        if workers < 1:
            raise ValueError(f"--dask {text!r}: local:N needs N ≥ 1")
        return DaskSpec(local_workers=workers)
    if _ADDRESS.match(text):
        return DaskSpec(address=text if "://" in text else f"tcp://{text}")
    raise ValueError(
        f"--dask {text!r}: expected local, local:N or a scheduler address such as tcp://host:8786"
    )


class ClusterExecutor(Executor):
    """A `concurrent.futures.Executor` over a Dask client, lent to one command at a time.

    `submit` sends the call to the cluster (``pure=False``: a resubmitted task runs again rather
    than reusing an earlier result). `shutdown` only forgets (or, with `cancel_futures`, cancels)
    the tasks this executor submitted; it never closes the client, so one cluster serves `index`
    then `prepare` within a `predict` run. `n_workers` is the number of task slots (worker
    threads) in the cluster when it was opened.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._inner = client.get_executor(pure=False)
        self._futures: set[Future[Any]] = set()
        self.n_workers = max(1, sum(self._threads().values()))

    def _threads(self) -> dict[str, int]:
        return dict(self._client.nthreads())

    def submit(self, fn: Callable[..., Result], /, *args: Any, **kwargs: Any) -> Future[Result]:  # type: ignore[override]
        future: Future[Result] = self._inner.submit(fn, *args, **kwargs)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pending = [future for future in list(self._futures) if not future.done()]
        if cancel_futures:
            for future in pending:
                future.cancel()
        elif wait:
            for future in pending:
                future.exception()  # waits; outcomes stay in the futures
        self._futures.clear()

    @property
    def scheduler_address(self) -> str:
        return str(self._client.scheduler.address)

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's URL when the scheduler serves one (needs bokeh), else None."""
        services = self._client.scheduler_info().get("services", {})
        return self._client.dashboard_link if "dashboard" in services else None

    def describe(self) -> str:
        """One line: workers, threads, scheduler and dashboard (for the commands to print)."""
        threads = self._threads()
        dashboard = self.dashboard_link
        if dashboard is not None and not _has_bokeh():
            dashboard += " (its pages need bokeh: pip install bokeh)"
        return (
            f"dask: {len(threads)} worker(s), {sum(threads.values())} thread(s) at "
            f"{self.scheduler_address}; dashboard: {dashboard or 'none'}"
        )


@contextmanager
def dask_executor(spec: str | DaskSpec, *, echo: Callable[[str], None] | None = None) -> Iterator[ClusterExecutor]:
    """Open the cluster of `spec` for the duration of the block and yield its executor.

    ``local:N`` starts a `LocalCluster` of N worker processes with one thread each (and closes it
    at the end); an address connects to a running scheduler (left running). `echo` receives the
    `ClusterExecutor.describe` line (default: stderr). Raises ValueError for a bad spec and
    OSError when the scheduler cannot be reached within `CONNECT_TIMEOUT_S`.
    """
    from distributed import Client, LocalCluster

    from ichscan.dask_worker import OneOpenCVThread

    parsed = parse_dask_spec(spec) if isinstance(spec, str) else spec
    cluster = None
    try:
        if parsed.local_workers is not None:
            cluster = LocalCluster(
                n_workers=parsed.local_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # a free port: several clusters may run on one machine
                silence_logs=40,  # errors only: a restarted worker is routine, not news
            )
            client = Client(cluster)
        else:
            try:
                client = Client(parsed.address, timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as error:
                raise OSError(f"--dask {parsed}: cannot reach the scheduler ({error})") from error
        try:
            client.register_plugin(OneOpenCVThread(), name=OneOpenCVThread.name)
            executor = ClusterExecutor(client)
            (echo or _stderr)(executor.describe())
            yield executor
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


@contextmanager
def optional_dask(spec: str | None, *, echo: Callable[[str], None] | None = None) -> Iterator[ClusterExecutor | None]:
    """`dask_executor(spec)` when a ``--dask`` value was given, else None (the local pool)."""
    if spec is None:
        yield None
        return
    with dask_executor(spec, echo=echo) as executor:
        yield executor


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def executor_workers(executor: Executor | None, default: int) -> int:
    """Task slots of `executor` (a `ClusterExecutor`'s `n_workers`), else `default`."""
    return int(getattr(executor, "n_workers", default)) if executor is not None else default


__all__ = [
    "CLUSTER_TASKS_IN_FLIGHT_PER_SLOT",
    "ClusterExecutor",
    "DaskSpec",
    "dask_executor",
    "executor_workers",
    "optional_dask",
    "parse_dask_spec",
    "usable_cpus",
]
