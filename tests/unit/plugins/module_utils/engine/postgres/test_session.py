# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_session.py: the pure helpers (LSN, WAL names, connection arguments) and the refusal of a
connection that cannot be made. Tests against a live server are in the integration suite.
"""

from __future__ import annotations

import psycopg2.extensions
import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.postgres import session as pg_session
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import PostgresConfig
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import MissingDependencyError, PostgresError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.postgres.session import (
    APPLICATION_NAME,
    connection_arguments,
    parse_lsn,
    wal_file_name,
)

MIB16 = 16 << 20
GIB = 1 << 30


@pytest.mark.parametrize("text, value", [
    ("0/0", 0),
    ("0/2000028", 0x2000028),
    ("0/2000138", 0x2000138),
    ("1/0", 1 << 32),
    ("16/B374D848", (0x16 << 32) + 0xB374D848),
    ("ffffffff/ffffffff", (1 << 64) - 1),
])
def test_parse_lsn(text, value):
    assert parse_lsn(text) == value


@pytest.mark.parametrize("timeline, lsn, segment_size, name", [
    # The reference example: begin 0/2000028 and end 0/2000138 on timeline 1 are both in segment 2.
    (1, "0/2000028", MIB16, "000000010000000000000002"),
    (1, "0/2000138", MIB16, "000000010000000000000002"),
    (1, "0/0", MIB16, "000000010000000000000000"),
    (1, "0/FFFFFFFF", MIB16, "0000000100000000000000FF"),
    (1, "1/0", MIB16, "000000010000000100000000"),
    (2, "16/B374D848", MIB16, "0000000200000016000000B3"),
    (0x1F, "A/3000000", MIB16, "0000001F0000000A00000003"),
    # 1 GiB segments: four per 4 GiB "log", numbered 0 to 3.
    (1, "0/40000028", GIB, "000000010000000000000001"),
    (1, "1/C0000000", GIB, "000000010000000100000003"),
    (3, "2/7FFFFFFF", GIB, "000000030000000200000001"),
    # 64 MiB segments
    (1, "0/FC000000", 64 << 20, "00000001000000000000003F"),
])
def test_wal_file_name(timeline, lsn, segment_size, name):
    assert wal_file_name(timeline, parse_lsn(lsn), segment_size) == name


def test_wal_offset_of_the_reference_example():
    # begin_offset=40 and end_offset=312 in the reference backup.info
    assert parse_lsn("0/2000028") % MIB16 == 40
    assert parse_lsn("0/2000138") % MIB16 == 312


# --- connection arguments ------------------------------------------------------------------------


def test_default_connection_arguments():
    assert connection_arguments(PostgresConfig()) == {"dbname": "postgres", "application_name": APPLICATION_NAME}
    assert APPLICATION_NAME == "pgcloud_backup"


def test_host_port_user_and_password_are_passed():
    config = PostgresConfig(host="/var/run/postgresql", port=5433, user="backup", dbname="app", password="s3cret 'x'")
    assert connection_arguments(config) == {
        "dbname": "app", "host": "/var/run/postgresql", "port": 5433, "user": "backup", "password": "s3cret 'x'",
        "application_name": APPLICATION_NAME,
    }


def test_empty_values_are_not_passed():
    assert connection_arguments(PostgresConfig(host="", user="", password="")) == {
        "dbname": "postgres", "application_name": APPLICATION_NAME}


@pytest.mark.parametrize("dbname", ["host=db1 port=5432 dbname=app", "dbname=app sslmode=require", ""])
def test_dbname_with_equals_or_empty_is_a_whole_conninfo(dbname):
    arguments = connection_arguments(PostgresConfig(dbname=dbname, user="backup"))
    assert arguments == {"dsn": dbname, "user": "backup", "application_name": APPLICATION_NAME}


def test_application_name_of_the_conninfo_is_kept():
    dsn = "host=db1 application_name=nightly"
    assert connection_arguments(PostgresConfig(dbname=dsn)) == {"dsn": dsn}


def test_arguments_make_the_conninfo_psycopg2_sends():
    config = PostgresConfig(host="db1", port=5432, user="backup", dbname="host=db2 dbname=app", password="pa ss'word")
    conninfo = psycopg2.extensions.parse_dsn(psycopg2.extensions.make_dsn(**connection_arguments(config)))
    # keyword arguments override the same keys of the conninfo, as psycopg2.connect does
    assert conninfo == {"host": "db1", "dbname": "app", "port": "5432", "user": "backup", "password": "pa ss'word",
                        "application_name": "pgcloud_backup"}


# --- refusals before any query -------------------------------------------------------------------


def test_connection_failure_is_a_postgres_error_saying_what_to_check(closed_port):
    with pytest.raises(PostgresError) as caught:
        pg_session.PostgresSession(PostgresConfig(host="127.0.0.1", port=closed_port, user="nobody", password="Secr3tPw"))
    message = str(caught.value)
    assert message.startswith("cannot connect to PostgreSQL: ")
    assert "check host, port, user, password and dbname" in message
    assert "\n" not in message
    assert "Secr3tPw" not in message


def test_missing_psycopg2_is_reported(monkeypatch):
    monkeypatch.setattr(pg_session, "psycopg2", None)
    with pytest.raises(MissingDependencyError) as caught:
        pg_session.PostgresSession(PostgresConfig())
    assert caught.value.library == "psycopg2"
    assert "pip install psycopg2" in str(caught.value)


def test_minimum_server_version_is_13():
    assert pg_session.MIN_SERVER_VERSION == 130000


def test_unreachable_primary_names_primary_conninfo(closed_port):
    conninfo = "host=127.0.0.1 port=%d user=nobody password=Secr3tPw" % closed_port
    with pytest.raises(PostgresError) as caught:
        pg_session.switch_primary_wal(conninfo)
    message = str(caught.value)
    assert message.startswith("cannot connect to the primary with primary_conninfo: ")
    assert "\n" not in message and "Secr3tPw" not in message


# --- a server newer than the tested majors -----------------------------------------------------------


class AnsweringCursor:
    """A cursor that answers facts()'s queries as a server of any version would."""

    ANSWERS = (
        ("FROM pg_settings WHERE name IN", [
            ("data_directory", "/srv/pgdata"), ("wal_segment_size", "16777216"),
            ("config_file", "/srv/pgdata/postgresql.conf"), ("archive_mode", "on")]),
        ("sourcefile", []),
        ("pg_tablespace_location(oid) <>", []),
        ("rolsuper", [(True,)]),
        ("system_identifier", [(7711931547866333808,)]),
        ("pg_is_in_recovery", [(False,)]),
        ("pg_tablespace_size", [(123456,)]),
        ("current_user", [("postgres",)]),
    )

    def __init__(self):
        self.rows = []
        self.description = None

    def execute(self, sql, parameters=()):
        self.rows = next(rows for fragment, rows in self.ANSWERS if fragment in sql)
        self.description = [("column",)]

    def fetchall(self):
        return self.rows

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


class AnsweringConnection:
    def __init__(self, server_version):
        self.server_version = server_version
        self.autocommit = False

    def cursor(self):
        return AnsweringCursor()

    def close(self):
        pass


def facts_of(monkeypatch, server_version):
    monkeypatch.setattr(pg_session.psycopg2, "connect", lambda **arguments: AnsweringConnection(server_version))
    session = pg_session.PostgresSession(PostgresConfig())
    try:
        return session.facts()
    finally:
        session.close()


@pytest.mark.parametrize("server_version", [130000, 150018, 170006, 180001, 189999])
def test_tested_majors_have_no_warning(monkeypatch, server_version):
    facts = facts_of(monkeypatch, server_version)
    assert facts.version == server_version
    assert facts.warnings == []


def test_stats_temp_directory_is_read_where_the_server_has_it(monkeypatch):
    settings = [("data_directory", "/srv/pgdata"), ("wal_segment_size", "16777216"), ("stats_temp_directory", "pg_stat_tmp")]
    monkeypatch.setattr(AnsweringCursor, "ANSWERS", (("FROM pg_settings WHERE name IN", settings),) + AnsweringCursor.ANSWERS[1:])
    assert facts_of(monkeypatch, 140010).stats_temp_directory == "pg_stat_tmp"
    monkeypatch.undo()
    assert facts_of(monkeypatch, 150010).stats_temp_directory is None  # the setting is gone in 15


@pytest.mark.parametrize("server_version, major", [(190000, 19), (190004, 19), (200001, 20)])
def test_a_major_above_the_tested_ones_is_warned_of(monkeypatch, server_version, major):
    facts = facts_of(monkeypatch, server_version)
    [warning] = facts.warnings
    assert warning.startswith("PostgreSQL %d is newer than the newest major pgcloud.backup is tested with (18)" % major)
    assert "untested" in warning and "restore one" in warning
    assert pg_session.NEWEST_TESTED_MAJOR == 18


class FailingConnection(AnsweringConnection):
    """A connection whose first query matching `fragment` fails; `drops` says whether the server
    went away with it (psycopg2 then marks the connection closed) or only refused the query."""

    def __init__(self, server_version, fragment, drops=True):
        super().__init__(server_version)
        self.closed = 0
        self.fragment = fragment
        self.drops = drops

    def cursor(self):
        connection = self

        class FailingCursor(AnsweringCursor):
            def execute(self, sql, parameters=()):
                if connection.fragment in sql:
                    connection.closed = 2 if connection.drops else 0
                    raise pg_session.psycopg2.OperationalError("server closed the connection unexpectedly")
                self.rows = [("0/2000028", 1, "2026-12-05")]
                self.description = [("column",)]

        return FailingCursor()


def session_on(monkeypatch, connection):
    monkeypatch.setattr(pg_session.psycopg2, "connect", lambda **arguments: connection)
    return pg_session.PostgresSession(PostgresConfig())


@pytest.mark.parametrize("fragment", ["pg_backup_start", "SET statement_timeout"])
def test_a_session_lost_in_any_query_is_reported_as_lost(monkeypatch, fragment):
    session = session_on(monkeypatch, FailingConnection(170000, fragment))
    with pytest.raises(PostgresError) as caught:
        session.start_backup("label", fast=True)
    session.close()
    assert str(caught.value).startswith("the PostgreSQL session was lost (server closed the connection")
    assert "check the server's log" in str(caught.value)


def test_a_lost_session_during_the_backup_says_the_backup_cannot_complete(monkeypatch):
    session = session_on(monkeypatch, FailingConnection(170000, "pg_backup_stop"))
    session.start_backup("label", fast=True)
    with pytest.raises(PostgresError) as caught:
        session.stop_backup()
    session.close()
    assert "session was lost" in str(caught.value) and "cannot complete" in str(caught.value)


def test_a_refusal_on_a_live_session_names_the_query(monkeypatch):
    session = session_on(monkeypatch, FailingConnection(170000, "pg_backup_start", drops=False))
    with pytest.raises(PostgresError) as caught:
        session.start_backup("label", fast=True)
    session.close()
    assert str(caught.value).startswith("PostgreSQL refused SELECT lsn::text")
