"""Presigned URLs and credentials in dead letters: every view and export of ``claimx dlq`` masks
URL query strings (signatures, credentials, the ClaimX ``systemDate``/``expires`` signature) and
credential-shaped text in values, keys, headers and error messages, and keeps ordinary words;
``replay`` sends the bytes on unchanged."""

from __future__ import annotations

import base64
import json

import pytest

from claimx_flow.dlq.documents import shown
from claimx_flow.dlq.masking import masked_text
from claimx_flow.models.redaction import mask_url_queries
from tests.dlq.helpers import Pipeline, claimx, failure, hour, put, read_all

S3_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAMASKME7%2F20240101%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=5ec2e7b1a9d0c0ffee5ec2e7b1a9d0c0ffee"
)
S3_URL = f"https://claims-media.s3.amazonaws.com/claimx/5/media/9_roof.jpg?{S3_QUERY}"
CLAIMX_URL = (
    "https://api.claimx.example/media/9/content"
    "?systemDate=2019-07-04T10%3A11%3A12Z&expires=1562235072&signature=CxSigQzV81"
)
SECRETS = (
    "AKIAMASKME7",
    "5ec2e7b1a9d0c0ffee",
    "20240101T000000Z",
    "2019-07-04T10",
    "1562235072",
    "CxSigQzV81",
    "HdrSig0042",
)


def _letter(pipeline: Pipeline) -> tuple[bytes, list[tuple[str, bytes]]]:
    value = json.dumps(
        {
            "media_id": "9",
            "project_id": "5",
            "download_url": S3_URL,
            "source_url": CLAIMX_URL,
        }
    ).encode()
    info = failure(
        "evt_9",
        origin_topic=pipeline["downloads.pending"],
        stage="download",
        project_id="5",
        media_id="9",
        error_class="DownloadError",
        message=f"GET {CLAIMX_URL} answered 403 (expired)",
    )
    headers = [
        ("x-source", b"https://api.claimx.example/media/9?expires=1562235072&sig=HdrSig0042"),
        *info.to_headers(),
    ]
    put(pipeline.bootstrap, pipeline["downloads.dlq"], [(b"5", value, headers)], [hour(1)])
    return value, headers


def _no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret


def test_views_and_exports_mask_url_queries_and_replay_sends_the_bytes(
    pipeline: Pipeline,
) -> None:
    value, headers = _letter(pipeline)

    table = claimx(pipeline, "inspect", "download")
    assert table.exit_code == 0, table.output
    _no_secret(table.output)
    for kept in ("download_url", "claims-media.s3.amazonaws.com", "api.claimx.example", "***"):
        assert kept in table.output, kept

    exported = claimx(pipeline, "inspect", "download", "--json")
    assert exported.exit_code == 0, exported.output
    _no_secret(exported.output)
    (message,) = json.loads(exported.output)["messages"]
    assert json.loads(message["value"]) == {
        "media_id": "9",
        "project_id": "5",
        "download_url": S3_URL.split("?")[0] + "?***",
        "source_url": CLAIMX_URL.split("?")[0] + "?***",
    }
    assert message["failure"]["error_message"] == (
        "GET https://api.claimx.example/media/9/content?*** answered 403 (expired)"
    )
    shown = {h["name"]: h["value"] for h in message["headers"]}
    assert shown["x-source"] == "https://api.claimx.example/media/9?***"

    for args in (("list",), ("list", "--json"), ("replay", "download", "--dry-run")):
        result = claimx(pipeline, *args)
        assert result.exit_code == 0, (args, result.output)
        _no_secret(result.output)
        assert "api.claimx.example/media/9/content?***" in result.output.replace("\n", ""), args

    replayed = claimx(pipeline, "replay", "download")
    assert replayed.exit_code == 0, replayed.output
    _no_secret(replayed.output)
    (sent,) = read_all(pipeline.bootstrap, pipeline["downloads.pending"])
    assert sent.value == value  # byte for byte: the signatures still work downstream
    assert sent.headers["x-source"] == dict(headers)["x-source"]


def test_masking_keeps_where_a_url_points_and_is_idempotent() -> None:
    for text, expected in (
        (f"GET {S3_URL} failed", "GET " + S3_URL.split("?")[0] + "?*** failed"),
        (json.dumps({"u": CLAIMX_URL}), json.dumps({"u": CLAIMX_URL.split("?")[0] + "?***"})),
        ('{"u":"https:\\/\\/h\\/p?sig=x\\u0026se=1"}', '{"u":"https:\\/\\/h\\/p?***"}'),
        (
            "next=https%3A%2F%2Fh%2Fp%3FX-Amz-Signature%3Dabc end",
            "next=https%3A%2F%2Fh%2Fp%3F*** end",
        ),
        ("https://h/p and https://h/q", "https://h/p and https://h/q"),
        (  # a view shows bodies: words that look like credentials' neighbours stay
            '{"file_name": "Basic Claim Form.pdf", "note": "pwd: reset needed"}',
            '{"file_name": "Basic Claim Form.pdf", "note": "pwd: reset needed"}',
        ),
    ):
        assert mask_url_queries(text) == expected
        assert mask_url_queries(expected) == expected


def test_a_url_seen_in_part_still_loses_its_signature() -> None:
    """A space in the path or no scheme hides the URL's start; its signature and credential
    parameters are masked all the same."""
    for text in (
        "https://media.claimxperience.com/p/roof photo.jpg?systemDate=1&sig=SIGsecret1",
        "//bucket.s3.amazonaws.com/a.jpg?X-Amz-Credential=AKIAsecret1&X-Amz-Signature=SIGsecret1",
        "s3://bucket/a.jpg?X-Amz-Signature=SIGsecret1",
    ):
        masked = mask_url_queries(text)
        assert "secret1" not in masked, masked
        assert mask_url_queries(masked) == masked


def test_a_value_that_is_not_utf8_is_masked_before_its_base64() -> None:
    """One Latin-1 byte in a file name makes the task base64 in a view: the signature inside
    must be masked in those bytes too, and every other byte kept."""
    value = (
        b'{"file_name": "caf\xe9.jpg", "download_url": '
        b'"https://b.s3.amazonaws.com/caf\xe9.jpg?X-Amz-Signature=SIGsecret1&X-Amz-Date=1"}'
    )
    text, encoding = shown(value)
    assert encoding == "base64" and text is not None
    decoded = base64.b64decode(text)
    assert b"SIGsecret1" not in decoded
    assert decoded.startswith(b'{"file_name": "caf\xe9.jpg", "download_url": "https://b.s3')


BASIC = base64.b64encode(b"claimx-svc:Hunter2-Basic").decode()
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjbGFpbXgifQ.SigJwt0042"
CREDENTIALS = ("hunter2Body", BASIC, "Hunter2-Basic", "SaslPw77", "AccKey0099", "SigJwt0042")
WORDS = ("Basic Claim Form.pdf", "pwd: reset needed", "Basic Coverage", "token count 3")


def test_views_mask_credentials_in_bodies_and_headers_and_keep_words(pipeline: Pipeline) -> None:
    value = json.dumps(
        {
            "media_id": "9",
            "file_name": WORDS[0],
            "note": f"{WORDS[1]}; {WORDS[2]}; {WORDS[3]}",
            "password": "hunter2Body",
            "auth": f"Basic {BASIC}",
            "storage": "AccountName=claims;AccountKey=AccKey0099;EndpointSuffix=core",
            "upstream": f"Bearer {JWT}",
        }
    ).encode()
    info = failure("evt_9", origin_topic=pipeline["downloads.pending"], stage="download")
    headers = [
        ("Authorization", f"Basic {BASIC}".encode()),
        ("x-client", b'sasl.jaas.config=PlainLoginModule username="u" password="SaslPw77";'),
        *info.to_headers(),
    ]
    put(pipeline.bootstrap, pipeline["downloads.dlq"], [(b"9", value, headers)], [hour(1)])

    for args in (("inspect", "download"), ("inspect", "download", "-o", "json")):
        result = claimx(pipeline, *args)
        assert result.exit_code == 0, (args, result.output)
        for secret in CREDENTIALS:
            assert secret not in result.output, (args, secret)
        flat = " ".join(result.output.split())
        for word in WORDS:
            assert word in flat, (args, word)
    replayed = claimx(pipeline, "replay", "download")
    assert replayed.exit_code == 0, replayed.output
    (sent,) = read_all(pipeline.bootstrap, pipeline["downloads.pending"])
    assert sent.value == value  # the bytes go on as they were


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"password": "hunter2"}', '{"password": "***"}'),
        ("{'db_password': 'hunter2', 'n': 1}", "{'db_password': '***', 'n': 1}"),
        ('{\\"clientSecret\\": \\"s3cr3t\\"}', '{\\"clientSecret\\": \\"***\\"}'),
        ("password=hunter2&user=u", "password=***&user=u"),
        ('password="p@ss word"', 'password="***"'),  # a quoted value, whole
        ("password=ab,cd&ef", "password=***&ef"),
        ('{"password": "pa\\"ss"}', '{"password": "***"}'),  # an escaped quote inside
        (f"Authorization: Basic {BASIC}", "Authorization: Basic ***"),
        ("Authorization: Bearer opaque-42", "Authorization: Bearer ***"),
        (f"sent Basic {BASIC} to it", "sent Basic *** to it"),
        (f"Bearer {JWT}", "Bearer ***"),
        *((word, word) for word in WORDS),
        ("Basic Information", "Basic Information"),
        ("password reset requested", "password reset requested"),
        ('{"token_count": 3, "passwordless": true}', '{"token_count": 3, "passwordless": true}'),
    ],
)
def test_credential_shapes_are_masked_and_words_kept(text: str, expected: str) -> None:
    assert masked_text(text) == expected
    assert masked_text(expected) == expected
