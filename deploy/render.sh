#!/usr/bin/env bash
# Render the systemd units of deploy/ for this checkout into OUT_DIR:
#
#     deploy/render.sh ENV_FILE OUT_DIR      e.g. deploy/render.sh /etc/labeler/labeler.env /etc/systemd/system
#
# @APP_DIR@ becomes this checkout (it holds .venv and .venv-ls), @ENV_FILE@ the environment
# file's absolute path and @LABELER_HOME@ the LABELER_HOME it sets: systemd reads paths such as
# ReadWritePaths= literally, so they are written into the units rather than read at start.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 ENV_FILE OUT_DIR" >&2
    exit 2
fi
env_file=$(realpath -e -- "$1") || { echo "error: no environment file $1" >&2; exit 2; }
out_dir=$2
app_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
home=$(sed -n 's/^[[:space:]]*LABELER_HOME=//p' "$env_file" | tail -n 1)
home=${home%\"}
home=${home#\"}

for path in "$app_dir" "$env_file" "$home"; do
    # unit files split ExecStart= on blanks and read % as a specifier
    if [[ $path != /* || $path =~ [[:space:]%\"\'\\] ]]; then
        echo "error: '$path' must be an absolute path without blanks, quotes, backslashes or %" \
            "(LABELER_HOME comes from $env_file)" >&2
        exit 2
    fi
done

mkdir -p -- "$out_dir"
for template in "$app_dir"/deploy/*.service "$app_dir"/deploy/*.timer; do
    text=$(<"$template")
    text=${text//@APP_DIR@/"$app_dir"}
    text=${text//@ENV_FILE@/"$env_file"}
    text=${text//@LABELER_HOME@/"$home"}
    printf '%s\n' "$text" >"$out_dir/$(basename -- "$template")"
    echo "$out_dir/$(basename -- "$template")"
done
