"""The secret forms a stage, the command line and the probes mask, beside the echoes of
``test_echoed_secrets.py``: a presigned URL quoted inside another text, the Basic token a
stage's logs and probes must know, the secrets a command reads the way the settings read them,
and the configured secrets in the DLQ views."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from claimx_flow.config import Settings, configured_secrets
from claimx_flow.dlq import masking
from claimx_flow.lab.process import free_port
from claimx_flow.models.redaction import MASK, redact
from claimx_flow.runtime import health

SIGNATURE = "3f9ae21c0b7d44e5a1f6"


@pytest.mark.parametrize(
    "text",
    [
        f"https://bucket/x.jpg?a=1\\u0026X-Amz-Signature={SIGNATURE}",  # inside JSON
        f"https://bucket/x.jpg?a=1&amp;X-Amz-Signature={SIGNATURE}",  # inside HTML
        f"link=https%3A%2F%2Fbucket%2Fx.jpg%3Fa%3D1%26X-Amz-Signature%3D{SIGNATURE}",  # a query
    ],
)
def test_a_presigned_urls_signature_is_masked_however_it_is_quoted(text: str) -> None:
    """A stage masks with ``redact``: these forms kept the signature in clear."""
    assert SIGNATURE not in redact(text)


def test_a_stages_secrets_include_the_basic_token() -> None:
    """The password is one base64 decode away from the token: an uncaught exception holding
    the token was logged in clear, since only the API client knew it."""
    settings = Settings(claimx_api_username="svc-claimx", claimx_api_password=SecretStr("Pw/+=42!"))
    token = base64.b64encode(b"svc-claimx:Pw/+=42!").decode()
    assert token in settings.secret_values()
    assert token not in redact(f"RuntimeError: auth {token}", settings.secret_values())


def test_a_command_reads_the_secrets_as_the_settings_do(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """Before its settings are built (or when they cannot be), a command masks what the
    environment gives: a lower-case name and a trailing line break were read otherwise."""
    clean_env.setenv("claimx_api_username", "svc-claimx")
    clean_env.setenv("claimx_api_password", "hunter2-pw\n")
    found = configured_secrets()
    assert "hunter2-pw" in found
    assert base64.b64encode(b"svc-claimx:hunter2-pw").decode() in found


def test_the_dlq_views_mask_the_configured_secrets(clean_env: pytest.MonkeyPatch) -> None:
    """A body of another producer's, or one written before the secret was configured, holds
    the password as a word: no shape gives it away, the configuration does."""
    from claimx_flow.dlq.cli import app

    clean_env.setenv("CLAIMX_API_PASSWORD", "Sesame-77")
    CliRunner().invoke(app, ["list", "--help"])  # the group's options run, as on every command
    assert masking.masked_text("note: reset Sesame-77 tomorrow") == f"note: reset {MASK} tomorrow"
    assert masking.masked_text(json.dumps({"n": "Sesame-77"})) == json.dumps({"n": MASK})
    masking.mask_also(())


def test_a_failed_probe_shows_no_secret_in_the_readiness_body() -> None:
    async def refused() -> str:
        raise PermissionError("login svc:Sesame-77 refused")

    state = health.HealthState()
    server = health.HealthServer(
        "enrich",
        [health.ActiveCheck("api", refused, every_s=0.2)],
        host="127.0.0.1",
        port=free_port(),
        stale_s=60,
        state=state,
        secrets=["Sesame-77"],
    ).start()
    body: dict[str, Any] = {}
    for _ in range(50):  # the first probe runs at once; 5 s at most
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health/ready", timeout=5)
        except urllib.error.HTTPError as error:  # 503: not ready, as a failed probe makes it
            body = json.loads(error.read())
            if body["checks"]["api"]["detail"] != "not checked yet":
                break
        time.sleep(0.1)
    assert body["checks"]["api"]["detail"] == f"PermissionError: login svc:{MASK} refused"
