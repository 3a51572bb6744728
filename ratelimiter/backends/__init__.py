"""Where limit state lives: one small interface, a memory and a Redis implementation.

The core speaks nanoseconds and tokens; each back end turns them into ticks of
its own clock and applies the GCRA formulas of `stepstream.ratelimiter.gcra`
atomically, in one step per call.
"""

from __future__ import annotations

from stepstream.ratelimiter.backends.base import Backend, BatchResult, Peek

__all__ = ["Backend", "BatchResult", "Peek"]
