# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the PostgreSQL connection options."""

from __future__ import annotations


class ModuleDocFragment(object):

    # postgres_argument_spec()
    DOCUMENTATION = r"""
options:
  host:
    description:
      - The host name of the PostgreSQL server, or the directory of its Unix socket
        (for example V(/var/run/postgresql)).
      - When unset, libpq decides, from E(PGHOST) or its built-in default (the local socket).
      - The backup reads the data directory from the file system, so the server must run on
        the managed host; connect through its local socket or a local address.
      - Equivalent to C(-h/--host) of C(barman-cloud-backup).
    type: str
    aliases: [login_host]
  port:
    description:
      - The port of the PostgreSQL server (also the suffix of its Unix socket file).
      - When unset, libpq decides, from E(PGPORT) or its built-in default (5432).
      - Equivalent to C(-p/--port) of C(barman-cloud-backup).
    type: int
    aliases: [login_port]
  user:
    description:
      - The PostgreSQL role to connect as. It must be a superuser or have been granted
        EXECUTE on C(pg_backup_start) and C(pg_backup_stop).
      - When unset, libpq decides, from E(PGUSER) or the name of the OS user the module runs as.
      - Equivalent to C(-U/--user) of C(barman-cloud-backup).
    type: str
    aliases: [login_user]
  dbname:
    description:
      - The database to connect to, or a whole libpq connection string
        (V(host=/var/run/postgresql port=5433 dbname=postgres)) whose settings then apply.
      - Give the password in O(password) rather than in the connection string; O(password)
        is never logged nor returned, unlike this option.
      - Equivalent to C(-d/--dbname) of C(barman-cloud-backup).
    type: str
    default: postgres
    aliases: [login_db]
  password:
    description:
      - The password of O(user).
      - When unset, libpq reads E(PGPASSWORD) or the C(.pgpass) file of the OS user, as
        C(barman-cloud-backup) does, which has no such option.
    type: str
    aliases: [login_password]
requirements:
  - psycopg2 (or psycopg2-binary)
"""
