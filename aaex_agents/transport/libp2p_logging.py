"""py-libp2p's loggers, made to behave like any library's: the application's handlers decide.

Kept apart from the host (`libp2p`): what py-libp2p logs, at which level, and which of its
records are noise (a clean end of stream, a peer that left) is one concern of its own.
"""

from __future__ import annotations

import logging


class _CleanEndOfStream(logging.Filter):
    """Drops py-libp2p's "Failed to read DHT message" record.

    It is a clean end of stream every time; logged at WARNING it would hide real failures.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to read DHT message from stream")


class _DepartedPeer(logging.Filter):
    """Demotes py-libp2p's warnings that a peer could not be reached to DEBUG.

    Peers leave all the time (every `aaex market search` is a host that lives for seconds),
    and the DHT keeps trying them until its routing table forgets them: it logged a WARNING
    per try and per peer (357 of a buyer node's 435 lines in 10 minutes). Such a peer is
    ordinary churn, not a fault of this node; the records stay visible at DEBUG.
    """

    GONE = ("unable to connect to", "recently failed all addresses", "No known addresses",
            "no addresses established", "Connection refused", "failed to upgrade")
    """Causes that mean the peer is not there (any more), as py-libp2p words them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or not record.name.startswith("libp2p.kad_dht"):
            return True
        message = record.getMessage()
        if not any(cause in message for cause in self.GONE):
            return True
        if not logging.getLogger("libp2p").isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_DEPARTED_PEER_LOGGERS = ("libp2p.kad_dht.peer_routing", "libp2p.kad_dht.value_store",
                          "libp2p.kad_dht.provider_store", "libp2p.kad_dht.kad_dht")
"""The py-libp2p loggers that warn about every try to reach a peer that left."""


def adopt_libp2p_logging() -> None:
    """Route py-libp2p's records into the application's logging, WARNING and up by default.

    py-libp2p sets its logger to WARNING with `propagate=False` and no handler, so its
    records bypass whatever the application configured. This undoes that (idempotent): the
    application's handlers then decide, like for every other library.

    py-libp2p logs each connection, stream and DHT step at INFO (32 of 41 lines of a node's
    log, ~30 lines per market search), which is wire detail (DEBUG in our terms, see the
    style guide). So its loggers pass WARNING and up, unless the application's root logger is
    at DEBUG when a host opens: then everything passes. The application decides by
    configuring logging before opening a host (the CLI does); a level it set itself on the
    ``libp2p`` logger (other than WARNING, py-libp2p's own) is kept.
    """
    root = logging.getLogger("libp2p")
    root.propagate = True
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if root.level in (logging.NOTSET, logging.WARNING):  # py-libp2p's default, or ours
        debugging = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
        root.setLevel(logging.NOTSET if debugging else logging.WARNING)
    # py-libp2p hard-codes INFO on some module loggers (network.auto_connector in 0.8), which
    # would bypass the level above; a module logger py-libp2p configured itself from
    # LIBP2P_DEBUG (its own handler, no propagation) is left alone.
    for name, child in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("libp2p.") and isinstance(child, logging.Logger) \
                and child.propagate and child.level == logging.INFO:
            child.setLevel(logging.NOTSET)
    # A failed dial is raised to whoever dialed, which decides how bad it is; py-libp2p
    # also logs each one at ERROR, which would drown real errors when a peer goes away.
    logging.getLogger("libp2p.transport.tcp.tcp").setLevel(logging.CRITICAL)
    dht_logger = logging.getLogger("libp2p.kad_dht.kad_dht")
    if not any(isinstance(f, _CleanEndOfStream) for f in dht_logger.filters):
        dht_logger.addFilter(_CleanEndOfStream())
    for name in _DEPARTED_PEER_LOGGERS:
        module_logger = logging.getLogger(name)
        if not any(isinstance(f, _DepartedPeer) for f in module_logger.filters):
            module_logger.addFilter(_DepartedPeer())
