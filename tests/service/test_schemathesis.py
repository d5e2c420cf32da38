"""Property-based API testing from the OpenAPI document (schemathesis): for every operation, generated
requests — authorised as administrator and as each other role — never produce a 5xx, and every response
conforms to the documented status codes, media types, headers and schemas.

Business rules can reject schema-valid data (an unknown sector, clock skew, a stale base), so schemathesis's
``positive_data_acceptance`` check is the one check left out; every other check runs.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from service_support import Api

from knhk.identity import ROLES

EXAMPLES = 10


def test_generated_requests_conform_for_every_role(api: Api) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    admin = {**api.token("administrator", subject="admin@example.org", sector="compliance"),
             "X-Access-Justification": "fuzzing"}
    others = {role: {**api.token(role, subject=f"{role}@example.org"), "X-Access-Justification": "fuzzing"}
              for role in sorted(set(ROLES) - {"administrator"})}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 29

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(headers=admin, excluded_checks=[positive_data_acceptance])
            for role, headers in others.items():
                response = case.call(headers=headers)
                assert response.status_code < 500, f"{case.method} {case.path} as {role}: {response.text}"
                case.validate_response(response, excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:2000]}")
    assert not failures, "\n\n".join(failures)
