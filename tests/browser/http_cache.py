#!/usr/bin/env python3
"""What a real browser's HTTP cache does with s3kv's answers (issue #30), driven by tests/it/browser.rs.

Starts Chromium (headless, a fresh profile) through chromedriver, opens the test page, which sits on its own
origin, and has it call the API with plain fetch(), as app code does. Checks that a read right after a write made
elsewhere sees the new value, that a read without a key or with an unknown key is refused (403) rather than
answered from the cache, for keyed reads, ?version= reads, the public route and the other read routes, and that a
write from the page (a CORS preflight first) works.

One argument: a JSON object (see tests/it/browser.rs). Prints one line per check; exits as common.py says.
"""

import email.utils
import json
import time
import urllib.parse

from common import Run, direct, main

# Calls the page's own call(); the last argument is selenium's callback.
CALL = "const done = arguments[arguments.length - 1]; call(...Array.from(arguments).slice(0, -1)).then(done);"


class CacheRun(Run):
    title = "s3kv browser test"

    def chrome_options(self):
        options = super().chrome_options()
        # The network events say whether an answer came from the HTTP cache; for the messages only.
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        return options

    def fetch(self, method, url, key, body=None):
        """fetch() in the page: (status, body, how it was answered)."""
        self.driver.get_log("performance")  # drop what earlier calls logged
        result = self.driver.execute_async_script(CALL, method, url, key, body)
        cached = False
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message["method"] == "Network.requestServedFromCache":
                cached = True
            elif message["method"] == "Network.responseReceived" and params.get("type") == "Fetch":
                if params["response"].get("fromDiskCache") or params["response"].get("fromMemoryCache"):
                    cached = True
        how = "from Chrome's HTTP cache, the server not asked" if cached else "from the server"
        return result["status"], result["body"], how

    def expect(self, what, method, url, key, status, body=None, send=None):
        got_status, got_body, how = self.fetch(method, url, key, send)
        ok = got_status == status and (body is None or json_equal(got_body, body))
        want = f"{status}" + (f" {body}" if body is not None else "")
        answer = f"{got_status} {got_body.strip()[:200]} ({how})"
        line = f"{what}: {method} {url} {describe_key(self.config, key)} -> {answer}"
        self.check(line if ok else f"{line}; want {want}", ok)

    def wait_for_server(self, url, key, body):
        """Until the server itself (not the browser) answers `body`: the syncer has caught up."""
        deadline = time.monotonic() + 20
        while True:
            status, _, got = direct("GET", url, key, timeout=10)
            if status == 200 and json_equal(got, body):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server still answers {status} {got} for {url}, want {body}")
            time.sleep(0.05)

    def wait_until_old(self, url, key):
        """Until the item's Last-Modified is old enough that Chrome would keep it fresh heuristically for a while
        (a tenth of its age) if nothing said otherwise, so a cached copy would visibly be used."""
        status, headers, body = direct("GET", url, key, timeout=10)
        if status != 200 or headers.get("Last-Modified") is None:
            raise RuntimeError(f"{url}: {status} {body} with Last-Modified {headers.get('Last-Modified')}")
        modified = email.utils.parsedate_to_datetime(headers["Last-Modified"]).timestamp()
        wait = modified + self.config["min_age_secs"] - time.time()
        if wait > 0:
            print(f"waiting {wait:.0f} s until {url} was last modified {self.config['min_age_secs']} s ago", flush=True)
            time.sleep(wait)

    def run(self):
        c = self.config
        api, read_key, write_key, unknown = c["api"], c["read_key"], c["write_key"], c["unknown_key"]
        item = f"{api}/items/{c['item']}"
        version = f"{item}?version={urllib.parse.quote(c['version'], safe='')}"
        public = f"{api}/public/{c['public_item']}"
        v1, v2, v3 = '{"v": 1}', '{"v": 2}', '{"v": 3}'

        self.wait_until_old(item, read_key)

        # The first reads: what the browser may keep.
        self.expect("keyed read", "GET", item, read_key, 200, v1)
        self.expect("the same URL without a key", "GET", item, None, 403)
        self.expect("the same URL with an unknown key", "GET", item, unknown, 403)
        self.expect("keyed read of a version", "GET", version, read_key, 200, v1)
        self.expect("the same version without a key", "GET", version, None, 403)
        self.expect("the same version with an unknown key", "GET", version, unknown, 403)
        self.expect("public read", "GET", public, None, 200, v1)

        # A write made elsewhere (another tab, a CLI, a colleague): the browser is not told.
        for url in (item, f"{api}/items/{c['public_item']}"):
            status, _, body = direct("PUT", url, write_key, v2, timeout=10)
            if status not in (200, 201):
                raise RuntimeError(f"PUT {url}: {status} {body}")
        self.wait_for_server(item, read_key, v2)
        self.wait_for_server(public, None, v2)
        self.expect("keyed read right after a write elsewhere", "GET", item, read_key, 200, v2)
        self.expect("public read right after a write elsewhere", "GET", public, None, 200, v2)
        self.expect("the same URL without a key, again", "GET", item, None, 403)
        self.expect("the same URL with an unknown key, again", "GET", item, unknown, 403)

        # A write from the page itself: a CORS preflight (X-Api-Key, Content-Type), then the PUT.
        self.expect("PUT from the page with the write key", "PUT", item, write_key, 200, send=v3)
        self.wait_for_server(item, read_key, v3)
        self.expect("keyed read after the page's own write", "GET", item, read_key, 200, v3)

        # The other read routes: a keyed answer is never given to a request without the key.
        for what, path, key in (
            ("listing", f"/items?prefix={urllib.parse.quote(c['prefix'], safe='')}", read_key),
            ("history", f"/versions/{c['item']}", read_key),
            ("change feed", "/changes", read_key),
            ("schema list", "/schemas", write_key),
            ("schema", c["schema_path"], write_key),
        ):
            self.expect(f"{what} with its key", "GET", f"{api}{path}", key, 200)
            self.expect(f"{what} without a key", "GET", f"{api}{path}", None, 403)
            self.expect(f"{what} with an unknown key", "GET", f"{api}{path}", unknown, 403)


def json_equal(text, expected):
    try:
        return json.loads(text) == json.loads(expected)
    except ValueError:
        return False


def describe_key(config, key):
    names = {None: "without a key", config["read_key"]: "with the read key", config["write_key"]: "with the write key"}
    return names.get(key, "with an unknown key")


if __name__ == "__main__":
    main(CacheRun)
