# Sourced by scripts/test: `ensure_browser` installs Debian's Chromium and its chromedriver when missing (as root,
# with apt-get, like redis-tools), for the real-browser test (tests/it/browser.rs), and exports their paths as
# S3KV_CHROMIUM and S3KV_CHROMEDRIVER, with S3KV_BROWSER_PYTHON, the .venv Python that has selenium (from
# requirements.txt). Debian's own packages, so browser and driver always match and nothing is downloaded from
# anywhere but the distribution. Call it from the repository's root, after ensure_venv.
ensure_browser() {
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing chromium and chromium-driver (for the real-browser test)" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
      echo "Chromium is missing: sudo apt-get install chromium chromium-driver, then re-run" >&2
      exit 1
    fi
  fi
  export S3KV_CHROMIUM=/usr/bin/chromium S3KV_CHROMEDRIVER=/usr/bin/chromedriver
  export S3KV_BROWSER_PYTHON="$PWD/.venv/bin/python"
}
