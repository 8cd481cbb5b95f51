"""File names and storage paths from hostile messages: always one plain name, always under the
configured root, never the same path for two media files (CLAIMX_DOMAIN.md §6).

Named cases first, then hypothesis over the sanitiser and the path builder, then the stores
themselves (local and OneLake addressing) and the upload stage routing what cannot be stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claimx_flow.config import Settings
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.models import CachedDownload, FailureInfo, UploadResult
from claimx_flow.stages.upload import UploadCompletion, UploadStage
from claimx_flow.storage import UnsafePathError, media_path, safe_file_name
from claimx_flow.storage.address import OneLakeAddress
from claimx_flow.storage.local import LocalFileStore
from claimx_flow.storage.paths import MAX_NAME_CHARS
from tests.security.conftest import counted, fuzz

PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def assert_plain(name: str) -> None:
    """One path segment of safe ASCII: no separator, no ``..``, no hidden or trailing dot."""
    assert PLAIN_NAME.fullmatch(name), name
    assert ".." not in name and not name.endswith(".")
    assert 0 < len(name) <= MAX_NAME_CHARS


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\config\\sam", "sam"),
        ("/etc/shadow", "shadow"),
        ("C:\\Users\\me\\photo.jpg", "photo.jpg"),
        ("\\\\server\\share\\roof.png", "roof.png"),
        ("roof\x00.jpg.exe", "roof_.jpg.exe"),
        ("line\nbreak\r\t.jpg", "line_break_.jpg"),
        ("\u202egpj.exe", "gpj.exe"),  # right-to-left override is not kept
        (
            "\uff46\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48\uff0e\uff4a\uff50\uff47",
            "fullwidth.jpg",
        ),  # NFKC folds look-alikes
        (
            "\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fetc",
            "etc",
        ),  # full-width dots and slash are dots and a slash
        ("café.jpg", "cafe.jpg"),
        ("CON", "media_42.jpg"),
        ("nul.txt", "media_42.jpg"),
        ("com1.jpg", "media_42.jpg"),
        ("LPT9", "media_42.jpg"),
        ("COM¹.jpg", "media_42.jpg"),  # superscript one folds to a reserved name
        ("", "media_42.jpg"),
        (None, "media_42.jpg"),
        ("..", "media_42.jpg"),
        ("...", "media_42.jpg"),
        ("   ", "media_42.jpg"),
        ("\x00\x01\x02", "media_42.jpg"),
        ("日本語.jpg", "jpg"),
        (".htaccess", "htaccess"),
        ("a..b...c.jpg", "a.b.c.jpg"),
    ],
)
def test_hostile_names_become_one_plain_name(name: str | None, expected: str) -> None:
    cleaned = safe_file_name(name, "42", "jpg")
    assert cleaned == expected
    assert_plain(cleaned)


def test_a_thousand_character_name_is_cut_keeping_its_extension() -> None:
    cleaned = safe_file_name("x" * 1000 + ".jpg", "42", "jpg")
    assert len(cleaned) == MAX_NAME_CHARS and cleaned.endswith("x.jpg")
    long_with_dots = "a" * 145 + ".b" * 20 + ".jpg"  # the cut lands next to a dot
    assert_plain(safe_file_name(long_with_dots, "42", "jpg"))


@pytest.mark.parametrize(
    "file_type", ["../../x", "jpg/../..", ".", "..", "j.p.g", "\x00", "\uff2a\uff30\uff27"]
)
def test_a_hostile_file_type_cannot_shape_the_default_name(file_type: str) -> None:
    assert_plain(safe_file_name(None, "42", file_type))


@pytest.mark.parametrize(
    ("project_id", "media_id"),
    [
        ("../etc", "1"),
        ("1", "../../x"),
        ("1/2", "3"),
        ("1", "2\n"),  # "$" in a regex would have let the newline through
        ("1", ""),
        ("", "1"),
        ("1", "a" * 65),
        ("1", "1_2"),  # "_" separates the id from the name: it cannot be in the id
        ("1", "١٢"),  # Arabic-Indic digits are digits to str.isdigit, not to the path
        ("1\u0000", "2"),
    ],
)
def test_ids_that_are_no_path_segment_are_refused(project_id: str, media_id: str) -> None:
    with pytest.raises(UnsafePathError):
        media_path(project_id, media_id, "a.jpg", "jpg")


def test_two_media_never_share_a_path_even_with_crafted_names() -> None:
    # Before: media "1_a" named "b" and media "1" named "a_b" were both ".../1_a_b.jpg".
    with pytest.raises(UnsafePathError):
        media_path("7", "1_a", "b.jpg", "jpg")
    assert media_path("7", "1", "a_b.jpg", "jpg") == "claimx/7/media/1_a_b.jpg"


# Hypothesis over the sanitiser and the path builder ----------------------------------------

any_text = st.text(st.characters(codec=None), max_size=300)
tricky_text = st.text(
    st.sampled_from(
        list("./\\\x00\n .-_aAcoOnNlpPtTuxX19\uff43\uff4f\uff4e\uff0e\uff0f\uff3c\u202e\u0301é")
    ),
    max_size=300,
)
long_dotted = st.text(st.sampled_from(list("ab._-")), min_size=140, max_size=170)
names = st.none() | any_text | tricky_text | long_dotted
file_types = st.none() | st.text(st.characters(codec=None), max_size=12) | tricky_text
segment_ids = st.text("abcdefXYZ0123456789-", min_size=1, max_size=64)


@fuzz
@given(name=names, media_id=segment_ids, file_type=file_types)
def test_fuzz_every_name_is_plain_and_deterministic(
    name: str | None, media_id: str, file_type: str | None
) -> None:
    cleaned = safe_file_name(name, media_id, file_type)
    assert_plain(cleaned)
    assert safe_file_name(name, media_id, file_type) == cleaned


@fuzz
@given(
    project=segment_ids,
    first=st.tuples(segment_ids, names, file_types),
    second=st.tuples(segment_ids, names, file_types),
)
def test_fuzz_paths_stay_under_the_root_and_never_collide(
    project: str,
    first: tuple[str, str | None, str | None],
    second: tuple[str, str | None, str | None],
) -> None:
    a, b = media_path(project, *first), media_path(project, *second)
    for path in (a, b):
        assert path.startswith(f"claimx/{project}/media/")
        assert all(part not in {"", ".", ".."} for part in path.split("/"))
        assert "\\" not in path
    # The media id is recoverable from the path, so two media ids never meet on one path.
    assert a.rsplit("/", 1)[1].split("_", 1)[0] == first[0]
    if first[0] != second[0]:
        assert a != b


@fuzz
@given(path=st.text(st.characters(codec=None), max_size=80) | tricky_text)
def test_fuzz_the_stores_refuse_any_path_that_leaves_their_root(path: str) -> None:
    root = Path("/tmp/claimx-security-root")
    store = LocalFileStore(root)
    try:
        target = store._target(path)
    except (UnsafePathError, ValueError):
        pass
    else:
        assert target.is_relative_to(root.resolve())
    address = OneLakeAddress("https://onelake.dfs.fabric.microsoft.com", "ws", "lh")
    try:
        item = address.item_path("Files", path)
    except UnsafePathError:
        return
    assert item.startswith("lh/Files/")
    assert all(part not in {"", ".", ".."} for part in item.split("/"))


# The upload stage with what cannot be stored -----------------------------------------------


def cached(tmp_path: Path, **changes: object) -> CachedDownload:
    content = b"\x89PNG roof"
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    media_id = str(changes.get("media_id", "9001"))
    local = cache / f"{media_id}.{uuid.uuid4().hex[:16]}.bin"  # each attempt's own file
    local.write_bytes(content)
    values: dict[str, object] = {
        "media_id": media_id,
        "project_id": "77",
        "download_url": "http://127.0.0.1/x",
        "file_name": "roof.png",
        "file_type": "png",
        "source_event_id": "evt-9",
        "local_path": str(local),
        "bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "content_type": "image/png",
        "downloaded_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return CachedDownload(**{**values, **changes})


def upload(tmp_path: Path, items: list[CachedDownload]) -> list[object]:
    settings = Settings(claimx_data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    stage = UploadStage.from_settings(settings)
    records = [
        (KafkaRecord("downloads.cached", 0, i, None, c.kafka_key, c.to_json()), c)
        for i, c in enumerate(items)
    ]
    out = list(asyncio.run(stage.process(records)))
    results = [
        o
        for o in out
        if isinstance(o, OutboundRecord) and o.topic == settings.claimx_downloads_results_topic
    ]
    for result in results:  # each DLQ copy comes right after its file's failed result
        copy = out[out.index(result) + 1]
        assert isinstance(copy, OutboundRecord) and copy.key == result.key
        assert copy.topic == settings.claimx_downloads_dlq_topic
        assert UploadResult.from_json(result.value).status == "failed"
    return [o for o in out if o not in results]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"project_id": "../../../tmp"}, "project_id '../../../tmp' cannot be used"),
        ({"media_id": "1_2"}, "cannot lead a file name"),
        ({"local_path": "/etc/hostname"}, "cache file path outside CACHE_DIR"),
        ({"local_path": "CACHE/../../secret.bin"}, "cache file path outside CACHE_DIR"),
    ],
)
def test_the_upload_stage_dead_letters_what_it_must_not_touch(
    tmp_path: Path, changes: dict[str, str], reason: str
) -> None:
    """A cached-download message is input too: its ids and its cache path are checked before
    the stage reads, stores or deletes anything, and the next file is uploaded."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x89PNG roof")  # same bytes: a size and checksum check cannot tell
    changes = {
        k: v.replace("CACHE", str(tmp_path / "cache")) if k == "local_path" else v
        for k, v in changes.items()
    }
    bad = cached(tmp_path, **changes)
    with counted("claimx_errors_total", stage="upload", category="permanent") as errors:
        failed, done = upload(tmp_path, [bad, cached(tmp_path, media_id="9002")])
    assert isinstance(failed, OutboundRecord)
    assert failed.topic == Settings().claimx_downloads_dlq_topic
    info = FailureInfo.from_headers(failed.headers)
    assert reason in info.error_message and info.error_category == "permanent"
    assert errors.delta == 1
    assert secret.exists() and Path("/etc/hostname").exists()  # nothing outside was touched
    if "local_path" not in changes:  # its own cache file, dead-lettered: released at once
        assert not Path(bad.local_path).exists()
    assert isinstance(done, UploadCompletion)
    files = tmp_path / "data" / "files"
    stored = [p for p in files.rglob("*") if p.is_file()]
    assert [p.relative_to(files).as_posix() for p in stored] == ["claimx/77/media/9002_roof.png"]


@pytest.mark.parametrize("victim", ["4242.0123456789abcdef.bin", ".runs/live.lock", "9001.part"])
def test_a_failed_upload_releases_no_file_but_its_own(tmp_path: Path, victim: str) -> None:
    """A failed message's cache file is released unchecked against any content, so only a
    file the downloader wrote for the message's own media qualifies: not another media's
    cache file, not a process lock, not a partial file, even inside CACHE_DIR."""
    target = tmp_path / "cache" / victim
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"someone else's")
    bad = cached(tmp_path, local_path=str(target))  # size and sha256 of another content
    (failed,) = upload(tmp_path, [bad])
    assert isinstance(failed, OutboundRecord)
    assert target.read_bytes() == b"someone else's"
