"""template.yaml and the Rust code agree: what the functions read is what the template sets, the notification
filter selects exactly what the key mapping treats as items, and every function points at a real binary.

Run by scripts/validate-template (pytest, in .venv-lint). Uses cfn-lint's loader, which reads !Ref/!Sub/!GetAtt
as CloudFormation does.
"""

import copy
import functools
import json
import os
import pathlib
import re
import tomllib
import unicodedata

from cfnlint.decode import cfn_yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = cfn_yaml.load(str(ROOT / "template.yaml"))
RESOURCES = TEMPLATE["Resources"]
FUNCTIONS = {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
GLOBAL_ENV = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
CONFIG_RS = (ROOT / "src" / "config.rs").read_text()
KEY_RS = (ROOT / "src" / "key.rs").read_text()

# Variables the code reads, from the one place it reads them.
CODE_VARS = set(re.findall(r'get\("([A-Z0-9_]+)"\)', CONFIG_RS)) | set(
    re.findall(r'"([A-Z0-9_]+)",\s*(?:\d|DEFAULT_)', CONFIG_RS)
)
REQUIRED = {
    "writer": {"S3KV_BUCKET"},
    "syncer": {"S3KV_BUCKET", "VALKEY_URL"},
    "reader": {"S3KV_BUCKET", "VALKEY_URL"},
    "reconcile": {"S3KV_BUCKET", "VALKEY_URL"},
    "reaper": {"S3KV_BUCKET", "VALKEY_URL"},
    "notifier": {"S3KV_BUCKET", "S3KV_PUSH_ENDPOINT"},
    "push-authorizer": {"S3KV_BUCKET", "S3KV_API_KEYS"},
}
ROUTES_RS = (ROOT / "src" / "routes.rs").read_text()
RESOURCE_CONSTS = dict(re.findall(r'pub const ([A-Z_]+): &str = "([^"]+)";', ROUTES_RS))
# The route table, one `Route::new(Function, RESOURCE, Method::X, Operation::Y, Permission)` row per route.
ROUTE_ROWS = re.findall(
    r"Route::new\(\s*(\w+),\s*(\w+),\s*Method::(\w+),\s*Operation::(\w+),\s*(\w+),?\s*\)", ROUTES_RS
)
ROUTES = [
    (function.lower(), RESOURCE_CONSTS[resource], method, operation)
    for function, resource, method, operation, _ in ROUTE_ROWS
]
# (resource, method) of the routes that need no API key.
KEYLESS = {(RESOURCE_CONSTS[r], m) for _, r, m, _, permission in ROUTE_ROWS if permission == "Public"}
# Every function's non-API trigger; the API events are held to the route table by src/routes.rs's tests
# (`the_template_has_an_api_event_for_exactly_each_route_...`), with openapi.yaml.
OTHER_EVENTS = {
    "writer": set(),
    "reader": set(),
    "syncer": {"S3"},
    "reconcile": {"Schedule"},
    "reaper": {"Schedule"},
    "notifier": {"EventBridgeRule"},
    "push-authorizer": set(),
}
BINARIES = ["notifier", "push-authorizer", "reader", "reaper", "reconcile", "syncer", "writer"]
API_RS = "".join(p.read_text() for p in sorted((ROOT / "src" / "api").glob("*.rs")))


@functools.cache
def transformed():
    """The template as SAM's transform turns it into plain CloudFormation, offline (no credentials: the managed
    policy lookup is stubbed, and the template names no managed policy)."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self):
            return {}

    template = copy.deepcopy(TEMPLATE)
    template["Globals"]["Function"]["CodeUri"] = "s3://bucket/code.zip"  # the build's job; the transform wants S3
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(json.loads(json.dumps(template)), {}, NoManagedPolicies())


def binary(function):
    return function["Metadata"]["BuildProperties"]["Binary"]


def env(function):
    return {**GLOBAL_ENV, **function["Properties"].get("Environment", {}).get("Variables", {})}


def test_the_config_parser_was_read():
    assert {"S3KV_BUCKET", "S3KV_PREFIX", "VALKEY_URL", "S3KV_CACHE_TIMEOUT_MS"} <= CODE_VARS


def test_every_function_builds_a_binary_that_exists():
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    bins = {b["name"]: b["path"] for b in cargo["bin"]}
    # The product package builds the functions and nothing else: the local stack and tools are other members.
    assert sorted(bins) == BINARIES
    assert all(b.get("test") is False for b in cargo["bin"])
    assert "." in cargo["workspace"]["default-members"]
    assert sorted(binary(f) for f in FUNCTIONS.values()) == BINARIES
    for name, function in FUNCTIONS.items():
        assert function["Metadata"]["BuildMethod"] == "rust-cargolambda", name
        assert (ROOT / bins[binary(function)]).is_file(), name
        assert function["Properties"].get("Handler", TEMPLATE["Globals"]["Function"]["Handler"]) == "bootstrap"


def test_every_variable_the_functions_need_is_set_and_every_variable_set_is_read():
    for name, function in FUNCTIONS.items():
        variables = set(env(function))
        assert REQUIRED[binary(function)] <= variables, name
        assert variables - {"RUST_LOG"} <= CODE_VARS, f"{name} sets variables the code never reads"


def test_functions_use_the_bucket_the_template_creates():
    bucket_name = RESOURCES["ItemsBucket"]["Properties"]["BucketName"]
    assert GLOBAL_ENV["S3KV_BUCKET"] == bucket_name


def test_notification_filter_matches_the_key_mapping():
    assert 'const SUFFIX: &str = ".json";' in KEY_RS
    (syncer,) = [f for f in FUNCTIONS.values() if binary(f) == "syncer"]
    (event,) = syncer["Properties"]["Events"].values()
    assert event["Type"] == "S3"
    assert set(event["Properties"]["Events"]) == {"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}
    rules = {r["Name"]: r["Value"] for r in event["Properties"]["Filter"]["S3Key"]["Rules"]}
    assert rules == {"prefix": GLOBAL_ENV["S3KV_PREFIX"], "suffix": ".json"}


def test_each_function_has_its_triggers():
    for function in FUNCTIONS.values():
        others = {e["Type"] for e in function["Properties"].get("Events", {}).values() if e["Type"] != "Api"}
        assert others == OTHER_EVENTS[binary(function)], binary(function)


def test_cache_functions_are_in_the_vpc_and_authenticate_with_iam():
    for function in FUNCTIONS.values():
        props = function["Properties"]
        if "VALKEY_URL" in env(function):
            assert "VpcConfig" in props, binary(function)
            assert "S3KV_VALKEY_IAM_CACHE" in env(function)
            url = env(function)["VALKEY_URL"]["Fn::Sub"]
            assert url.startswith("valkeys-cluster://${CacheUser}@"), url
        else:
            assert "VpcConfig" not in props, binary(function)


def test_the_cache_user_may_touch_exactly_the_keys_the_code_writes():
    (default_prefix,) = re.findall(r'pub const DEFAULT_CACHE_PREFIX: &str = "([^"]*)";', CONFIG_RS)
    access = RESOURCES["CacheUser"]["Properties"]["AccessString"]
    assert f"~{default_prefix}*" in access.split()
    assert all("S3KV_CACHE_PREFIX" not in env(f) for f in FUNCTIONS.values()), "a custom prefix needs a new ACL"


def test_cors_settings_match_what_the_functions_and_local_gateway_send():
    methods = re.search(r'CORS_ALLOW_METHODS: &str = "([^"]+)"', API_RS).group(1)
    headers = re.search(r'CORS_ALLOW_HEADERS: &str = "([^"]+)"', API_RS).group(1)
    (api,) = [r for r in RESOURCES.values() if r["Type"] == "AWS::Serverless::Api"]
    cors = api["Properties"]["Cors"]
    assert cors["AllowMethods"] == f"'{methods}'"
    assert cors["AllowHeaders"] == f"'{headers}'"
    assert GLOBAL_ENV["S3KV_CORS_ORIGIN"] == {"Ref": "CorsOrigin"}
    for response in ("DEFAULT_4XX", "DEFAULT_5XX"):
        origin = api["Properties"]["GatewayResponses"][response]["ResponseParameters"]["Headers"]
        assert origin["Access-Control-Allow-Origin"] == cors["AllowOrigin"], response
        # Errors are never cached, whoever answers them (src/api/caching.rs for the functions').
        assert origin["Cache-Control"] == "'no-store'", response


def test_alarms_and_dashboard_use_metrics_the_code_emits():
    metrics_rs = (ROOT / "src" / "metrics.rs").read_text()
    emitted = set(re.findall(r'\(\s*"([A-Za-z]+)",\s*Unit::', metrics_rs))
    assert {"SyncFailures", "PropagationLag", "CacheHits"} <= emitted
    namespace = GLOBAL_ENV["S3KV_METRICS_NAMESPACE"]
    alarms = [r["Properties"] for r in RESOURCES.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    ours = [a for a in alarms if a.get("Namespace") == namespace]
    assert {a["MetricName"] for a in ours} == {"SyncFailures", "PropagationLag", "SchemaViolations"}
    for alarm in ours:
        assert alarm["Dimensions"] == [{"Name": "Function", "Value": "syncer"}]
    (dashboard,) = [r for r in RESOURCES.values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"][0]
    used = set(re.findall(r'"(Cache[A-Za-z]+|PropagationLag|Applied|Stale|Superseded|SkippedInvalid|CacheFull|SchemaViolations|FailedRecords|SyncFailures)"', body))
    assert used <= emitted, used - emitted


PARAMETERS = TEMPLATE["Parameters"]


def test_no_concurrency_is_reserved_unless_asked_so_small_accounts_can_deploy():
    # Lambda refuses a reservation that leaves under 100 unreserved: an account limit of 10 cannot reserve any.
    for function, parameter, condition in (
        ("SyncerFunction", "SyncerReservedConcurrency", "ReserveSyncerConcurrency"),
        ("ReconcileFunction", "ReconcileReservedConcurrency", "ReserveReconcileConcurrency"),
    ):
        assert str(PARAMETERS[parameter]["Default"]) == "0", parameter
        assert TEMPLATE["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, "0"]}]}
        reserved = RESOURCES[function]["Properties"]["ReservedConcurrentExecutions"]
        (cond, when_reserved, otherwise) = reserved["Fn::If"]
        assert cond == condition and otherwise == {"Ref": "AWS::NoValue"}, function
        assert when_reserved in ({"Ref": parameter}, 1), function


def test_the_api_stage_waits_for_the_account_logging_role_only_when_the_stack_sets_it():
    handle = RESOURCES["ApiGatewayAccountReady"]
    assert handle["Type"] == "AWS::CloudFormation::WaitConditionHandle"
    assert "Condition" not in handle  # a DependsOn on a conditional resource is refused
    assert handle["Metadata"]["AccountSetting"] == {
        "Fn::If": ["ConfigureApiGatewayLoggingCondition", {"Ref": "ApiGatewayAccount"}, ""]
    }
    depends = RESOURCES["Api"]["DependsOn"]
    assert "ApiGatewayAccountReady" in ([depends] if isinstance(depends, str) else depends)


def test_the_account_logging_role_and_setting_outlive_the_stack():
    for name in ("ApiGatewayLoggingRole", "ApiGatewayAccount"):
        assert RESOURCES[name]["DeletionPolicy"] == "Retain", name
        assert RESOURCES[name]["UpdateReplacePolicy"] == "Retain", name


def test_the_cache_storage_cap_is_a_parameter_and_alarmed_below_it():
    limits = RESOURCES["Cache"]["Properties"]["CacheUsageLimits"]["DataStorage"]
    assert limits == {"Maximum": {"Ref": "CacheMaxStorageGB"}, "Unit": "GB"}
    alarm = RESOURCES["CacheStorageAlarm"]["Properties"]
    (used,) = [m for m in alarm["Metrics"] if "MetricStat" in m]
    metric = used["MetricStat"]["Metric"]
    assert (metric["Namespace"], metric["MetricName"]) == ("AWS/ElastiCache", "BytesUsedForCache")
    assert metric["Dimensions"] == [{"Name": "clusterId", "Value": {"Ref": "Cache"}}]
    (percent,) = [m for m in alarm["Metrics"] if "Expression" in m]
    assert percent["Expression"] == {"Fn::Sub": "100 * used / (${CacheMaxStorageGB} * 1000000000)"}
    assert alarm["Threshold"] == {"Ref": "CacheStorageAlarmPercent"}


def test_route_tables_are_required_only_with_the_s3_endpoint():
    assert PARAMETERS["PrivateRouteTableIds"]["Default"] == ""
    rule = TEMPLATE["Rules"]["RouteTablesForTheS3Endpoint"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "CreateS3Endpoint"}, "true"]}
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::EachMemberEquals": [{"Ref": "PrivateRouteTableIds"}, ""]}]}


def test_the_name_pattern_refuses_trailing_and_doubled_hyphens():
    name = PARAMETERS["Name"]
    pattern = re.compile(name["AllowedPattern"])

    def allowed(value):
        return bool(pattern.fullmatch(value)) and len(value) <= name["MaxLength"]

    for good in ("s3kv", "my-kv", "a1-b2-c3", "a" * 20):
        assert allowed(good), good
    for bad in ("s3kv-", "my--kv", "-kv", "1kv", "Kv", "a" * 21, "my_kv"):
        assert not allowed(bad), bad


def test_a_read_key_and_a_write_key_each_have_a_plan_and_a_role():
    keys = {name for name, r in RESOURCES.items() if r["Type"] == "AWS::ApiGateway::ApiKey"}
    assert keys == {"ReadApiKey", "WriteApiKey"}
    plans = {
        r["Properties"]["KeyId"]["Ref"]: r["Properties"]["UsagePlanId"]["Ref"]
        for r in RESOURCES.values()
        if r["Type"] == "AWS::ApiGateway::UsagePlanKey"
    }
    assert plans == {"ReadApiKey": "ReadUsagePlan", "WriteApiKey": "WriteUsagePlan"}
    # The functions map each key's id to its role; the grants parse as src/access.rs reads them.
    grants = GLOBAL_ENV["S3KV_API_KEYS"]["Fn::Sub"]
    filled = json.loads(grants.replace("${ReadApiKey}", "r1").replace("${WriteApiKey}", "w1").replace("${Name}", "n"))
    assert {k: v["role"] for k, v in filled.items()} == {"r1": "read", "w1": "write"}
    assert GLOBAL_ENV["S3KV_EXTRA_API_KEYS"] == {"Ref": "ExtraApiKeys"}
    # Writes are throttled below reads in the write plan, method by method, on methods that exist.
    write_plan = RESOURCES["WriteUsagePlan"]["Properties"]
    throttled = set(write_plan["ApiStages"][0]["Throttle"])
    writes = {f"{r}/{m}" for f, r, m, _ in ROUTES if f == "writer"}
    assert throttled == writes
    assert "Throttle" not in RESOURCES["ReadUsagePlan"]["Properties"]["ApiStages"][0]
    outputs = TEMPLATE["Outputs"]
    assert outputs["ReadApiKeyId"]["Value"] == {"Ref": "ReadApiKey"}
    assert outputs["WriteApiKeyId"]["Value"] == {"Ref": "WriteApiKey"}


def test_keyless_reads_are_off_by_default_and_throttled_by_the_stage():
    params = TEMPLATE["Parameters"]
    assert params["PublicReadPrefix"]["Default"] == ""
    assert GLOBAL_ENV["S3KV_PUBLIC_PREFIX"] == {"Ref": "PublicReadPrefix"}
    settings = RESOURCES["Api"]["Properties"]["MethodSettings"]
    assert len(KEYLESS) == 3  # GET /public/{key} and OFREP's two public evaluations
    for resource, method in KEYLESS:
        encoded = resource.replace("/", "~1")
        (public,) = [s for s in settings if s["ResourcePath"] == "/" + encoded]
        assert public["HttpMethod"] == method
        assert public["ThrottlingRateLimit"] == {"Fn::If": ["PublicReads", {"Ref": "PublicRateLimit"}, 0]}
        assert public["ThrottlingBurstLimit"] == {"Fn::If": ["PublicReads", {"Ref": "PublicBurstLimit"}, 0]}


def _s3_actions(function):
    """Each S3 action the function's policies allow, with the resources it is allowed on."""
    allowed = {}
    for policy in FUNCTIONS[function]["Properties"]["Policies"]:
        for statement in policy.get("Statement", []):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for action in actions:
                if action.startswith("s3:"):
                    allowed.setdefault(action, []).append(json.dumps(statement["Resource"]))
    return allowed


def test_only_the_history_routes_functions_may_read_versions():
    reader, writer = _s3_actions("ReaderFunction"), _s3_actions("WriterFunction")
    # GET /versions/{key} lists versions and HEADs each; ?version= reads one; a restore reads the one it copies.
    assert {"s3:GetObjectVersion", "s3:ListBucketVersions"} <= reader.keys()
    assert "s3:GetObjectVersion" in writer and "s3:ListBucketVersions" not in writer
    # Object actions on the item prefix, listing on the bucket.
    assert all("${ItemPrefix}*" in r for r in reader["s3:GetObjectVersion"] + writer["s3:GetObjectVersion"])
    assert all("${ItemPrefix}" not in r for r in reader["s3:ListBucketVersions"])
    for function in ("SyncerFunction", "ReconcileFunction", "ReaperFunction"):
        assert not {"s3:GetObjectVersion", "s3:ListBucketVersions"} & _s3_actions(function).keys(), function
    # Deleting a version for good is nobody's business: history is only ever added to.
    for function in FUNCTIONS:
        assert "s3:DeleteObjectVersion" not in _s3_actions(function), function


def test_the_reaper_reads_and_deletes_items_and_nothing_else():
    # A conditional delete (If-Match) needs s3:GetObject as well as s3:DeleteObject; it never lists.
    assert set(_s3_actions("ReaperFunction")) == {"s3:GetObject", "s3:DeleteObject"}
    assert all("${ItemPrefix}*" in r for rs in _s3_actions("ReaperFunction").values() for r in rs)
    events = RESOURCES["ReaperFunction"]["Properties"]["Events"]
    assert [e["Properties"]["Schedule"] for e in events.values()] == ["rate(1 minute)"]
    assert "VpcConfig" in RESOURCES["ReaperFunction"]["Properties"]


def test_history_retention_is_two_parameters_on_a_versioned_bucket():
    bucket = RESOURCES["ItemsBucket"]["Properties"]
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    (rule,) = [r for r in bucket["LifecycleConfiguration"]["Rules"] if "NoncurrentVersionExpiration" in r]
    expiration = rule["NoncurrentVersionExpiration"]
    assert expiration["NoncurrentDays"] == {"Ref": "NoncurrentVersionDays"}
    kept = expiration["NewerNoncurrentVersions"]["Fn::If"]
    assert kept[0] == "KeepNewestVersions" and kept[1] == {"Ref": "NoncurrentVersionsKept"}
    params = TEMPLATE["Parameters"]
    # S3 takes 1-100 newer noncurrent versions; 0 leaves the setting out.
    assert (params["NoncurrentVersionsKept"]["MinValue"], params["NoncurrentVersionsKept"]["MaxValue"]) == (0, 100)
    assert TEMPLATE["Conditions"]["KeepNewestVersions"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "NoncurrentVersionsKept"}, "0"]}]
    }


def test_the_reader_outlives_the_longest_wait_and_api_gateway_does_not_cut_it_off():
    (max_wait,) = re.findall(r"pub const MAX_WAIT_SECS: u64 = (\d+);", CONFIG_RS)
    (reader,) = [f for f in FUNCTIONS.values() if binary(f) == "reader"]
    timeout = reader["Properties"].get("Timeout", TEMPLATE["Globals"]["Function"]["Timeout"])
    # API Gateway ends a REST integration after 29 s; the wait must end, and answer, before the function's timeout.
    assert int(max_wait) < timeout < 29
    parameter = TEMPLATE["Parameters"]["MaxWaitSeconds"]
    assert (parameter["MinValue"], parameter["MaxValue"]) == (0, int(max_wait))
    assert env(reader)["S3KV_MAX_WAIT_SECS"] == {"Ref": "MaxWaitSeconds"}
    # Every function that appends to the feed (the syncer, and reconcile's repairs) trims it to the same length.
    assert GLOBAL_ENV["S3KV_FEED_RETENTION"] == {"Ref": "FeedRetention"}


# ---------------------------------------------------------------- push (docs/src/http-api/push.md)
PUSH_RS = (ROOT / "src" / "push" / "mod.rs").read_text()
EVENTBRIDGE_RS = (ROOT / "src" / "push" / "eventbridge.rs").read_text()


def _statements(function):
    return [st for policy in RESOURCES[function]["Properties"]["Policies"] for st in policy.get("Statement", [])]


def _actions(function):
    actions = {}
    for statement in _statements(function):
        for action in statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]:
            actions[action] = statement["Resource"]
    return actions


def test_the_bucket_sends_to_eventbridge_beside_the_syncers_trigger():
    bucket = RESOURCES["ItemsBucket"]["Properties"]
    assert bucket["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    (event,) = RESOURCES["SyncerFunction"]["Properties"]["Events"].values()
    assert event["Type"] == "S3" and event["Properties"]["Bucket"] == {"Ref": "ItemsBucket"}
    # SAM merges the syncer's trigger into the bucket's configuration: both must survive the transform.
    merged = transformed()["Resources"]["ItemsBucket"]["Properties"]["NotificationConfiguration"]
    assert merged["EventBridgeConfiguration"] == {"EventBridgeEnabled": True}
    lambdas = merged["LambdaConfigurations"]
    assert {c["Event"] for c in lambdas} == {"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}
    assert all(c["Function"] == {"Fn::GetAtt": ["SyncerFunction", "Arn"]} for c in lambdas)


def test_the_notifier_gets_the_item_changes_the_decoder_reads():
    (event,) = RESOURCES["NotifierFunction"]["Properties"]["Events"].values()
    pattern = event["Properties"]["Pattern"]
    decoded = set(re.findall(r'pub const OBJECT_[A-Z]+: &str = "([^"]+)";', EVENTBRIDGE_RS))
    assert decoded == {"Object Created", "Object Deleted"}
    assert set(pattern["detail-type"]) == decoded
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail"]["bucket"]["name"] == [RESOURCES["ItemsBucket"]["Properties"]["BucketName"]]
    assert pattern["detail"]["object"]["key"] == [{"prefix": {"Ref": "ItemPrefix"}}]
    assert env(RESOURCES["NotifierFunction"])["S3KV_PUSH_ENDPOINT"] == {"Fn::GetAtt": ["PushApi", "Dns.Http"]}


def test_the_push_functions_are_small_outside_the_vpc_and_least_privileged():
    assert TEMPLATE["Globals"]["Function"]["Architectures"] == ["arm64"]
    for name in ("NotifierFunction", "PushAuthorizerFunction"):
        props = RESOURCES[name]["Properties"]
        assert "VpcConfig" not in props, name
        assert props["MemorySize"] == 128, name
    notifier = _actions("NotifierFunction")
    assert set(notifier) == {"s3:GetObject", "s3:ListBucket", "appsync:EventPublish"}
    assert notifier["s3:GetObject"]["Fn::Sub"][0].endswith("/${ItemPrefix}*")
    assert notifier["appsync:EventPublish"] == {"Fn::GetAtt": ["PushNamespace", "ChannelNamespaceArn"]}
    assert _actions("PushAuthorizerFunction") == {
        "apigateway:GET": {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/apikeys"}
    }


def test_clients_subscribe_through_the_authorizer_and_only_iam_publishes():
    (namespace,) = re.findall(r'pub const NAMESPACE: &str = "([^"]+)";', PUSH_RS)
    ns = RESOURCES["PushNamespace"]["Properties"]
    assert ns["Name"] == namespace
    assert ns["ApiId"] == {"Fn::GetAtt": ["PushApi", "ApiId"]}
    assert ns["SubscribeAuthModes"] == [{"AuthType": "AWS_LAMBDA"}]
    assert ns["PublishAuthModes"] == [{"AuthType": "AWS_IAM"}]
    config = RESOURCES["PushApi"]["Properties"]["EventConfig"]
    assert config["ConnectionAuthModes"] == [{"AuthType": "AWS_LAMBDA"}]
    assert config["DefaultSubscribeAuthModes"] == [{"AuthType": "AWS_LAMBDA"}]
    assert config["DefaultPublishAuthModes"] == [{"AuthType": "AWS_IAM"}]
    providers = {p["AuthType"]: p for p in config["AuthProviders"]}
    assert set(providers) == {"AWS_LAMBDA", "AWS_IAM"}
    lambda_config = providers["AWS_LAMBDA"]["LambdaAuthorizerConfig"]
    assert lambda_config["AuthorizerUri"] == {"Fn::GetAtt": ["PushAuthorizerFunction", "Arn"]}
    # The function decides what AppSync may cache (ttlOverride); the API caches nothing by itself.
    assert lambda_config["AuthorizerResultTtlInSeconds"] == 0
    permission = RESOURCES["PushAuthorizerPermission"]["Properties"]
    assert permission == {
        "FunctionName": {"Fn::GetAtt": ["PushAuthorizerFunction", "Arn"]},
        "Action": "lambda:InvokeFunction",
        "Principal": "appsync.amazonaws.com",
        "SourceArn": {"Fn::GetAtt": ["PushApi", "ApiArn"]},
    }
    outputs = TEMPLATE["Outputs"]
    assert outputs["PushRealtimeUrl"]["Value"] == {"Fn::Sub": "wss://${PushApi.Dns.Realtime}/event/realtime"}
    assert outputs["PushHttpHost"]["Value"] == {"Fn::GetAtt": ["PushApi", "Dns.Http"]}


def test_the_api_has_exactly_the_intended_stage():
    # Without OpenApiVersion SAM also deploys a stage named "Stage" (its Deployment gets StageName: Stage), with
    # no throttle, no access log and no usage plan: GET /Stage/public/{key} would reach the reader unthrottled.
    resources = transformed()["Resources"]
    stages = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::ApiGateway::Stage"}
    assert list(stages) == ["ApiStage"]
    assert stages["ApiStage"]["StageName"] == {"Ref": "StageName"}
    assert "AccessLogSetting" in stages["ApiStage"] and "MethodSettings" in stages["ApiStage"]
    deployments = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::Deployment"]
    assert deployments and all("StageName" not in d for d in deployments)
    # The usage plans are on that stage (Api.Stage resolves to it).
    for plan in ("ReadUsagePlan", "WriteUsagePlan"):
        (stage,) = resources[plan]["Properties"]["ApiStages"]
        assert stage["Stage"] == {"Ref": "ApiStage"}, plan
    assert RESOURCES["Api"]["Properties"]["OpenApiVersion"] == "3.0.1"  # quoted: 3.1.x is refused at deploy


# ---------------------------------------------------------------- parameters the functions parse (#33 item 5)
# CloudFormation accepts any string unless the parameter says otherwise, and a value the functions refuse is an
# outage found only at run time. Each rule below restates, in Python, what the Rust code accepts (src/config.rs,
# src/access.rs); the template's constraint must accept every sample the code accepts, and refuse the samples the
# code refuses. CloudFormation applies AllowedPattern as a Java regex to the whole value; the patterns use only
# syntax Java and Python's re read alike (classes, \xhh, \uhhhh, \s), matched here with fullmatch.


def parameter_allows(name, value):
    p = PARAMETERS[name]
    if "AllowedValues" in p:
        return str(value) in [str(v) for v in p["AllowedValues"]]
    if p["Type"] == "Number":
        return float(p.get("MinValue", "-inf")) <= float(value) <= float(p.get("MaxValue", "inf"))
    if not int(p.get("MinLength", 0)) <= len(value) <= int(p.get("MaxLength", 4096)):
        return False
    return "AllowedPattern" not in p or re.fullmatch(p["AllowedPattern"], value) is not None


def _ascii_graphic(s):
    return all(0x21 <= ord(c) <= 0x7E for c in s)


def config_accepts_cors_origin(value):  # src/config.rs
    return _ascii_graphic(value) and "," not in value


def access_accepts_prefix(value):  # src/access.rs check_prefix, with key.rs xml_safe
    control = lambda c: unicodedata.category(c) == "Cc" or c in "\ufffe\uffff"
    return value != "" and len(value.encode()) <= 512 and not any(control(c) for c in value)


def access_accepts_grants(value):  # src/access.rs parse_grants / parse_grant: True when no key is denied
    try:
        entries = json.loads(value)
    except ValueError:
        return False
    if not isinstance(entries, dict):
        return False
    for key_id, grant in entries.items():
        if not (key_id.isascii() and key_id.isalnum()) or not isinstance(grant, dict):
            return False
        if grant.get("role") not in ("read", "write") or set(grant) - {"role", "prefixes", "name"}:
            return False
        if not all(access_accepts_prefix(p) for p in grant.get("prefixes", [])):
            return False
        name = grant.get("name")
        if name is not None and not re.fullmatch(r"[A-Za-z0-9\-_. ]{1,128}", name):
            return False
    return True


def test_every_parameter_a_function_reads_is_constrained():
    referenced = set()
    for function in FUNCTIONS.values():
        for value in env(function).values():
            if isinstance(value, dict) and "Ref" in value:
                referenced.add(value["Ref"])
            elif isinstance(value, dict) and "Fn::Sub" in value:
                referenced |= set(re.findall(r"\$\{(\w+)\}", json.dumps(value["Fn::Sub"]))) & set(PARAMETERS)
    assert {"ItemPrefix", "CorsOrigin", "ExtraApiKeys", "PublicReadPrefix", "FeedRetention", "MaxWaitSeconds"} <= referenced
    for name in referenced & set(PARAMETERS):
        p = PARAMETERS[name]
        assert {"AllowedPattern", "AllowedValues", "MinValue"} & set(p), name
        assert "AllowedValues" in p or "ConstraintDescription" in p or p["Type"] == "Number", name
        assert parameter_allows(name, p["Default"]), name


def test_cors_origin_pattern_matches_the_config_rule():
    accepted = ["*", "https://app.example.com", "http://localhost:5173", "null"]
    refused = ["https://a.example, https://b.example", "https://a.example https://b.example", " *", "*\t",
               "https://café.example", ""]
    for value in accepted:
        assert config_accepts_cors_origin(value) and parameter_allows("CorsOrigin", value), value
    for value in refused[:-1]:
        assert not config_accepts_cors_origin(value) and not parameter_allows("CorsOrigin", value), value
    # Stricter than the code, on purpose: empty would put '' in the gateway's CORS header (the functions read it
    # as unset), and a quote would end the gateway's '...' literal.
    assert not parameter_allows("CorsOrigin", "")
    assert config_accepts_cors_origin("https://o'brien.example") and not parameter_allows("CorsOrigin", "https://o'brien.example")


def test_public_read_prefix_pattern_matches_the_access_rule():
    assert parameter_allows("PublicReadPrefix", "")  # the default: public reads off
    for value in ["public/", "p", "docs/v1/", "café/", "a" * 128]:
        assert access_accepts_prefix(value) and parameter_allows("PublicReadPrefix", value), value
    for value in ["public/\n", "tab\there", "\x7f", "bell\x07", "x\u0085", "a" * 513]:
        assert not access_accepts_prefix(value) and not parameter_allows("PublicReadPrefix", value), repr(value)
    # Stricter than the code: spaces (a trailing one is a typo), and 129 to 512 characters (128 characters are
    # at most 512 bytes of UTF-8, which a Java regex cannot count).
    for value in ["public/ ", "my docs/", "a" * 129]:
        assert access_accepts_prefix(value) and not parameter_allows("PublicReadPrefix", value), value


def test_extra_api_keys_pattern_refuses_what_is_not_a_grants_object():
    assert parameter_allows("ExtraApiKeys", "")  # the default: only the stack's two keys
    accepted = [
        "{}",
        '{"a1b2c3d4e5": {"role": "read"}}',
        '{"a1b2c3d4e5": {"role": "write", "prefixes": ["flags/"], "name": "flags-bot"}, "x9": {"role": "read"}}',
        '  {\n "a1b2c3d4e5" : { "role" : "read" }\n}\n',
    ]
    for value in accepted:
        assert access_accepts_grants(value) and parameter_allows("ExtraApiKeys", value), value
    refused = [
        '{"a1b2c3d4e5": {"role": "read"}',  # a brace short
        '"a1b2c3d4e5": {"role": "read"}',  # not wrapped in an object
        '[{"a1b2c3d4e5": {"role": "read"}}]',
        '{"a1b2-c3d4": {"role": "read"}}',  # not an API key id
        '{"a1b2c3d4e5": "read"}',  # a grant must be an object
        "{'a1b2c3d4e5': {'role': 'read'}}",  # single quotes are not JSON
        "a1b2c3d4e5=read",
    ]
    for value in refused:
        assert not access_accepts_grants(value) and not parameter_allows("ExtraApiKeys", value), value
    # The shape only: what is inside a grant is the functions' check (they deny that key and log why).
    assert not access_accepts_grants('{"a1b2c3d4e5": {"role": "admin"}}')
    assert parameter_allows("ExtraApiKeys", '{"a1b2c3d4e5": {"role": "admin"}}')


def test_item_prefix_and_numbers_stay_in_the_ranges_config_accepts():
    for value in ["items/", "x", "a" * 500]:
        assert parameter_allows("ItemPrefix", value), value
    for value in ["/items/", "", "a" * 501]:  # config refuses a leading '/' and over 500 bytes; the filter needs one
        assert not parameter_allows("ItemPrefix", value), value
    # Whole numbers above 0 (config's `positive`); the wait 0 to MAX_WAIT_SECS.
    assert not parameter_allows("FeedRetention", 0) and parameter_allows("FeedRetention", 1)
    (max_wait,) = re.findall(r"pub const MAX_WAIT_SECS: u64 = (\d+);", CONFIG_RS)
    assert parameter_allows("MaxWaitSeconds", 0) and parameter_allows("MaxWaitSeconds", int(max_wait))
    assert not parameter_allows("MaxWaitSeconds", int(max_wait) + 1)
    assert parameter_allows("LogLevel", "info") and not parameter_allows("LogLevel", "verbose")


# ---------------------------------------------------------------- abuse limits (#33 item 4)


def test_the_read_key_has_no_monthly_quota_unless_asked():
    # The read key ships in browsers: a quota on it is one budget for every browser and anyone who copies the key.
    assert str(PARAMETERS["ReadKeyMonthlyQuota"]["Default"]) == "0"
    assert TEMPLATE["Conditions"]["ReadKeyQuota"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ReadKeyMonthlyQuota"}, "0"]}]}
    quota = RESOURCES["ReadUsagePlan"]["Properties"]["Quota"]["Fn::If"]
    assert quota == [
        "ReadKeyQuota",
        {"Limit": {"Ref": "ReadKeyMonthlyQuota"}, "Period": "MONTH"},
        {"Ref": "AWS::NoValue"},
    ]
    assert RESOURCES["WriteUsagePlan"]["Properties"]["Quota"]["Limit"] == {"Ref": "ApiMonthlyQuota"}


def test_an_optional_waf_rate_limits_each_ip_on_the_whole_stage():
    assert PARAMETERS["WafRateLimitPerIp"]["Default"] == "0"
    for value in ("0", "10", "100", "2000", "999999999"):
        assert parameter_allows("WafRateLimitPerIp", value), value
    for value in ("1", "9", "010", "-5", "", "1e3", "1000000000"):  # WAF's lowest limit is 10
        assert not parameter_allows("WafRateLimitPerIp", value), value
    assert TEMPLATE["Conditions"]["WafRateLimit"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "WafRateLimitPerIp"}, "0"]}]}
    wafs = {name for name, r in RESOURCES.items() if r["Type"].startswith("AWS::WAFv2::")}
    assert wafs == {"WebAcl", "WebAclAssociation", "PushWebAclAssociation"}
    assert all(RESOURCES[name]["Condition"] == "WafRateLimit" for name in wafs)
    acl = RESOURCES["WebAcl"]["Properties"]
    assert acl["Scope"] == "REGIONAL" and acl["DefaultAction"] == {"Allow": {}}
    (rule,) = acl["Rules"]
    assert rule["Action"] == {"Block": {}}
    assert rule["Statement"] == {
        "RateBasedStatement": {"Limit": {"Ref": "WafRateLimitPerIp"}, "EvaluationWindowSec": 300, "AggregateKeyType": "IP"}
    }
    # No scope-down: every route, the keyless GET /public/{key} included, counts toward the one per-IP limit.
    # After SAM's transform the association names the API's only stage, and refers to it (so waits for it).
    association = transformed()["Resources"]["WebAclAssociation"]["Properties"]
    assert association["WebACLArn"] == {"Fn::GetAtt": ["WebAcl", "Arn"]}
    assert association["ResourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${Api}/stages/${ApiStage}"
    }
    # The push API too: each WebSocket handshake (and HTTP publish) counts toward the same per-IP limit.
    push = RESOURCES["PushWebAclAssociation"]["Properties"]
    assert push == {"WebACLArn": {"Fn::GetAtt": ["WebAcl", "Arn"]}, "ResourceArn": {"Fn::GetAtt": ["PushApi", "ApiArn"]}}


# ---------------------------------------------------------------- alarms notify someone (#33 item 6)


def test_every_alarm_notifies_the_alarm_topic_and_the_email_is_optional():
    alarms = {name: r["Properties"] for name, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert len(alarms) >= 5
    for name, alarm in alarms.items():
        assert {"Ref": "AlarmTopic"} in alarm.get("AlarmActions", []), name
        assert {"Ref": "AlarmTopic"} in alarm.get("OKActions", []), name
    assert RESOURCES["AlarmTopic"]["Type"] == "AWS::SNS::Topic" and "Condition" not in RESOURCES["AlarmTopic"]
    subscription = RESOURCES["AlarmEmailSubscription"]
    assert subscription["Condition"] == "AlarmEmailSet"
    assert subscription["Properties"] == {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}
    assert TEMPLATE["Conditions"]["AlarmEmailSet"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    assert PARAMETERS["AlarmEmail"]["Default"] == ""
    for value in ("", "ops@example.com", "a.b+s3kv@mail.example.org"):
        assert parameter_allows("AlarmEmail", value), value
    for value in ("ops", "ops@example", "ops@example.com, dev@example.com", " ops@example.com"):
        assert not parameter_allows("AlarmEmail", value), value


# ---------------------------------------------------------------- names (#33 item 7)
# The properties that name a resource within an account (and region), by resource type. A name built from the
# Name parameter alone collides when two stacks keep the default.
NAME_PROPERTIES = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::ElastiCache::ServerlessCache": "ServerlessCacheName",
    "AWS::ElastiCache::User": "UserId",
    "AWS::ElastiCache::UserGroup": "UserGroupId",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::Serverless::Api": "Name",
    "AWS::ApiGateway::ApiKey": "Name",
    "AWS::ApiGateway::UsagePlan": "UsagePlanName",
    "AWS::AppSync::Api": "Name",
    "AWS::WAFv2::WebACL": "Name",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::IAM::Role": "RoleName",
    "AWS::EC2::SecurityGroup": "GroupName",
}
STACK_SUFFIX = {"Fn::Select": [0, {"Fn::Split": ["-", {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}]}]}


def _unique_to_the_stack(name):
    """Whether a name expression differs between two stacks: it holds the stack name, the stack id, or the name
    of a resource CloudFormation generated (which holds the stack name)."""
    if isinstance(name, dict) and "Ref" in name:
        return name["Ref"] in ("AWS::StackName", "AWS::StackId") or name["Ref"] in RESOURCES
    if isinstance(name, dict) and "Fn::Sub" in name:
        sub = name["Fn::Sub"]
        (text, variables) = (sub, {}) if isinstance(sub, str) else sub
        refs = set(re.findall(r"\$\{([\w:]+)(?:\.\w+)?\}", text))
        if refs & {"AWS::StackName", "AWS::StackId"} or refs & set(RESOURCES):
            return True
        return any(variables.get(v) == STACK_SUFFIX for v in refs)
    return False


def test_no_resource_name_is_built_from_name_alone_so_two_stacks_never_collide():
    named = {}
    for logical, resource in RESOURCES.items():
        prop = NAME_PROPERTIES.get(resource["Type"])
        if prop and prop in resource.get("Properties", {}):
            named[logical] = resource["Properties"][prop]
    assert {"ItemsBucket", "Cache", "CacheUser", "CacheUserGroup", "ApiAccessLogs", "Dashboard", "SyncFailureAlarm"} <= set(named)
    for logical, name in named.items():
        assert _unique_to_the_stack(name), (logical, name)
    # The cache user's name is its id; the bucket's name, wherever the functions and the push rule build it, is
    # the bucket's own expression (test_functions_use_the_bucket_the_template_creates).
    assert RESOURCES["CacheUser"]["Properties"]["UserName"] == RESOURCES["CacheUser"]["Properties"]["UserId"]
    bucket = RESOURCES["ItemsBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    assert bucket == ["${Name}-items-${StackSuffix}-${AWS::AccountId}-${AWS::Region}", {"StackSuffix": STACK_SUFFIX}]
    # Every S3 ARN the policies grant is on that bucket.
    for function in FUNCTIONS:
        for statement in _statements(function):
            resource = json.dumps(statement["Resource"])
            if "arn:${AWS::Partition}:s3:::" in resource:
                assert "${Name}-items-${StackSuffix}-${AWS::AccountId}-${AWS::Region}" in resource, function
                assert json.dumps(STACK_SUFFIX) in resource, function
    # The metrics namespace, which the alarms and the dashboard read, is the stack's too.
    assert GLOBAL_ENV["S3KV_METRICS_NAMESPACE"] == {"Fn::Sub": "s3kv/${AWS::StackName}"}
    # The longest bucket name fits S3's 63 characters: Name at its longest, a 12-digit account, a 14-letter region.
    longest = f"{'a' * PARAMETERS['Name']['MaxLength']}-items-{'0' * 8}-{'1' * 12}-ap-southeast-2"
    assert len(longest) <= 63


def test_a_deploy_with_every_default_sets_the_logging_role_the_access_log_needs():
    # A REST stage with access logs fails until the account's CloudWatch Logs role is set (one per region), well
    # into the deploy; the defaults must set it, and the stage must wait for it.
    assert PARAMETERS["ConfigureApiGatewayLogging"]["Default"] == "true"
    assert TEMPLATE["Conditions"]["ConfigureApiGatewayLoggingCondition"] == {
        "Fn::Equals": [{"Ref": "ConfigureApiGatewayLogging"}, "true"]
    }
    role = RESOURCES["ApiGatewayLoggingRole"]["Properties"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert role["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"}
    ]
    account = RESOURCES["ApiGatewayAccount"]["Properties"]
    assert account == {"CloudWatchRoleArn": {"Fn::GetAtt": ["ApiGatewayLoggingRole", "Arn"]}}
    # After the transform the stage (with its access log) refers to the RestApi, which waits for the handle, which
    # refers to the account setting when it is made.
    resources = transformed()["Resources"]
    assert "AccessLogSetting" in resources["ApiStage"]["Properties"]
    assert resources["ApiStage"]["Properties"]["RestApiId"] == {"Ref": "Api"}
    depends = resources["Api"]["DependsOn"]
    assert "ApiGatewayAccountReady" in ([depends] if isinstance(depends, str) else depends)
