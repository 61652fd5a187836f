"""Set-up run on every Dask worker of an ichscan cluster (imported only when `--dask` is used)."""

from __future__ import annotations

from typing import Any

from distributed import WorkerPlugin


class OneOpenCVThread(WorkerPlugin):
    """One OpenCV thread per worker: the parallelism is across tasks (as `prepare`'s local pool
    does). Registered as a plugin, so workers that join or restart later get it too."""

    name = "ichscan-one-opencv-thread"

    def setup(self, worker: Any) -> None:
        try:
            import cv2
        except ImportError:  # a worker without OpenCV cannot prepare anyway; index does not need it
            return
        cv2.setNumThreads(1)
