"""Sweeps on a dask.distributed cluster: ``npgen reproduce --scheduler ADDRESS|local``.

dask.distributed's ``Client.get_executor()`` is a ``concurrent.futures.Executor``, so a cluster
runs a sweep through the same code as the local process pool (:func:`npgen.study.sweep.run_sweep`).
The cluster's machines are not assumed to see this machine's disk: the sweep runs with
``shared_filesystem=False``, each worker trains into a temporary folder of its own, one BLAS
thread per task, and sends the run's files back; this process writes them into the runs folder
with the local runs' atomic layout, so resuming works as it does locally. Tasks are submitted
impure (``pure=False``): dask never hands back a cached result instead of running a run.

A worker that dies mid-run (killed, its machine lost) costs its run nothing: the scheduler hands
the run to another worker, up to ``distributed.scheduler.allowed-failures`` times (3 by default);
a run whose workers die more often than that is recorded as failed (``KilledWorker``) with its
configuration, and the sweep goes on. A run that raises on a worker is recorded the same way,
with the worker's error and traceback, and is not retried (npgen's runs are deterministic).

``--scheduler local`` starts a ``LocalCluster`` of one single-threaded worker process per CPU
core. Everything it opens listens on 127.0.0.1 only: the scheduler, the workers and their
nannies, and the HTTP servers distributed opens for health checks and metrics even with the
dashboard off (the scheduler's on a random port instead of 8787).

dask.distributed is optional (``pip install "npgen[dask]"``) and imported only when a cluster is
asked for.
"""

import contextlib
import ipaddress
import logging
import os
import re
import signal
import threading

DASK_EXTRA = 'pip install "npgen[dask]"'
#: Seconds to wait for a scheduler to answer, and then for it to have a worker.
CONNECT_TIMEOUT = 30.0
#: Seconds given to the client and a local cluster to close.
CLOSE_TIMEOUT = 20.0
#: The port ``dask scheduler`` listens on by default.
DEFAULT_PORT = 8786
_ACCEPTED = ("'local' or the address of a running dask scheduler, like tcp://HOST:8786")


def import_distributed():
    """The ``distributed`` module, or one ValueError sentence naming the extra to install."""
    try:
        import distributed
    except ImportError:
        raise ValueError("--scheduler needs dask.distributed, which is not installed;"
                         f" install it with {DASK_EXTRA}") from None
    return distributed


#: A host name: dot-separated labels of letters, digits and inner hyphens.
_HOST_NAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")


def _is_ip_address(host):
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def check_scheduler(scheduler):
    """Check ``--scheduler`` (``'local'`` or a scheduler address) and that distributed is
    installed; return the address with its scheme (``tcp://`` when none is given), or 'local'."""
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise ValueError(f"--scheduler must be {_ACCEPTED}, got {scheduler!r}")
    distributed = import_distributed()
    if scheduler == "local":
        return scheduler
    from distributed.comm import addressing
    try:
        scheme, location = addressing.parse_address(scheduler.strip())
        host, port = addressing.parse_host_port(location, default_port=DEFAULT_PORT)
    except (TypeError, ValueError) as err:
        raise ValueError(f"--scheduler must be {_ACCEPTED}, got {scheduler!r} ({err})") from None
    schemes = sorted(set(distributed.comm.registry.backends) - {"inproc"})  # inproc: one process
    if scheme not in schemes:
        raise ValueError(f"--scheduler must be {_ACCEPTED}, got {scheduler!r} (the schemes"
                         f" dask.distributed knows: {', '.join(schemes)})")
    if not host:
        raise ValueError(f"--scheduler must be {_ACCEPTED}, got {scheduler!r} (no host)")
    if not _HOST_NAME.match(host) and not _is_ip_address(host):
        raise ValueError(f"--scheduler must be {_ACCEPTED}, got {scheduler!r} ({host!r} is neither a"
                         " host name nor an IP address)")
    if not 1 <= port <= 65535:
        raise ValueError(f"--scheduler must be {_ACCEPTED}, got {scheduler!r} (the port must be in"
                         " [1, 65535])")
    return addressing.unparse_address(scheme, addressing.unparse_host_port(host, port))


def start_local_cluster(n_workers, **worker_options):
    """A ``distributed.LocalCluster`` of ``n_workers`` worker processes with one thread each,
    listening on 127.0.0.1 only, dashboard off. ``worker_options`` go to each worker's Nanny
    (``env={...}`` sets its environment). The worker processes ignore Ctrl-C: this process
    handles it and closes the cluster, so a Ctrl-C prints no worker's traceback."""
    distributed = import_distributed()
    with _sigint_ignored():  # inherited by the worker processes, which start now
        return distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, worker_dashboard_address=None,
            # With the dashboard off the scheduler still serves health checks over HTTP, by
            # default on port 8787 of every address it listens on: keep it on loopback.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0", "dashboard": False},
            silence_logs=logging.ERROR, **worker_options)


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored within the block, in the main thread (elsewhere nothing changes). A process
    started meanwhile keeps ignoring it: an ignored signal stays ignored across exec."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _quiet_on_interrupt():
    """Ctrl-C: what distributed logs while the cluster closes (cancelled tasks, workers that
    stop mid-run) says nothing the user needs; only 'interrupted' is printed."""
    for name in ("distributed", "asyncio", "tornado"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def describe_cluster(client):
    """'N workers x T threads' (or the threads of each worker) at the client's scheduler."""
    threads = sorted(client.nthreads().values())
    per_worker = f"{threads[0]} thread{'s' * (threads[0] != 1)}" if len(set(threads)) == 1 else \
        f"{'/'.join(map(str, threads))} threads"
    return f"dask scheduler {client.scheduler.address}: {len(threads)} workers x {per_worker}"


@contextlib.contextmanager
def dask_executor(scheduler, n_workers=None, timeout=None):
    """Yield ``(executor, description)`` for a sweep on the dask cluster ``scheduler``.

    ``scheduler``: a running scheduler's address (``tcp://host:8786``), or ``'local'`` for a
    :func:`start_local_cluster` of ``n_workers`` workers (default: one per CPU core) that is
    closed on exit. A scheduler that does not answer within ``timeout`` seconds, or has no
    worker ``timeout`` seconds later, is one ValueError sentence naming the address
    (``timeout``: default :data:`CONNECT_TIMEOUT`).
    """
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    address = check_scheduler(scheduler)
    if n_workers is not None and address != "local":
        raise ValueError("n_workers sizes a local cluster (--scheduler local) only; the workers"
                         f" of {address} are started with dask worker {address}")
    distributed = import_distributed()
    with contextlib.ExitStack() as stack:
        if address == "local":
            cluster = start_local_cluster(n_workers or os.cpu_count() or 1)
            stack.callback(cluster.close, timeout=CLOSE_TIMEOUT)
            client = distributed.Client(cluster, timeout=timeout)
        else:
            try:
                client = distributed.Client(address, timeout=timeout)
            except OSError as err:  # refused, timed out, not a dask scheduler
                raise ValueError(f"--scheduler {address}: no dask scheduler answered within"
                                 f" {timeout:g} s ({err}); start one with dask scheduler, or"
                                 " check the address and the firewall") from None
        stack.callback(client.close, timeout=CLOSE_TIMEOUT)
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, distributed.TimeoutError):
            raise ValueError(f"--scheduler {address}: the scheduler has no worker after"
                             f" {timeout:g} s; start workers with dask worker"
                             f" {client.scheduler.address} --nthreads 1 --nworkers N") from None
        stack.push(lambda kind, error, trace: _quiet_on_interrupt() if kind is KeyboardInterrupt else None)
        yield client.get_executor(pure=False), describe_cluster(client)
