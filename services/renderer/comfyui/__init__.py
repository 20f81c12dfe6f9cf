"""A ComfyUI client that classifies every failure.

Public surface (see ``docs/comfyui-client.md``):

* :class:`ComfyUIClient` with ``submit``/``wait``/``locate``/``interrupt``/
  ``delete_pending``/``queue``/``history``/``system_stats``/``object_info``/
  ``fetch_view``/``upload_image``;
* the :class:`ComfyError` hierarchy, each with ``transient``;
* result types :class:`SubmitResult`, :class:`RunResult`, :class:`PromptLocation`,
  :class:`ProgressUpdate`;
* :func:`derive_prompt_id` (re-exported from :mod:`shared.workflows`).
"""

from shared.workflows import derive_prompt_id

from .client import ComfyTimeouts, ComfyUIClient, ProgressCallback
from .errors import (
    ComfyConnectionError,
    ComfyError,
    ComfyExecutionError,
    ComfyFileNotFound,
    ComfyHTTPError,
    ComfyInterrupted,
    ComfyOutOfMemory,
    ComfyPromptDeleted,
    ComfyPromptLost,
    ComfyProtocolError,
    ComfyServerError,
    ComfyTimeoutError,
    ComfyTransportError,
    ComfyValidationError,
    classify_execution_error,
    is_out_of_memory,
)
from .progress import ProgressTracker, ProgressUpdate
from .results import PromptLocation, PromptState, RunResult, SubmitResult

__all__ = [
    "ComfyConnectionError",
    "ComfyError",
    "ComfyExecutionError",
    "ComfyFileNotFound",
    "ComfyHTTPError",
    "ComfyInterrupted",
    "ComfyOutOfMemory",
    "ComfyPromptDeleted",
    "ComfyPromptLost",
    "ComfyProtocolError",
    "ComfyServerError",
    "ComfyTimeoutError",
    "ComfyTimeouts",
    "ComfyTransportError",
    "ComfyUIClient",
    "ComfyValidationError",
    "ProgressCallback",
    "ProgressTracker",
    "ProgressUpdate",
    "PromptLocation",
    "PromptState",
    "RunResult",
    "SubmitResult",
    "classify_execution_error",
    "derive_prompt_id",
    "is_out_of_memory",
]
