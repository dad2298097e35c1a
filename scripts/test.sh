#!/usr/bin/env bash
# Every test of the collection, on a fresh machine too: set-up, ansible-test sanity and
# units, the collection tarball, and the integration tests (real PostgreSQL 15, moto S3 on
# loopback, barman-cloud-restore as the judge). Exits non-zero if any step fails.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here" || exit 1
"$here/scripts/setup.sh" || exit 1
# shellcheck source=/dev/null
source "${PGCLOUD_PREFIX:-/opt/pgcloud-backup}/env.sh"

failed=()
step() {
    local name=$1
    shift
    printf '\n===== %s =====\n' "$name"
    local started=$SECONDS
    if "$@"; then
        printf '===== %s: passed in %ds =====\n' "$name" $((SECONDS - started))
    else
        printf '===== %s: FAILED in %ds =====\n' "$name" $((SECONDS - started))
        failed+=("$name")
    fi
}

# The integration tests run the collection as built and installed from its tarball, which
# proves the tarball works; tests/output and the like must not be in it. --force: without it
# ansible-galaxy installs nothing when the collection is found on ANSIBLE_COLLECTIONS_PATH.
installed=$(mktemp -d)
# The WAL tests run the installed engine as the postgres OS user, which must traverse this folder.
chmod 755 "$installed"
trap 'rm -rf "$installed"' EXIT
build_and_install() {
    ansible-galaxy collection build --output-path "$installed" . >/dev/null &&
        ansible-galaxy collection install --force -p "$installed/collections" "$installed"/pgcloud-backup-*.tar.gz >/dev/null &&
        [ -f "$installed/collections/ansible_collections/pgcloud/backup/plugins/modules/base_backup.py" ] &&
        ANSIBLE_COLLECTIONS_PATH="$installed/collections" ansible-doc pgcloud.backup.base_backup >/dev/null &&
        ANSIBLE_COLLECTIONS_PATH="$installed/collections" ansible-galaxy collection verify --offline pgcloud.backup >/dev/null &&
        installed_module_runs &&
        ! tar tzf "$installed"/pgcloud-backup-*.tar.gz |
            grep -E '(^|/)(tests/output|\.pytest_cache|__pycache__|benchmarks|docs/build|\.ansible)/|\.plugin-cache\.yaml$'
}

# A module of the installed collection, run with nothing else on the collections path: its
# module_utils come from the install. The store is a closed port, so the answer is the
# module's own message for an unreachable store, and nothing is written anywhere.
installed_module_runs() {
    local result
    result=$(ANSIBLE_COLLECTIONS_PATH="$installed/collections" AWS_ACCESS_KEY_ID=none AWS_SECRET_ACCESS_KEY=none \
        ansible localhost -m pgcloud.backup.check \
        -a 'destination_url=s3://pgcloud-none/x server_name=x endpoint_url=http://127.0.0.1:9 check_postgres=false' 2>&1)
    grep -q 'cannot reach S3 to check bucket pgcloud-none' <<<"$result" || { echo "$result" >&2; return 1; }
}

# The build context of an execution environment (AWX, Automation Platform) holding the
# collection from its tarball, as ansible-builder create writes it (no container runtime
# needed). The image build installs the tarball, then reads the collection's dependencies
# with the context's own introspect.py; that script, run here on the installed collection,
# must find every line of requirements.txt and bindep.txt, through meta/execution-environment.yml.
execution_environment() {
    local ee=$installed/ee tarball
    tarball=$(cd "$installed" && echo pgcloud-backup-*.tar.gz)
    [ -f "$installed/$tarball" ] || { echo "no collection tarball: the build step failed" >&2; return 1; }
    mkdir -p "$ee" && cp "$installed/$tarball" "$ee/" || return 1
    cat > "$ee/execution-environment.yml" <<EOF
---
version: 3
images:
  base_image:
    name: quay.io/ansible/awx-ee:latest
dependencies:
  galaxy:
    collections:
      - name: collections/$tarball
        type: file
additional_build_files:
  - src: $tarball
    dest: collections
EOF
    (cd "$ee" && ansible-builder create -f execution-environment.yml -c context --output-filename Containerfile >/dev/null) &&
        grep -q 'ansible-galaxy collection install .*-r requirements.yml' "$ee/context/Containerfile" &&
        grep -q 'introspect.py introspect' "$ee/context/Containerfile" &&
        grep -q "name: collections/$tarball" "$ee/context/_build/requirements.yml" &&
        [ "$(tar tzf "$ee/context/_build/collections/$tarball" | grep -cxE 'meta/execution-environment.yml|requirements.txt|bindep.txt')" = 3 ] &&
        python "$ee/context/_build/scripts/introspect.py" introspect --write-pip "$ee/pip.txt" \
            --write-bindep "$ee/bindep.txt" "$installed/collections" >/dev/null &&
        diff <(grep -vE '^(#|$)' requirements.txt) <(sed 's/  # from collection pgcloud.backup$//' "$ee/pip.txt") &&
        diff <(grep -vE '^(#|$)' bindep.txt) <(sed 's/  # from collection pgcloud.backup$//' "$ee/bindep.txt")
}

# Two workers (pytest-xdist), each with its own source cluster and stores: the tests spend
# much of their time waiting on servers, and two of them at a time halve the wall time. Then
# the tests marked `alone` (a measure of speed under load of their own), with nothing beside them.
integration_tests() {
    PGCLOUD_COLLECTION_ROOT="$installed/collections/ansible_collections/pgcloud/backup" \
        python -m pytest tests/integration -v -p no:cacheprovider --durations=10 -n "${PGCLOUD_TEST_WORKERS:-2}" \
        -m "not alone" &&
        PGCLOUD_COLLECTION_ROOT="$installed/collections/ansible_collections/pgcloud/backup" \
            python -m pytest tests/integration -v -p no:cacheprovider -m alone
}

# Managed hosts may run Python 3.9 (tests/config.yml): the plugins must compile and the engine
# must import there, its optional SDKs absent.
python39_check() {
    local candidates=("$HOME"/.pyenv/versions/3.9.*/bin/python3.9)
    local python39=${PGCLOUD_PYTHON39:-${candidates[-1]}}
    [ -x "$python39" ] || { echo "no Python 3.9 found: set PGCLOUD_PYTHON39" >&2; return 1; }
    "$python39" -m compileall -q plugins &&
        PYTHONPATH="$PGCLOUD_PREFIX/collections" "$python39" -c "
import importlib, pkgutil, sys
from ansible_collections.pgcloud.backup.plugins.module_utils import engine
for module in pkgutil.walk_packages(engine.__path__, engine.__name__ + '.'):
    importlib.import_module(module.name)
print('engine imports on', sys.version.split()[0])"
}

# Everything ansible-lint knows how to read, with the production profile (.ansible-lint): the
# role, the playbooks (the collection's and the tests'), the modules' EXAMPLES, galaxy.yml,
# meta/ (runtime, execution environment), the changelog and the docs site's YAML. The
# collection is found through a scratch collections path that holds this checkout, so that
# the lint sees this tree whatever setup.sh linked last.
ansible_lint() {
    local collections
    collections=$(mktemp -d) || return 1
    mkdir -p "$collections/ansible_collections/pgcloud" &&
        ln -s "$here" "$collections/ansible_collections/pgcloud/backup" &&
        ANSIBLE_COLLECTIONS_PATH="$collections" ansible-lint --offline
    local status=$?
    rm -rf "$collections"
    return $status
}

# The documentation site, as scripts/docs.sh builds it for users: a warning of the docs lint or
# of Sphinx fails the step.
docs_site() {
    scripts/docs.sh --no-setup "$installed/docs-html" &&
        [ -f "$installed/docs-html/collections/pgcloud/backup/docsite/guide_troubleshooting.html" ] &&
        [ -f "$installed/docs-html/collections/pgcloud/backup/scheduled_backup_role.html" ]
}

# The changelog fragments, and the release notes they make for the version of galaxy.yml:
# antsibull-changelog release runs on a scratch copy, as it consumes the fragments. Every
# release has a summary.
changelog() {
    local copy version status
    version=$(sed -n 's/^version: *//p' galaxy.yml)
    copy=$(mktemp -d) || return 1
    antsibull-changelog lint &&
        antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml &&
        cp -a changelogs galaxy.yml plugins roles meta "$copy/" &&
        (cd "$copy" && antsibull-changelog release --version "$version" >/dev/null) &&
        grep -qx "v$version" "$copy/CHANGELOG.rst" &&
        grep -qx 'Release Summary' "$copy/CHANGELOG.rst"
    status=$?
    rm -rf "$copy"
    return $status
}

# ansible-core 2.16, the oldest meta/runtime.yml declares, from its own venv (scripts/setup.sh):
# the docs of every module and of the role render with ansible-doc, with nothing on stderr
# (ansible-doc warns there when the collection says it does not support the release), and
# every playbook of the collection parses. The playbooks run on 2.16 in the integration tests
# (test_host_pythons.py: check, backup, and a restore of that backup by barman-cloud-restore).
# ansible-test sanity of 2.16 runs too (oldest_sanity).
oldest_ansible() {
    local bin=${PGCLOUD_PREFIX:-/opt/pgcloud-backup}/venv-2.16/bin collections module status=0
    "$bin/ansible-doc" --version | grep -q '^ansible-doc \[core 2\.16\.' || { echo "no ansible-core 2.16 in $bin" >&2; return 1; }
    collections=$(mktemp -d) || return 1
    mkdir -p "$collections/ansible_collections/pgcloud" &&
        ln -s "$here" "$collections/ansible_collections/pgcloud/backup" || return 1
    for module in plugins/modules/*.py; do
        module=$(basename "$module" .py)
        silent_on "$collections" "$bin/ansible-doc" "pgcloud.backup.$module" || status=1
    done
    silent_on "$collections" "$bin/ansible-doc" -t role pgcloud.backup.scheduled_backup || status=1
    for playbook in playbooks/*.yml; do
        silent_on "$collections" "$bin/ansible-playbook" --syntax-check -i localhost, "$playbook" || status=1
    done
    rm -rf "$collections"
    return $status
}

# ansible-test sanity of ansible-core 2.16 on a copy of this tree (scripts/ansible-test.sh
# runs the newest's): the tests that read what 2.16 reads differently, the documentation
# schema (validate-modules), meta/runtime.yml, and the imports and compilation on its
# Pythons. Style (pep8, pylint) is the newest release's to judge, in its own sanity step.
oldest_sanity() {
    local bin=${PGCLOUD_PREFIX:-/opt/pgcloud-backup}/venv-2.16/bin
    local collection=${TMPDIR:-/tmp}/pgcloud-ansible-test-2.16/ansible_collections/pgcloud/backup
    mkdir -p "$collection" &&
        rsync -a --delete --exclude=/.git/ --exclude=/tests/output/ --exclude=__pycache__/ \
            --exclude=.pytest_cache/ "$here/" "$collection/" &&
        (cd "$collection" && PATH="$bin:$PATH" "$bin/ansible-test" sanity --venv --python 3.12 \
            --test validate-modules --test runtime-metadata --test import --test compile)
}

# Run a command with that collections path: it must succeed and write nothing to stderr.
silent_on() {
    local collections=$1 errors
    shift
    errors=$(ANSIBLE_COLLECTIONS_PATH="$collections" "$@" 2>&1 >/dev/null) && [ -z "$errors" ] && return 0
    printf '%s:\n%s\n' "$*" "${errors:-(exit status $?)}" >&2
    return 1
}

step "plugins on Python 3.9" python39_check
step "ansible-test sanity" scripts/ansible-test.sh sanity --venv --python 3.12
step "ruff and mypy" scripts/lint.sh
step "ansible-lint" ansible_lint
step "ansible-test units" scripts/ansible-test.sh units --venv --python 3.12
step "changelog" changelog
step "documentation site" docs_site
step "collection build and install" build_and_install
step "execution environment context" execution_environment
step "integration tests" integration_tests
step "ansible-core 2.16" oldest_ansible
step "ansible-test sanity of ansible-core 2.16" oldest_sanity

if [ ${#failed[@]} -gt 0 ]; then
    printf '\nFAILED: %s\n' "${failed[@]}"
    exit 1
fi
printf '\nall tests passed\n'
