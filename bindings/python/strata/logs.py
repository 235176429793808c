"""Routes Strata's C++ log records to Python's `logging` module.

Loggers are named strata.<component> (e.g. strata.rpc); levels map ERROR->ERROR, WARN->WARNING,
NOTICE->25 (between INFO and WARNING), INFO->INFO, DEBUG->DEBUG. Each record carries extra
attributes strata_time_ns (virtual under a World) and strata_thread. Under pytest, captured
records show in a failing test's report.

Which records are produced at all is decided on the C++ side (per-component levels, e.g.
world.rpc("log_set_level", level="DEBUG")); Python's logger levels filter further.
"""

import atexit
import logging

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: NOTICE, 3: logging.INFO, 4: logging.DEBUG}
_installed = False


def _forward(level, component, thread, time_ns, message, file, line):
    logger = logging.getLogger("strata." + component if component else "strata")
    lvl = _LEVELS.get(level, logging.INFO)
    if not logger.isEnabledFor(lvl):
        return
    where = "[%s %d.%06dms] " % (thread or "-", time_ns // 1_000_000, time_ns % 1_000_000) \
        if thread else "[%d.%06dms] " % (time_ns // 1_000_000, time_ns % 1_000_000)
    rec = logger.makeRecord(logger.name, lvl, file, line, where + message, None, None,
                            extra={"strata_time_ns": time_ns, "strata_thread": thread})
    logger.handle(rec)


def capture(enable=True):
    """Sends strata's C++ log records to `logging` (enable=False restores stderr)."""
    global _installed
    import _strata
    if enable and not _installed:
        _strata.set_log_callback(_forward)
        _installed = True
    elif not enable and _installed:
        _strata.set_log_callback(None)
        _installed = False


@atexit.register
def _uninstall():
    try:
        capture(False)
    except Exception:
        pass
