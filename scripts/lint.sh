#!/usr/bin/env bash
# The code checkers beyond ansible-test sanity: ruff (style, bugs, complexity) on every Python
# file, and mypy on the engine, the Ansible adapter and the modules, which it reads as the
# package ansible_collections.pgcloud.backup (from a scratch collections path that links
# this checkout). Settings in pyproject.toml. Used by scripts/test.sh and pre-commit.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
env_file=${PGCLOUD_PREFIX:-/opt/pgcloud-backup}/env.sh
if ! command -v mypy >/dev/null && [ -f "$env_file" ]; then
    # shellcheck source=/dev/null
    source "$env_file"
fi
cd "$here"
ruff check --no-cache plugins roles tests benchmarks scripts

collections=$(mktemp -d)
trap 'rm -rf "$collections"' EXIT
mkdir -p "$collections/ansible_collections/pgcloud"
ln -s "$here" "$collections/ansible_collections/pgcloud/backup"
cd "$collections"
mypy --config-file "$here/pyproject.toml" --cache-dir "$collections/.mypy_cache" \
    -p ansible_collections.pgcloud.backup.plugins.module_utils \
    -p ansible_collections.pgcloud.backup.plugins.modules
