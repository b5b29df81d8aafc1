#!/usr/bin/env bash
# Set up a fresh checkout: our virtualenv, Label Studio in its own virtualenv, and (with --tests)
# the system Chromium the browser tests drive, PostgreSQL's server binaries and Tesseract's OCR
# data. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="."
[[ "${1:-}" == "--tests" ]] && extras=".[dev,postgres,bench]"  # bench: the int8 engines the bench compares

python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -e "$extras"

# Label Studio pins Django and friends that clash with ours: it lives in .venv-ls.
if [[ ! -x .venv-ls/bin/label-studio ]]; then
    python3 -m venv .venv-ls
    .venv-ls/bin/pip install --quiet --disable-pip-version-check 'label-studio==1.23.2'
fi
# A new Label Studio database takes about a minute of migrations: run them once, here, into an
# empty template that each new LABELER_HOME copies (labeler/studio/server.py: seed_database).
if [[ ! -f .venv-ls/migrated/label_studio.sqlite3 ]]; then
    tmp="$(mktemp -d)"
    LABEL_STUDIO_BASE_DATA_DIR="$tmp" SENTRY_DSN="" FRONTEND_SENTRY_DSN="" COLLECT_ANALYTICS=false \
        LABEL_STUDIO_LATEST_VERSION_CHECK=false .venv-ls/bin/label-studio version >/dev/null
    mkdir -p .venv-ls/migrated
    mv "$tmp/label_studio.sqlite3" .venv-ls/migrated/
    rm -rf "$tmp"
fi

if [[ "${1:-}" == "--tests" && ! -x /usr/bin/chromium ]]; then
    sudo=""
    [[ "$(id -u)" != "0" ]] && sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null
fi

# The PostgreSQL cases start a throwaway server of their own (tests/postgres.py: initdb + pg_ctl
# on a loopback port): they need Debian's server binaries, not a running service.
if [[ "${1:-}" == "--tests" ]] && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    sudo=""
    [[ "$(id -u)" != "0" ]] && sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq postgresql >/dev/null
fi

# Tesseract's English language data for the import's OCR of burned-in text (the engine itself
# comes with the tesserocr wheel). The tests need it; for the demo it is worth having, and without
# it every import says that text in the pixels was not checked.
if [[ ! -f /usr/share/tesseract-ocr/5/tessdata/eng.traineddata ]]; then
    sudo=""
    [[ "$(id -u)" != "0" ]] && sudo="sudo -n"
    if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq tesseract-ocr >/dev/null; }; then
        [[ "${1:-}" == "--tests" ]] && { echo "setup: could not install tesseract-ocr" >&2; exit 1; }
        echo "setup: tesseract-ocr not installed: imports will say text was not checked" >&2
    fi
fi
