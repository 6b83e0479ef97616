"""`aaex` that SIGKILLs itself the moment it logs a given event: fault injection at a point.

    python -m tests.peers.crash_on_event EVENT --log-format json node run --config node.toml

The node logs each step of a trade once it is on its books (``escrowed``, ``delivered``,
``settled``...), so dying inside that log call kills it exactly between that step and the
next: what a crash there leaves behind is then tested, not whatever a test's SIGKILL, sent
after reading the log line from another process, happens to catch.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from marketplace.cli import logs
from marketplace.cli.main import main


class _DieOn(logging.Handler):
    def __init__(self, event: str) -> None:
        super().__init__()
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == self.event:
            for handler in logging.getLogger().handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)


def _run() -> int:
    event, argv = sys.argv[1], sys.argv[2:]
    configure = logs.configure

    def configure_then_arm(*, verbose: bool, log_format: str) -> None:
        configure(verbose=verbose, log_format=log_format)
        logging.getLogger().addHandler(_DieOn(event))

    logs.configure = configure_then_arm  # type: ignore[assignment]
    return main(argv)


if __name__ == "__main__":
    sys.exit(_run())
