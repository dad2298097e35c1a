#!/usr/bin/env bash
# Builds the documentation site of the collection into HTML: every module and the role, rendered
# by antsibull-docs from their own documentation, and the guides of docs/docsite. Fails on any
# warning, of the docs lint (antsibull-docs lint-collection-docs --plugin-docs) or of Sphinx (-W).
#
#   scripts/docs.sh [--no-setup] [OUTPUT_DIR]      (default OUTPUT_DIR: docs/build/html)
#
# It runs scripts/setup.sh first, as demo.sh does, so that it works from a fresh clone;
# --no-setup skips that (scripts/test.sh has run it already).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

setup=true
if [ "${1:-}" = "--no-setup" ]; then
    setup=false
    shift
fi
output=$(realpath -m "${1:-$here/docs/build/html}")

if $setup; then
    "$here/scripts/setup.sh"
fi
# shellcheck source=/dev/null
source "${PGCLOUD_PREFIX:-/opt/pgcloud-backup}/env.sh"

# setup.sh installs these from tests/requirements-dev.txt; a venv made before they were listed
# there gets the same pinned versions here.
if ! command -v antsibull-docs >/dev/null || ! command -v sphinx-build >/dev/null ||
    ! python -c "import sphinx_ansible_theme" 2>/dev/null; then
    echo "[docs] installing antsibull-docs, Sphinx and the Ansible theme" >&2
    mapfile -t wanted < <(grep -E '^(antsibull-docs|sphinx-ansible-theme|sphinx)==' "$here/tests/requirements-dev.txt")
    python -m pip install -q "${wanted[@]}"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A collections path of its own that holds this checkout, whatever setup.sh last linked.
mkdir -p "$work/collections/ansible_collections/pgcloud"
ln -s "$here" "$work/collections/ansible_collections/pgcloud/backup"
export ANSIBLE_COLLECTIONS_PATH="$work/collections"

echo "[docs] linting the collection's documentation" >&2
antsibull-docs lint-collection-docs --plugin-docs "$work/collections/ansible_collections/pgcloud/backup"

# antsibull-docs refuses a destination that others may write to.
site=$work/site
mkdir -m 0700 "$site" "$site/rst"
antsibull-docs sphinx-init --use-current --fail-on-error --dest-dir "$site" \
    --project pgcloud.backup --copyright "contributors to the pgcloud.backup collection" \
    --title "pgcloud.backup collection" --html-short-title "pgcloud.backup" \
    pgcloud.backup >/dev/null
# The generated configuration maps Python's, Jinja's and Ansible's sites for intersphinx, which
# Sphinx would download; builds run offline, and the guides link those sites by URL instead.
echo "intersphinx_mapping = {}" >> "$site/conf.py"

antsibull-docs --config-file "$site/antsibull-docs.cfg" collection --use-current --fail-on-error \
    --dest-dir "$site/rst" pgcloud.backup

# The pages antsibull-docs renders refer to two labels of the Ansible documentation, which
# intersphinx would resolve; this page gives them a target that links there.
cat > "$site/rst/ansible_docs_links.rst" <<'RST'
:orphan:

Ansible documentation
=====================

.. _common_return_values:

Common return values
--------------------

The values every module returns are described in the `Ansible documentation
<https://docs.ansible.com/ansible/latest/reference_appendices/common_return_values.html>`__.

.. _ansible_configuration_settings:

Ansible configuration settings
------------------------------

See the `Ansible documentation
<https://docs.ansible.com/ansible/latest/reference_appendices/config.html>`__.
RST

echo "[docs] building the HTML into $output" >&2
rm -rf "$output"
sphinx-build -q -b html -W --keep-going -c "$site" -d "$work/doctrees" "$site/rst" "$output"
echo "[docs] done: $output/index.html" >&2
