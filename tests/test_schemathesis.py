"""The HTTP API against its own OpenAPI schema, under schemathesis: no 5xx, every status code,
content type, header and body as documented, and invalid requests refused. A live server on
127.0.0.1 over one virtual board per member (so /classify goes to real boards).

`make test` runs a few examples per operation; `make fuzz-api` many more (FUZZ_API_EXAMPLES)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, ZOO, need_module, need_tool

need_module("schemathesis")

import schemathesis  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("FUZZ_API_EXAMPLES", "50"))
KEY = "fuzz-key"
# positive_data_acceptance is left out on purpose: the schema cannot say "a decodable PNG" or
# "3,072 raw bytes", so schema-valid garbage is rightly refused with 422 (the API's 4xx are
# checked against the schema by the others).


def no_server_error_but_documented_503(ctx, response, case):
    """schemathesis' not_a_server_error, except the two 503s the API documents: admission control
    (Retry-After) and, with fallback=false, a lost quorum (e.g. deadline_ms=5e-324: every board
    times out)."""
    if response.status_code == 503:
        detail = str((response.json() or {}).get("detail", ""))
        fallback_off = str((case.query or {}).get("fallback", "")).lower() in ("false", "0", "off", "no")
        if response.headers.get("retry-after") or (fallback_off and "quorum" in detail):
            return True
    return not_a_server_error(ctx, response, case)


CHECKS = [no_server_error_but_documented_503, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]


@pytest.fixture(scope="module")
def live_api(tmp_path_factory):
    from fleetvote.settings import Settings
    from fleetvote.testbed.harness import ControlledBoard, ServiceThread, board_models, write_ensemble

    need_tool("cc")
    subprocess.run(["make", "-C", str(ROOT / "firmware"), "BOARD=host", f"PYTHON={sys.executable}"],
                   check=True, capture_output=True)
    members = board_models()
    if not members:
        pytest.skip("no zoo member built into the virtual board")
    work = tmp_path_factory.mktemp("api")
    boards = [ControlledBoard(m, i, work) for i, m in enumerate(members)]
    try:
        for b in boards:
            b.start()
        s = Settings(ensemble=write_ensemble(work / "ensemble.json", members), zoo=ZOO, urls=[],
                     link_globs=[str(work / "boards" / "*")], scan_usb=False, rescan_s=0.5, api_key=KEY)
        with ServiceThread(s) as svc:
            yield svc.url
    finally:
        for b in boards:
            b.stop()


@pytest.fixture(scope="module")
def api_schema(live_api):
    return schemathesis.openapi.from_url(f"{live_api}/openapi.json", headers={"X-API-Key": KEY})


def _fuzz(schema, mode) -> tuple[int, list[str]]:
    """Every operation of the schema under Hypothesis (schemathesis' strategies, driven here rather
    than by its pytest plugin, whose lazy schema breaks on pytest 9's node ids). Returns the
    number of operations and the failures, each with schemathesis' report (request, response,
    curl to reproduce)."""
    failures = []
    n = 0
    for result in schema.get_all_operations():
        op = result.ok()
        n += 1

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, report_multiple_bugs=False,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            # the real key replaces a generated one; a case that leaves the header out on purpose
            # (negative mode) keeps it out, and must get its 401
            keyed = {k.lower() for k in (case.headers or {})}
            headers = {"X-API-Key": KEY} if "x-api-key" in keyed or mode == GenerationMode.POSITIVE else None
            case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

        try:
            run()
        except Unsatisfiable:
            continue  # nothing in this operation can be made invalid (GET /healthz takes no input)
        except Exception as exc:  # schemathesis' FailureGroup, or an error reaching the server
            failures.append(f"{op.label} ({mode.value}): {type(exc).__name__}: {exc}"[:3000])
    return n, failures


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_api_conforms_to_its_openapi_schema(api_schema, mode):
    n, failures = _fuzz(api_schema, mode)
    assert n >= 7
    assert not failures, "\n\n".join(failures)


# health probes (a load balancer, Kubernetes) send no key: the service's and the inference protocol's
PUBLIC = ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready")


def test_every_protected_operation_documents_401_and_the_key(live_api):
    """Without the key the service answers 401 (tests/test_service.py); the schema should say so."""
    import httpx

    spec = httpx.get(f"{live_api}/openapi.json").json()
    undocumented = [f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method, op in ops.items()
                    if path not in PUBLIC and "401" not in op.get("responses", {})]
    assert not undocumented, f"401 undocumented on {', '.join(undocumented)}"
    assert spec.get("components", {}).get("securitySchemes"), "no security scheme for X-API-Key"
