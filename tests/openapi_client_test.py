"""openapi.yaml through a real client generator: openapi-python-client generates a Python client from the spec, and
the client parses answers s3kv really gives (captured from s3kv-local, below) into the right models.

The point (issue #30): a 403 is `anyOf` s3kv's `forbidden` error and API Gateway's `{"message": ...}`, and such a
client takes the first alternative that parses. With API Gateway's first, s3kv's `error`, `role` and `prefixes` were
lost; they must survive, and API Gateway's own 403 must still parse. Also the nullable fields that OpenAPI 3.0
cannot express through a `$ref` (a delete marker's `etag`, the last page's `cursor`, a dry run's `schema`) and
`lastModified` with and without a fraction of a second.

Run by scripts/lint-openapi (openapi-python-client pinned in tools/lint/requirements.txt).
"""

import importlib
import json
import pkgutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "openapi.yaml"
PACKAGE = "s3kv_openapi_client"

# Answers captured from s3kv-local, as the API sent them (`s3kv-local --read-key ... --write-key ...:flags/
# --public-prefix flags/`, then curl).
# PUT /items/flags/x with the read key: src/api/error.rs adds `role` and `prefixes` to a `forbidden` for a known key.
FORBIDDEN_READ_KEY = json.loads(
    r'{"error":"forbidden",'
    r'"message":"API key read-key-1 (localread1) may only read every item; it may not write","prefixes":[],'
    r'"role":"read"}'
)
# GET /items/config/x with a write key limited to flags/.
FORBIDDEN_OUTSIDE_PREFIXES = json.loads(
    r'{"error":"forbidden",'
    r'"message":"API key write-key-1 (localwrite1) may read and write items under \"flags/\",'
    r' not \"config/x\"","prefixes":["flags/"],"role":"write"}'
)
# Any request without x-api-key: API Gateway's own answer (s3kv-local's emulation of it).
GATEWAY_FORBIDDEN = json.loads(r'{"message":"Forbidden"}')
# GET /public/config/x with the public prefix flags/ (no API key, so no role).
PUBLIC_FORBIDDEN = json.loads(
    r'{"error":"forbidden","message":"only items under \"flags/\" may be read without an API key,'
    r' not \"config/x\""}'
)
# GET /versions/flags/x after a PUT, a DELETE and a PUT. s3kv-local's S3 keeps milliseconds, so lastModified has a
# fraction (AWS S3 lists whole seconds, `.000`, which the API writes without one).
VERSION_PAGE = json.loads(
    r'{"cursor":null,"key":"flags/x","versions":[{"current":true,"deleted":false,'
    r'"etag":"1acf90d6b9d56964d639faacabe5ad12","lastModified":"2026-12-07T19:56:23.795Z","size":18,'
    r'"version":"01796673383795079603",'
    r'"writer":"key=local0; name=api-key; request=6b170f66-0000-4000-8000-000000000006"},{"current":false,'
    r'"deleted":true,"etag":null,"lastModified":"2026-12-07T19:56:23.358Z","size":0,'
    r'"version":"01796673383358297704","writer":null},{"current":false,"deleted":false,'
    r'"etag":"e72f93a3bdd9d6e5544f91cfb5f17d87","lastModified":"2026-12-07T19:56:22.979Z","size":17,'
    r'"version":"01796673382979396867",'
    r'"writer":"key=local0; name=api-key; request=6b170f66-0000-4000-8000-000000000004"}]}'
)
# PUT /items/flags/x?dryRun=true with no schema for the key.
CHECKED_NO_SCHEMA = json.loads(r'{"key":"flags/x","schema":null,"valid":true}')


@pytest.fixture(scope="session")
def client(tmp_path_factory):
    """The generated package, imported."""
    out = tmp_path_factory.mktemp("generated")
    config = out / "config.yaml"
    # No post hooks: the generated code is only imported here, never formatted or read.
    config.write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    generator = Path(sys.executable).with_name("openapi-python-client")
    subprocess.run(
        [generator, "generate", "--path", SPEC, "--meta", "none", "--output-path", out / PACKAGE,
         "--config", config, "--fail-on-warning"],
        check=True,
    )
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))


def operations(client):
    """Every generated operation module, by its module name."""
    api = importlib.import_module(f"{PACKAGE}.api")
    found = {}
    for tag in pkgutil.iter_modules(api.__path__):
        package = importlib.import_module(f"{PACKAGE}.api.{tag.name}")
        for op in pkgutil.iter_modules(package.__path__):
            found[op.name] = importlib.import_module(f"{PACKAGE}.api.{tag.name}.{op.name}")
    return found


def parse(client, module, status, body):
    http = client.Client(base_url="http://127.0.0.1:3000", raise_on_unexpected_status=True)
    return module._parse_response(client=http, response=httpx.Response(status, json=body))


# The operations that need no API key: their 403 is s3kv's, never API Gateway's missing-key message.
KEYLESS = ("get_public_item", "evaluate_public_flag", "evaluate_public_flags_bulk")


def test_a_forbidden_answer_keeps_error_role_and_prefixes(client):
    from s3kv_openapi_client.models import Forbidden, GatewayMessage

    secured = {
        name: module
        for name, module in operations(client).items()
        if "status_code == 403" in Path(module.__file__).read_text() and name not in KEYLESS
    }
    # Every operation that needs an API key.
    assert sorted(secured) == [
        "batch_get", "delete_item", "delete_schema", "evaluate_flag", "evaluate_flags_bulk", "get_item",
        "get_schema", "list_changes", "list_items", "list_schemas", "list_versions", "post_item", "put_item",
        "put_schema", "restore_item",
    ]
    for name, module in secured.items():
        for body in (FORBIDDEN_READ_KEY, FORBIDDEN_OUTSIDE_PREFIXES):
            parsed = parse(client, module, 403, body)
            assert isinstance(parsed, Forbidden), (name, type(parsed))
            assert parsed.error.value == "forbidden"
            assert parsed.role.value == body["role"]
            assert parsed.prefixes == body["prefixes"]
            assert parsed.message == body["message"]
            assert parsed.to_dict() == body
        parsed = parse(client, module, 403, GATEWAY_FORBIDDEN)
        assert isinstance(parsed, GatewayMessage), (name, type(parsed))
        assert parsed.message == "Forbidden"


def test_a_public_read_refused_is_s3kvs_forbidden(client):
    from s3kv_openapi_client.models import Forbidden
    from s3kv_openapi_client.types import Unset

    for name in KEYLESS:
        parsed = parse(client, operations(client)[name], 403, PUBLIC_FORBIDDEN)
        assert isinstance(parsed, Forbidden), name
        assert parsed.error.value == "forbidden"
        assert isinstance(parsed.role, Unset) and isinstance(parsed.prefixes, Unset)


def test_versions_parse_with_nulls_and_fractional_seconds(client):
    from s3kv_openapi_client.models import VersionPage

    list_versions = operations(client)["list_versions"]
    page = parse(client, list_versions, 200, VERSION_PAGE)
    assert isinstance(page, VersionPage)
    assert page.cursor is None
    current, marker, first = page.versions
    assert current.etag == "1acf90d6b9d56964d639faacabe5ad12" and current.current
    assert current.last_modified == datetime(2026, 12, 7, 19, 56, 23, 795000, tzinfo=timezone.utc)
    assert marker.deleted and marker.etag is None and marker.writer is None
    assert first.last_modified < marker.last_modified < current.last_modified
    # AWS S3's whole seconds parse as well.
    whole = dict(VERSION_PAGE["versions"][0], lastModified="2026-12-03T10:00:00Z")
    page = parse(client, list_versions, 200, dict(VERSION_PAGE, versions=[whole]))
    assert page.versions[0].last_modified == datetime(2026, 12, 3, 10, 0, 0, tzinfo=timezone.utc)


def test_a_dry_run_without_a_schema_parses(client):
    from s3kv_openapi_client.models import Checked

    checked = parse(client, operations(client)["put_item"], 200, CHECKED_NO_SCHEMA)
    assert isinstance(checked, Checked)
    assert checked.schema is None and checked.valid
