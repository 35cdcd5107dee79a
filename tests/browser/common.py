"""What the real-browser scripts (http_cache.py, push.py) share: Chromium started headless through chromedriver
with a fresh profile, requests made outside the browser, one line per check, and the exit codes the Rust side
(tests/it/common/browser.rs) reads: 0 when every check passes, 1 when any fails, 2 when the browser cannot be
driven at all, 3 when selenium is missing.

A script subclasses Run (its `title`, its checks in `run()`) and calls `main(ItsRun)`; its one argument is a JSON
object with at least `chromium`, `chromedriver`, `profile_dir`, `driver_log` and `page`.
"""

import json
import os
import sys
import time
import traceback
import urllib.error
import urllib.request

# Never reach out for a driver or a browser: the ones given are the ones to use.
os.environ["SE_OFFLINE"] = "true"

try:
    from selenium import webdriver
except ImportError as error:
    print(f"selenium is missing ({error}): run scripts/test, which installs it into .venv", file=sys.stderr)
    sys.exit(3)

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--no-proxy-server",
]

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def direct(method, url, key=None, body=None, timeout=30):
    """One request outside the browser, never proxied: (status, headers, body)."""
    request = urllib.request.Request(url, method=method, data=None if body is None else body.encode())
    if key is not None:
        request.add_header("X-Api-Key", key)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with DIRECT.open(request, timeout=timeout) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


class Run:
    """One script's run: its config, the browser, and the checks that failed so far."""

    # The test page's <title>: the page has loaded when the browser shows it.
    title = None
    # When true, an exception out of run() is one more failed check (exit 1), after the checks so far; otherwise
    # it means the browser could not be driven (exit 2).
    errors_are_failures = False

    def __init__(self, config):
        self.config = config
        self.failures = []
        self.driver = None

    def chrome_options(self):
        """Chromium's options: headless, the fresh profile, nothing proxied. A script may add to them."""
        options = webdriver.ChromeOptions()
        options.binary_location = self.config["chromium"]
        for flag in CHROMIUM_FLAGS + [f"--user-data-dir={self.config['profile_dir']}"]:
            options.add_argument(flag)
        return options

    def start_browser(self):
        service = webdriver.ChromeService(
            executable_path=self.config["chromedriver"], log_output=self.config["driver_log"]
        )
        self.driver = webdriver.Chrome(options=self.chrome_options(), service=service)
        self.driver.set_script_timeout(30)
        print(f"browser: {self.driver.capabilities.get('browserVersion')}", flush=True)
        self.driver.get(self.config["page"])
        deadline = time.monotonic() + 10
        while self.driver.title != self.title:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the test page did not load from {self.config['page']} (title {self.driver.title!r}); "
                    f"console: {self.driver.get_log('browser') if hasattr(self.driver, 'get_log') else '?'}"
                )
            time.sleep(0.05)

    def run(self):
        raise NotImplementedError

    def check(self, what, ok, detail=""):
        """Prints the check's line, `ok` or `FAIL` first (the Rust side collects the FAIL lines)."""
        line = f"{what}" + (f": {detail}" if detail else "")
        if ok:
            print(f"ok    {line}", flush=True)
        else:
            print(f"FAIL  {line}", flush=True)
            self.failures.append(line)

    def stop_browser(self):
        """Prints the page's console, then quits."""
        if self.driver is None:
            return
        try:
            for entry in self.driver.get_log("browser"):
                print(f"console: {entry.get('level')} {entry.get('message')}", flush=True)
        except Exception:  # noqa: BLE001 - the console is for the messages only
            pass
        self.driver.quit()


def main(run_class):
    run = run_class(json.loads(sys.argv[1]))
    try:
        run.start_browser()
        try:
            run.run()
        except Exception:
            if not run.errors_are_failures:
                raise
            traceback.print_exc()
            print("FAIL  the script stopped (traceback above)", flush=True)
            run.failures.append("the script stopped")
    except Exception:  # noqa: BLE001 - any error here means the browser could not be driven
        traceback.print_exc()
        sys.exit(2)
    finally:
        run.stop_browser()
    if run.failures:
        print(f"{len(run.failures)} check(s) failed", flush=True)
        sys.exit(1)
    print("every check passed", flush=True)
    sys.exit(0)
