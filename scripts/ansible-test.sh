#!/usr/bin/env bash
# Run ansible-test on a copy of this checkout.
#
# ansible-test insists that a collection lives at .../ansible_collections/<namespace>/<name>;
# a checkout is rarely there, so the tree is copied (without .git and earlier test output)
# to a scratch directory of that shape, and ansible-test runs inside the copy. Its reports
# are copied back to tests/output/, where ansible-test would have written them.
#
#   scripts/ansible-test.sh sanity --venv --python 3.12
#   scripts/ansible-test.sh units --venv --python 3.12
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The project's venv (from scripts/setup.sh) is preferred to any other ansible-test on PATH.
env_file=${PGCLOUD_PREFIX:-/opt/pgcloud-backup}/env.sh
if [ -f "$env_file" ]; then
    # shellcheck source=/dev/null
    source "$env_file"
fi
command -v ansible-test >/dev/null || { echo "ansible-test not found: run scripts/setup.sh first" >&2; exit 1; }
command -v rsync >/dev/null || { echo "rsync not found: run scripts/setup.sh first" >&2; exit 1; }

scratch=${TMPDIR:-/tmp}/pgcloud-ansible-test
collection=$scratch/ansible_collections/pgcloud/backup
mkdir -p "$collection"
# --delete keeps the copy exact: a file removed from the checkout must not linger in the copy.
rsync -a --delete \
    --exclude=/.git/ --exclude=/tests/output/ \
    --exclude=__pycache__/ --exclude=.pytest_cache/ \
    "$here/" "$collection/"

status=0
(cd "$collection" && ansible-test "$@") || status=$?

# The reports (junit, coverage, bot) only; .tmp holds ansible-test's own virtual environments.
if [ -d "$collection/tests/output" ]; then
    mkdir -p "$here/tests/output"
    rsync -a --exclude=/.tmp/ "$collection/tests/output/" "$here/tests/output/"
fi
exit "$status"
