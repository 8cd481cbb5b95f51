"""Where uploaded media files go: the local filesystem by default, OneLake when configured."""

from claimx_flow.storage.base import FileStore, StoredFile
from claimx_flow.storage.local import LocalFileStore
from claimx_flow.storage.paths import UnsafePathError, media_path, safe_file_name

__all__ = [
    "FileStore",
    "LocalFileStore",
    "StoredFile",
    "UnsafePathError",
    "media_path",
    "safe_file_name",
]
