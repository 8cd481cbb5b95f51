"""The Azurite stack service: installed once from npm, started on a free port, probed by HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from claimx_flow.errors import StackError
from claimx_flow.lab.process import free_port
from claimx_flow.lab.stack.azurite import AzuriteService, azurite_answers, ensure_azurite
from claimx_flow.lab.stack.manager import SERVICE_KINDS


def test_the_running_azurite_answers(azurite: str) -> None:
    assert azurite_answers(azurite)
    assert not azurite_answers(f"http://127.0.0.1:{free_port()}/devstoreaccount1")


def test_the_stack_knows_how_to_probe_it() -> None:
    assert SERVICE_KINDS["azurite"] is AzuriteService


def test_without_npm_the_install_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLAIMX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(StackError, match=r"Node\.js and npm") as caught:
        ensure_azurite()
    assert "\n" not in str(caught.value)
