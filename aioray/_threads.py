"""Signal hygiene for the threads aioray starts.

SIGINT (Ctrl-C) and SIGTERM are process-directed: the kernel may deliver them to any thread that
does not block them. Python runs handlers only on the main thread, and a main thread blocked in
``get()`` is woken only if the signal lands there — so every thread of ours blocks them.
"""

from __future__ import annotations

import signal


def block_interrupts() -> None:
    """Keep terminal signals off the calling (non-main) thread."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
