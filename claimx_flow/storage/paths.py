"""Where a media file lives: deterministic, collision-free and always under the root.

``claimx/{project_id}/media/{media_id}_{safe_file_name}``: the media id in the name keeps two
files of the same name in one project apart, and the same media always lands on the same path,
so a replayed upload overwrites itself instead of making a copy.
"""

from __future__ import annotations

import re
import unicodedata
import uuid

MAX_NAME_CHARS = 150
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The media id leads the file name, separated by "_": without "_" in it the id can always be
# told apart from the name, so two media never share a path.
_MEDIA_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
# Windows device names: harmless on Linux, but OneLake files are opened from Windows too.
_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(10)),
    *(f"lpt{i}" for i in range(10)),
}


class UnsafePathError(ValueError):
    """An identifier that cannot be part of a storage path."""


def safe_file_name(name: str | None, media_id: str, file_type: str | None) -> str:
    """A file name with no path separators, ``..``, control or exotic characters, bounded length.

    A missing or empty name becomes ``media_{media_id}.{file_type}``.
    """
    extension = _safe_extension(file_type)
    cleaned = ""
    if name:
        normalised = unicodedata.normalize("NFKC", name)
        ascii_only = unicodedata.normalize("NFKD", normalised).encode("ascii", "ignore").decode()
        base = ascii_only.replace("\\", "/").rsplit("/", 1)[-1]
        cleaned = _UNSAFE.sub("_", base).strip("._-")
        cleaned = re.sub(r"\.{2,}", ".", cleaned)
    if not cleaned or cleaned.split(".", 1)[0].lower() in _RESERVED:
        cleaned = f"media_{check_id(media_id, 'media_id')}" + (f".{extension}" if extension else "")
    if len(cleaned) > MAX_NAME_CHARS:
        stem, dot, ext = cleaned.rpartition(".")
        # The cut may land just after a dot: strip again, or "a." + ".jpg" makes "a..jpg".
        if dot and 0 < len(ext) <= 10:
            cleaned = stem[: MAX_NAME_CHARS - len(ext) - 1].rstrip("._-") + "." + ext
        else:
            cleaned = cleaned[:MAX_NAME_CHARS].rstrip("._-")
    return cleaned


def _safe_extension(file_type: str | None) -> str:
    if not file_type:
        return ""
    return re.sub(r"[^a-z0-9]", "", file_type.lower())[:10]


def check_id(value: str, what: str) -> str:
    """Ids become path segments: allow only plain identifier characters."""
    if not _ID.fullmatch(value):  # fullmatch: "$" would let a trailing newline through
        raise UnsafePathError(f"{what} {value!r} cannot be used in a storage path")
    return value


MEDIA_ROOT = "claimx"
"""The folder every media file goes under, in OneLake's ``Files`` and the local files root."""


def media_path(project_id: str, media_id: str, file_name: str | None, file_type: str | None) -> str:
    """The relative storage path of one media file (§6 of the domain reference)."""
    project = check_id(project_id, "project_id")
    media = check_id(media_id, "media_id")
    if not _MEDIA_ID.fullmatch(media):
        raise UnsafePathError(f"media_id {media_id!r} cannot lead a file name (no '_')")
    return f"{MEDIA_ROOT}/{project}/media/{media}_{safe_file_name(file_name, media, file_type)}"


def probe_path() -> str:
    """Where a readiness probe writes: inside ``MEDIA_ROOT``, the only folder an identity of
    least privilege may write (the runbook grants ``claimx/*``)."""
    return f"{MEDIA_ROOT}/.claimx-probe-{uuid.uuid4().hex}"
