"""Seed swarms: seed lists, swarm seeds and fault plans, all pure functions of their inputs.

Used by scenarios/conftest.py (`--seeds`, `--swarm-minutes`; docs/user/swarm.md) and by the
scenarios themselves (`fault_plan` fixture). Nothing here keeps state between calls: a seed
(and, in a swarm, the swarm's base seed and slot) decides everything, so a failure replays
from its seed alone.

    parse_seeds("1-5,9")      -> [1, 2, 3, 4, 5, 9]
    swarm_seed(base, slot)    -> the slot-th fresh seed of the swarm started with `base`
    FaultPlan(seed)           -> which faults a scenario enables and at what rates
"""

import hashlib
import random

MAX_SEED = 2**63 - 1


def parse_seeds(spec):
    """'17' -> [17]; '1-5000' -> 1..5000; '3,9-11' -> [3, 9, 10, 11] (order kept, no repeats).
    A count N is written 1-N. Raises ValueError with the offending part on bad input."""
    out, seen = [], set()
    if not spec or not str(spec).strip():
        raise ValueError("empty seed list")
    for part in str(spec).split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo_s, hi_s = part.split("-", 1)
                lo, hi = int(lo_s, 0), int(hi_s, 0)
            else:
                lo = hi = int(part, 0)
        except ValueError:
            raise ValueError("bad seed or range %r (want N, A-B or a comma list of them)" % part)
        if lo < 0 or hi > MAX_SEED or lo > hi:
            raise ValueError("bad seed range %r (0 <= A <= B < 2**63)" % part)
        for s in range(lo, hi + 1):
            if s not in seen:
                seen.add(s)
                out.append(s)
    return out


def _draw(*parts):
    """A 63-bit value from the parts' text (stable across Python versions and hosts)."""
    h = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & MAX_SEED


def swarm_seed(base, slot):
    """The slot-th seed of a swarm whose base seed is `base` (never 0)."""
    return _draw("strata-swarm", base, slot) or 1


class FaultPlan:
    """Fault-plan variation drawn from a seed, as swarm testing does (FoundationDB, TigerBeetle):
    each run enables a random subset of the faults a scenario knows, each at a random rate, so
    that rare combinations get their turn. Same seed, same plan.

        plan = FaultPlan(seed, faults=("media_error", "power_cut", "reset"))
        if plan.on("media_error"): ... plan.rate("media_error") ...
        plan.choice("nth", [2, 5, 9])   # any other per-run choice, also seeded
    """

    RATES = (0.001, 0.01, 0.05, 0.2)

    def __init__(self, seed, faults=("media_error", "power_cut", "reset", "delay"), keep=0.5):
        self.seed = seed
        rng = random.Random(_draw("strata-fault-plan", seed))
        self.enabled = {}
        for f in faults:
            if rng.random() < keep:
                self.enabled[f] = rng.choice(self.RATES)
        self._seed = _draw("strata-fault-plan-choices", seed)

    def on(self, fault):
        return fault in self.enabled

    def rate(self, fault):
        """The fault's rate (probability per operation), 0 when it is off."""
        return self.enabled.get(fault, 0.0)

    def choice(self, name, options):
        """A seeded choice among options, stable for (seed, name)."""
        options = list(options)
        return options[_draw(self._seed, name) % len(options)]

    def __repr__(self):
        return "FaultPlan(seed=%d, enabled=%r)" % (self.seed, self.enabled)
