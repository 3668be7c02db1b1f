"""``python -m aioray._worker FD``: a worker process (started by the driver's worker pool)."""

from aioray._worker.main import main

main()
