"""A bounded property-based run over the OpenAPI document (schemathesis):
for every operation, generated requests — valid ones and broken ones — sent
to a real ``zhixing serve`` with the admin token; no answer may be a 5xx,
and every answer must be one the document declares, in its content type,
headers and schema.

Not checked: that every request valid by the schema is accepted. The
document cannot say that a course id must exist or that a time lies between
2000 and 2100; the domain answers those with 422, which is declared.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from web.api.contract import OPENAPI

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "contract-fuzz-admin-token"
EXAMPLES = 20  # per operation: about 50 s for the whole document here
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]

# An SDP offer and a trickle-ICE fragment travel as text.
schemathesis.serializer.alias(["application/sdp", "application/trickle-ice-sdpfrag"],
                              "text/plain")
# A course package's upload, a reading's file and a write-up's attachment travel as bytes.
schemathesis.serializer.alias(
    ["application/zip", "application/x-iso9660-image", "application/pdf",
     "application/epub+zip", "image/jpeg", "image/png",
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"],
    "application/octet-stream")
schema = schemathesis.openapi.from_dict(OPENAPI)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``zhixing serve`` in a process of its own, on a fresh data folder."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tmp_path_factory.mktemp("fuzz")
    env = {**os.environ, "ZHIXING_ADMIN_TOKEN": TOKEN,
           "ZHIXING_ADMIN_PASSWORD": "contract-fuzz-password"}
    log = (folder / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "web.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data", str(folder / "data"), "--ice-host", "127.0.0.1", "--log-level", "warning",
         "--workers", "1"],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/healthz", timeout=1).close()
                break
            except requests.ConnectionError:
                assert process.poll() is None, (folder / "serve.log").read_text()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    tracebacks = [line for line in (folder / "serve.log").read_text().splitlines()
                  if "Traceback" in line or "Error handling request" in line]
    assert tracebacks == [], (folder / "serve.log").read_text()[-4000:]


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_answer_breaks_the_contract(case: schemathesis.Case, server: str) -> None:
    case.call_and_validate(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"},
                           checks=CHECKS, timeout=30)
