"""OpenFeature's Python SDK with its OFREP provider (PyPI: openfeature-sdk, openfeature-provider-ofrep), evaluating
s3kv flags; run by tests/it/ofrep.rs, which asserts on what this prints.

Argument: a JSON object {base, key, write_key, api}. Prints one JSON object: each evaluation's details, and whether
a change written through the API was picked up.
"""

import json
import sys
import time
import urllib.request

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext

config = json.loads(sys.argv[1])
api.set_provider(OFREPProvider(config["base"], headers_factory=lambda: {"x-api-key": config["key"]}))
client = api.get_client()
context = EvaluationContext(targeting_key="user-1", attributes={"plan": "pro"})


def seen(details):
    return {
        "value": details.value,
        "reason": str(details.reason.value if hasattr(details.reason, "value") else details.reason),
        "errorCode": details.error_code.value if details.error_code else None,
        "variant": details.variant,
    }


out = {
    "boolean": seen(client.get_boolean_details("maintenance", False, context)),
    "string": seen(client.get_string_details("theme", "none", context)),
    "integer": seen(client.get_integer_details("limit", 0, context)),
    "float": seen(client.get_float_details("ratio", 0.0, context)),
    "object": seen(client.get_object_details("ui", {}, context)),
    "nested": seen(client.get_boolean_details("checkout/new-ui", False, context)),
    "codeDefault": seen(client.get_string_details("default-me", "from code", context)),
    "missing": seen(client.get_boolean_details("missing", False, context)),
    "mismatch": seen(client.get_string_details("maintenance", "fallback", context)),
    "broken": seen(client.get_boolean_details("broken", False, context)),
}

opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
request = urllib.request.Request(
    f"{config['api']}/items/flags/theme",
    method="PUT",
    data=b'"green"',
    headers={"x-api-key": config["write_key"], "content-type": "application/json"},
)
with opener.open(request, timeout=10) as response:
    out["put"] = response.status
out["changed"] = None
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    value = client.get_string_value("theme", "none", context)
    if value != "blue":
        out["changed"] = value
        break
    time.sleep(0.05)
print(json.dumps(out))
