# Sourced by the scripts in scripts/: `ensure_venv DIR REQUIREMENTS` creates a virtualenv at DIR (installing
# Debian's python3-venv first if Python cannot make one and we are root) and installs REQUIREMENTS into it.
ensure_venv() {
  local dir=$1 requirements=$2
  if [ ! -x "$dir/bin/python" ]; then
    if ! python3 -m venv "$dir" 2>/dev/null; then
      rm -rf "$dir"
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "python3-venv is missing; installing it" >&2
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$dir"
      else
        echo "python3 -m venv failed: install python3-venv (sudo apt-get install python3-venv) and re-run" >&2
        exit 1
      fi
    fi
  fi
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
}
