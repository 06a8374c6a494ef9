#!/usr/bin/env bash
# Installs everything the tests need, then runs lint, type checks and the whole test suite.
#
#   bash scripts/test.sh [pytest arguments]
#
# - Debian packages for the real-server tests (listed in .ci/apt-packages.txt) are installed
#   with apt-get when they are missing (needs root or sudo).
# - The project goes into a virtual environment (.venv, or $WATCHKEEPER_VENV) as a strict
#   editable install, the form mypy can follow.
# - With CI set (as CI does), WATCHKEEPER_NO_SKIP=1 turns every skipped test into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${WATCHKEEPER_VENV:-.venv}
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "watchkeeper needs Python 3.11 or newer; python3 is $(python3 --version)" >&2
    exit 1
}

mapfile -t wanted < <(grep -v '^\s*#' .ci/apt-packages.txt | grep -v '^\s*$' || true)
missing=()
for package in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing Debian packages: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "== installing watchkeeper and its test tools into $venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
    -e '.[test]' --config-settings editable_mode=strict

echo "== ruff"
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .

echo "== mypy"
# Run from outside the checkout: the root folder watchkeeper/ would otherwise shadow the
# installed package, whose subpackages live in sibling folders.
scratch=$(mktemp -d)
(cd "$scratch" && "$venv/bin/mypy" --config-file "$root/pyproject.toml" \
    --cache-dir "$root/.mypy_cache" -p watchkeeper)
rmdir "$scratch"

echo "== pytest"
if [ -n "${CI:-}" ]; then
    export WATCHKEEPER_NO_SKIP=1
fi
"$venv/bin/pytest" "$@"
