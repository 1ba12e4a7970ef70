"""Work handed to a forked process, its answer sent back through a pipe.

validate's XSD check, build-invoice's matricule checks and import's reading of a large
payment statement run this way while this process does the rest (pure Python work: a
thread would only take turns with this one on one core). Where fork is not available
(:func:`available` is False) the callers do the work themselves.

A worker closes, first thing, what it inherited and must not keep: the run lock (were the
parent killed, the next run would find the lock taken) and its copy of the pipe's reading
end (were the parent killed, a write too large for the pipe would wait forever, and the
worker would keep the parent's stdout open).
"""

from __future__ import annotations

from typing import Callable


def available() -> bool:
    """True where work can be handed to a forked process."""
    import multiprocessing  # (here, not at the top: most runs fork nothing)

    return "fork" in multiprocessing.get_all_start_methods()


class Worker:
    """A forked process running ``target(conn, *args)``; ``conn`` is where it sends its
    answer, and this side reads it from :attr:`conn`. Not started until :meth:`start`
    (``proc`` is None meanwhile, and again once stopped)."""

    proc = None
    conn = None

    def start(self, target: Callable, *args) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_run, args=(target, args, child, self.conn), daemon=True)
        self.proc.start()
        child.close()

    def stop(self) -> None:
        """Kill the worker if it still runs (its answer, if any, is not wanted), and let it go."""
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join()
            self.conn.close()
            self.proc = None


def _run(target: Callable, args: tuple, conn, parent_end) -> None:  # pragma: no cover - runs in the child
    from cns_exchange.lock import close_inherited

    close_inherited()
    parent_end.close()
    try:
        target(conn, *args)
    except BaseException:  # noqa: BLE001 - Ctrl-C, or the parent gone: the parent, if any, sees the pipe's end
        pass
    finally:
        conn.close()
