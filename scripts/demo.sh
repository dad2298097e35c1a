#!/usr/bin/env bash
# Set the machine up (once) and run the demo: the collection's role archives a local cluster's
# WAL to a local S3 store, its modules back it up, list it and restore it, and the copy recovers.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$here/scripts/setup.sh"
# shellcheck disable=SC1091
source "${PGCLOUD_PREFIX:-/opt/pgcloud-backup}/env.sh"
cd "$here"
exec ansible-playbook playbooks/demo.yml "$@"
