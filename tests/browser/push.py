#!/usr/bin/env python3
"""Push to a real browser (issue #32), driven by tests/it/push_browser.rs.

Starts Chromium (headless, a fresh profile) through chromedriver, opens the push page (tests/browser/push.html) on
its own origin, which loads the built push module (clients/js, dist/push.js) and subscribes to the local stack. Then changes items
from outside the browser (the API, the aws CLI straight to the bucket) and checks what each subscription's
onChange got: every change once, the exact text, deletes, a catch-up after the server drops the sockets, the
long-poll fallback and the way back, prefix-limited keys and keyless subscribers held to what they may read (on the
wire too), and 100 rapid writes to one key with no step backwards.

One argument: a JSON object (see tests/it/push_browser.rs). Prints one line per check; exits as common.py says.
"""

import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from common import DIRECT, Run, direct, main


def seq_key(sequencer):
    """Sequencers compare right-padded with 0 (src/sequencer.rs)."""
    return sequencer.upper().ljust(64, "0")


class Failed(Exception):
    pass


class PushRun(Run):
    title = "s3kv push test"
    # A check that cannot go on fails, and the others still count.
    errors_are_failures = True

    # ---- plumbing ----

    def log(self):
        return self.driver.execute_script("return t_log();")

    def start(self, name, **options):
        options.setdefault("api", self.config["api"])
        self.driver.execute_script("t_start(arguments[0], arguments[1]);", name, options)

    def block(self, on):
        self.driver.execute_script("t_block(arguments[0]);", self.config["closed_ws"] if on else None)

    def control(self, what):
        status, _, body = direct("POST", f"{self.config['page']}control/{what}")
        if status != 200:
            raise RuntimeError(f"control/{what}: {status} {body}")

    def api(self, method, key, body=None, api_key=None):
        url = f"{self.config['api']}/items/{urllib.parse.quote(key)}"
        status, _, text = direct(method, url, api_key or self.config["write_key"], body)
        if status not in (200, 201, 204):
            raise RuntimeError(f"{method} {key}: {status} {text}")
        return text

    def etag(self, key):
        url = f"{self.config['api']}/items/{urllib.parse.quote(key)}?consistent=true"
        request = urllib.request.Request(url, headers={"X-Api-Key": self.config["read_key"]})
        try:
            with DIRECT.open(request, timeout=10) as response:
                return response.headers["ETag"].strip('"')
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def aws_cp(self, key, body):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
            file.write(body)
        env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID=self.config["aws_access_key"],
            AWS_SECRET_ACCESS_KEY=self.config["aws_secret_key"],
            AWS_DEFAULT_REGION=self.config["aws_region"],
            AWS_CONFIG_FILE="/dev/null",
            AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        )
        command = [self.config["aws"], "--endpoint-url", self.config["s3_endpoint"], "s3", "cp", file.name,
                   f"s3://{self.config['bucket']}/{key}.json"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        os.unlink(file.name)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {done.returncode} {done.stdout} {done.stderr}")

    def wait_for(self, what, predicate, timeout=15):
        """Polls the page's log until predicate(log) is truthy; returns that value, or raises Failed."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log()
            got = predicate(log)
            if got:
                return got
            if time.monotonic() > deadline:
                raise Failed(f"{what}: not within {timeout} s; the page saw:\n{summary(log)}")
            time.sleep(0.1)

    def step(self, what, run):
        try:
            run()
        except Failed as error:
            self.check(what, False, str(error))

    # ---- the checks ----

    def run(self):
        c = self.config
        quiet = {"pollAfterFailures": 1000}  # these catch up after a reconnect; they never long-poll
        self.start("main", apiKey=c["read_key"], keys=["push/doc"], prefixes=["push/"], **quiet)
        self.start("flags", apiKey=c["flags_key"], prefixes=["flags/", "config/"], **quiet)
        self.start("public", prefixes=["public/", "push/"], **quiet)

        def subscribed():
            self.wait_for("main is live", lambda l: has_status(l, "main", "live"))
            refused = self.wait_for(
                "flags is live, config/ refused",
                lambda l: has_status(l, "flags", "live") and statuses(l, "flags", "refused"),
            )
            self.check(
                "a flags/-limited key may not follow config/",
                [r.get("prefix") for r in refused] == ["config/"],
                json.dumps(refused),
            )
            refused = self.wait_for(
                "public is live, push/ refused",
                lambda l: has_status(l, "public", "live") and statuses(l, "public", "refused"),
            )
            self.check(
                "no key may follow public/ but not push/",
                [r.get("prefix") for r in refused] == ["push/"],
                json.dumps(refused),
            )

        self.step("subscribing", subscribed)

        def api_write():
            text = '{"n": 1,   "text": "exact \\u00e9 text"}'
            self.api("PUT", "push/doc", text)
            etag = self.etag("push/doc")
            got = self.wait_for("an API write arrives", lambda l: changes(l, "main", "push/doc"))
            time.sleep(1)  # the key's channel and the prefix's both carry it: still once
            got = changes(self.log(), "main", "push/doc")
            self.check(
                "an API write arrives once, pushed, with its exact text",
                len(got) == 1 and got[0]["body"] == text and got[0]["etag"] == etag and got[0]["via"] == "push"
                and got[0]["sequencer"] and got[0]["value"] == {"n": 1, "text": "exact \u00e9 text"},
                json.dumps(got),
            )

        self.step("API write", api_write)

        def upload():
            text = '{"uploaded":  true}'
            self.aws_cp("push/uploaded", text)
            got = self.wait_for("a manual upload arrives", lambda l: changes(l, "main", "push/uploaded"))
            self.check(
                "a manual upload (aws s3 cp) arrives with its exact text",
                len(got) == 1 and got[0]["body"] == text and not got[0]["deleted"],
                json.dumps(got),
            )

        self.step("manual upload", upload)

        def delete():
            self.api("DELETE", "push/doc")
            got = self.wait_for(
                "a delete arrives", lambda l: [x for x in changes(l, "main", "push/doc") if x["deleted"]]
            )
            self.check(
                "a delete arrives once, with no ETag and no body",
                len(got) == 1 and got[0]["etag"] is None and got[0]["body"] is None,
                json.dumps(got),
            )

        self.step("delete", delete)

        def limited():
            self.api("PUT", "config/site", '{"site": 1}')
            self.api("PUT", "flags/beta", '{"on": true}')
            self.api("PUT", "public/banner", '{"hello": "world"}')
            self.wait_for("flags/beta reaches the flags/-limited key", lambda l: changes(l, "flags", "flags/beta"))
            self.wait_for("public/banner reaches the keyless one", lambda l: changes(l, "public", "public/banner"))
            self.control("settle")
            time.sleep(1)
            log = self.log()
            seen = sorted({x["key"] for x in log["changes"]["flags"]})
            self.check("the flags/-limited key gets flags/ changes only", seen == ["flags/beta"], json.dumps(seen))
            seen = sorted({x["key"] for x in log["changes"]["public"]})
            self.check("the keyless subscriber gets public/ changes only", seen == ["public/banner"],
                       json.dumps(seen))
            seen = sorted({x["key"] for x in log["changes"]["main"]})
            self.check("the read key's push/ subscriber gets push/ changes only",
                       all(k.startswith("push/") for k in seen), json.dumps(seen))

        self.step("limited keys", limited)

        def reconnect():
            self.block(True)
            before = len(self.log()["statuses"]["main"])
            self.control("drop")
            self.wait_for("main sees the drop", lambda l: [s for s in l["statuses"]["main"][before:]
                                                          if s["state"] == "reconnecting"])
            text = '{"while": "disconnected"}'
            self.api("PUT", "push/offline", text)
            self.control("settle")  # its push went out, to no one
            time.sleep(0.5)
            self.block(False)
            got = self.wait_for("the change made while disconnected arrives",
                                lambda l: changes(l, "main", "push/offline"), timeout=30)
            self.wait_for("main is live again", lambda l: [s for s in l["statuses"]["main"][before:]
                                                          if s["state"] == "live"])
            time.sleep(1)
            got = changes(self.log(), "main", "push/offline")
            self.check(
                "after the server drops the socket, a change made meanwhile is caught up, once",
                len(got) == 1 and got[0]["body"] == text and got[0]["via"] == "read",
                json.dumps(got),
            )
            states = [s["state"] for s in self.log()["statuses"]["main"][before:]]
            self.check("main never long-polled", "polling" not in states, json.dumps(states))

        self.step("reconnect", reconnect)

        def fallback():
            self.block(True)
            self.start("poller", apiKey=c["read_key"], keys=["push/polled"], pollAfterFailures=2, maxBackoffMs=1000)
            self.wait_for("poller falls back to long-polling", lambda l: has_status(l, "poller", "polling"))
            time.sleep(0.5)  # its first long-poll is waiting
            self.api("PUT", "push/polled", '{"v": 1}')
            got = self.wait_for("a change reaches the long-poller", lambda l: changes(l, "poller", "push/polled"))
            self.check("a change reaches the long-poller, read", got[0]["via"] == "read" and got[0]["value"] == {"v": 1},
                       json.dumps(got))
            self.block(False)
            self.wait_for("poller goes back to push", lambda l: has_status(l, "poller", "live"))
            # The first push after a state that was read is checked with a read (their order is unknown); the
            # next is delivered as pushed.
            self.api("PUT", "push/polled", '{"v": 2}')
            self.wait_for("v2 arrives", lambda l: [x for x in changes(l, "poller", "push/polled")
                                                   if x["value"] == {"v": 2}])
            self.api("PUT", "push/polled", '{"v": 3}')
            got = self.wait_for("a change is pushed again",
                                lambda l: [x for x in changes(l, "poller", "push/polled") if x["value"] == {"v": 3}])
            self.check("back on push, changes are pushed", got[0]["via"] == "push", json.dumps(got))
            self.driver.execute_script("t_close('poller');")

        self.step("long-poll fallback", fallback)

        def rapid():
            for n in range(100):
                self.api("PUT", "push/rapid", json.dumps({"n": n}))
            got = self.wait_for(
                "the last of 100 rapid writes arrives",
                lambda l: [x for x in changes(l, "main", "push/rapid") if x["value"] == {"n": 99}],
                timeout=60,
            )
            self.control("settle")
            time.sleep(1)
            got = changes(self.log(), "main", "push/rapid")
            values = [x["value"]["n"] for x in got]
            sequencers = [x["sequencer"] for x in got]
            forward = all(a < b for a, b in zip(values, values[1:]))
            ordered = all(s is not None for s in sequencers) and all(
                seq_key(a) < seq_key(b) for a, b in zip(sequencers, sequencers[1:])
            )
            self.check(
                f"100 rapid writes: {len(values)} seen, never a step back, ending on the last",
                forward and ordered and values[-1] == 99,
                f"values {values}",
            )

        self.step("rapid writes", rapid)

        def the_wire():
            log = self.log()
            for key, prefix in [(c["flags_key"], "flags/"), (None, "public/")]:
                outside = []
                for frame in log["frames"]:
                    if frame["apiKey"] != key:
                        continue
                    message = json.loads(frame["data"])
                    if message.get("type") == "data":
                        event = json.loads(message["event"]) if isinstance(message["event"], str) else message["event"]
                        if not event["key"].startswith(prefix):
                            outside.append(event["key"])
                self.check(
                    f"on the wire, nothing outside {prefix} reaches {'the flags/-limited key' if key else 'a keyless socket'}",
                    not outside,
                    json.dumps(outside),
                )

        self.step("the wire", the_wire)


def statuses(log, name, state):
    return [s for s in log["statuses"].get(name, []) if s["state"] == state]


def has_status(log, name, state):
    return bool(statuses(log, name, state))


def changes(log, name, key):
    return [x for x in log["changes"].get(name, []) if x["key"] == key]


def summary(log):
    lines = []
    for name, got in log["changes"].items():
        for x in got[-15:]:
            body = (x["body"] or "")[:80]
            lines.append(f"  {name} change: {x['key']} {x['etag']} {x['via']} seq={x['sequencer']} {body}")
    for name, got in log["statuses"].items():
        for s in got[-10:]:
            lines.append(f"  {name} status: {json.dumps({k: v for k, v in s.items() if k != 'at'})}")
    for frame in log["frames"][-10:]:
        lines.append(f"  frame ({'key' if frame['apiKey'] else 'no key'}): {frame['data'][:200]}")
    return "\n".join(lines)


if __name__ == "__main__":
    main(PushRun)
