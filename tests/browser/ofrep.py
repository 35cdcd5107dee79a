#!/usr/bin/env python3
"""OpenFeature's web SDK and OFREP web provider in a real browser (issue #35), driven by tests/it/ofrep.rs.

Opens tests/browser/ofrep.html on its own origin; the page sets two OFREP web providers on the local stack (one with
a read key, polling; one keyless on the public flags) and the script checks what the web SDK evaluates: boolean,
string, number, object and nested flags, a stored null as the code default, a missing flag, a type mismatch and an
unservable item; that polls revalidate with If-None-Match and are answered 304 while nothing changes; that a change
written from outside the browser is picked up with a 200 and a ConfigurationChanged event; and that the keyless
provider sees only the public flags.

One argument: a JSON object (see tests/it/ofrep.rs). Prints one line per check; exits as common.py says.
"""

import json
import time

from common import Run, direct, main


class OfrepRun(Run):
    title = "s3kv ofrep test"
    errors_are_failures = True

    def evaluations(self):
        return self.driver.execute_script("return t_eval();")

    def log(self):
        return self.driver.execute_script("return t_log();")

    def run(self):
        config = self.config
        self.driver.execute_async_script(
            "t_start(arguments[0]).then(() => arguments[1](null), (e) => arguments[1](String(e)));", config
        )
        seen = self.evaluations()
        for name, expected in config["expected"].items():
            got = seen.get(name)
            self.check(f"{name} evaluates as expected", got == expected, f"got {json.dumps(got)}")
        default = seen["codeDefault"]
        self.check("a stored null gives the code's default", default["value"] == "from code", json.dumps(default))

        # Polls revalidate: with nothing changed, each is conditional and answered 304.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            keyed = [b for b in self.log()["bulk"] if b["domain"] == "keyed"]
            if sum(1 for b in keyed if b["status"] == 304) >= 2:
                break
            time.sleep(0.05)
        keyed = [b for b in self.log()["bulk"] if b["domain"] == "keyed"]
        self.check("the first bulk evaluation is a 200", keyed[:1] and keyed[0]["status"] == 200, json.dumps(keyed[:3]))
        polls = keyed[1:]
        self.check(
            "unchanged flags are revalidated with If-None-Match and answered 304",
            len(polls) >= 2 and all(p["status"] == 304 and p["conditional"] for p in polls),
            json.dumps(polls[:5]),
        )
        before = self.log()["changed"]

        status, _, body = direct(
            "PUT", f"{config['api']}/items/flags/theme", key=config["write_key"], body='"green"'
        )
        self.check("the change is written", status in (200, 201), f"{status} {body}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.evaluations()["string"]["value"] != "green":
            time.sleep(0.05)
        after = self.evaluations()["string"]
        self.check("a change is picked up by the next poll", after["value"] == "green", json.dumps(after))
        log = self.log()
        keyed = [b for b in log["bulk"] if b["domain"] == "keyed"]
        self.check(
            "the poll that picked it up was a conditional 200",
            any(b["status"] == 200 and b["conditional"] for b in keyed),
            json.dumps(keyed[-3:]),
        )
        self.check("the web SDK announced the change", log["changed"] > before, f"{before} -> {log['changed']}")
        self.check("the providers reported no errors", not log["errors"], json.dumps(log["errors"]))


if __name__ == "__main__":
    main(OfrepRun)
