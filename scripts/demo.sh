#!/usr/bin/env bash
# Set the machine up (once) and run the demo: a backup of a local cluster to a local S3
# store, listed and restored by barman-cloud-restore.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$here/scripts/setup.sh"
# shellcheck disable=SC1091
source "${PGCLOUD_PREFIX:-/opt/pgcloud-backup}/env.sh"
cd "$here"
exec ansible-playbook playbooks/demo.yml "$@"
