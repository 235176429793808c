"""Strata's Python package: an in-process simulated stack (World), a JSON-RPC client for a
running strata-tgt (Client), several simulated hosts in one seeded run (Cluster), and a helper that runs strata-tgt for tests (daemon.Daemon).

World needs the native module `_strata` (built into build/<preset>/bindings; `source ci/env.sh`
puts it on PYTHONPATH). Client, Daemon and the strata-rpc CLI need only the standard library.
"""

from .client import DEFAULT_SOCKET, Client
from .errors import (INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND,
                     PARSE_ERROR, ProtocolError, RpcConnectionError, RpcError, RpcTimeout)

__version__ = "0.1.0"
version = __version__

__all__ = ["World", "Cluster", "RpcError", "Client", "Daemon", "version", "native_available",
           "RpcConnectionError", "RpcTimeout", "ProtocolError", "DEFAULT_SOCKET",
           "PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND", "INVALID_PARAMS",
           "INTERNAL_ERROR"]


def native_available():
    """True when the native module _strata imports (World is usable)."""
    from . import world
    return world._strata is not None


def __getattr__(name):
    # Lazy: importing strata (e.g. for the CLI) must not require the native module.
    if name == "World":
        from .world import World, _require_native
        _require_native()
        return World
    if name == "Cluster":
        from .cluster import Cluster
        from .world import _require_native
        _require_native()
        return Cluster
    if name == "Daemon":
        from .daemon import Daemon
        return Daemon
    if name == "daemon":
        import importlib
        return importlib.import_module(".daemon", __name__)
    if name == "logs":
        import importlib
        return importlib.import_module(".logs", __name__)
    raise AttributeError("module 'strata' has no attribute %r" % (name,))
