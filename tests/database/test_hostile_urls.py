"""A database password is never printed: not in parse errors, not as a 'host' when it holds an
unencoded '@', not by the command line's error (issue 17.4)."""
from __future__ import annotations

import pytest

from app.cli import main as cli_main
from database import DatabaseError, open_database

SECRET = "Sup3rSecret"
LEAKY = [
    f"postgresql+psycopg://inspector:{SECRET}@dbhost:notaport/station",  # does not parse
    f"postgresql+psycopg://inspector:{SECRET}@@dbhost/station",
    f"postgresql+psycopg://inspector:pa@{SECRET}@127.0.0.1:1/station",  # unencoded '@': tail would be the host
    f"postgresql+psycopg://inspector:p/a@{SECRET}@127.0.0.1:1/station",
    f"postgres ql://inspector:{SECRET}@dbhost/station",
    f"inspector:{SECRET}@dbhost/station",  # no scheme at all
    f"postgresql+psycopg://inspector@127.0.0.1:1/station?password={SECRET}&sslmode=disable",
]


@pytest.mark.parametrize("url", LEAKY)
def test_no_error_shows_the_password(url: str) -> None:
    with pytest.raises(DatabaseError) as exc:
        open_database(url, connect_timeout_s=1)
    text = str(exc.value)
    assert SECRET not in text and SECRET[:5] not in text
    assert "\n" not in text


@pytest.mark.parametrize("url", LEAKY[:3])
def test_the_command_line_error_shows_no_password(url: str, capsys) -> None:
    assert cli_main(["--db", url, "db", "current"]) == 2
    out, err = capsys.readouterr()
    assert SECRET not in out + err and "Traceback" not in err and err.startswith("error: ")


def test_an_unencoded_at_sign_is_explained() -> None:
    with pytest.raises(DatabaseError, match="has an '@' in its user name or password: write it as %40"):
        open_database(f"postgresql+psycopg://inspector:pa@{SECRET}@dbhost/station")


@pytest.mark.parametrize("url, shown", [
    ("postgresql+psycopg://u:pw@h/db", "postgresql+psycopg://u:***@h/db"),
    ("postgresql+psycopg://u:p@w@h/db", "postgresql+psycopg://u:***@h/db"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgresql+psycopg://u@h/db?password=pw&x=1", "postgresql+psycopg://u@h/db?password=***&x=1"),
    ("sqlite:////data/a@b.sqlite", "sqlite:////data/a@b.sqlite"),
])
def test_mask_url(url: str, shown: str) -> None:
    from database.errors import mask_url

    assert mask_url(url) == shown


def test_a_password_from_a_pgpass_file_opens_postgres(pg_url: str, tmp_path, monkeypatch) -> None:
    """The documented way: the URL without its password, the password in a PGPASSFILE."""
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    if not url.password:
        pytest.skip("the test server takes no password")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:{url.username}:{url.password}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    bare = url.set(password=None).render_as_string(hide_password=False)
    assert str(url.password) not in bare
    open_database(bare).close()


def test_a_server_url_without_a_database_name_says_so(capsys) -> None:
    """A session-51 audit: ``--db postgresql+psycopg://inspector@127.0.0.1:1`` (no database name) said "cannot reach
    the database 'None' on 127.0.0.1:1". It says the URL names no database."""
    assert cli_main(["--db", "postgresql+psycopg://inspector@127.0.0.1:1", "db", "current"]) == 2
    err = capsys.readouterr().err
    assert "'None'" not in err and "the server 127.0.0.1:1 (the URL names no database" in err


def test_a_url_without_a_database_name_names_the_database_the_server_was_asked_for(pg_url: str) -> None:
    """A session-51 review: with no database name libpq asks for one named after the user, and where that does not
    exist the sentence made the server its subject: "the server 127.0.0.1:55432 (the URL names no database: …) does
    not exist on that server". It names the database asked for and why, and is no "cannot reach"."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import URL, make_url

    from database.errors import UnreachableError

    role = f"line_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        server = make_url(pg_url)
        url = URL.create(server.drivername, username=role, host=server.host, port=server.port)
        with pytest.raises(DatabaseError) as exc:
            open_database(url.render_as_string(hide_password=False), connect_timeout_s=5)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()
    host = f"{url.host}:{url.port}" if url.port else url.host
    if "password" in str(exc.value):
        pytest.skip("the test server asks the new role for a password")
    assert not isinstance(exc.value, UnreachableError)
    assert str(exc.value) == (f"the database '{role}' on {host} (the URL names no database, so the server was asked "
                              "for one named after the user: add /NAME after the host) does not exist on that "
                              "server; create it first.")


def test_the_database_asked_for_is_the_users_where_the_driver_does_not_say() -> None:
    """A session-51 review (as above, without a server): the driver's error names no database it asked for; the
    sentence's subject is the database named after the URL's user."""
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.engine import make_url

    from database.errors import translate

    orig = Exception('connection to server at "h", port 5432 failed: FATAL:  database "inspector" does not exist')
    found = translate(sa_exc.OperationalError("connect", {}, orig), make_url("postgresql+psycopg://inspector@h:5432"))
    assert str(found).startswith("the database 'inspector' on h:5432 (the URL names no database, so the server was "
                                 "asked for one named after the user")


def test_the_db_help_keeps_the_password_out_of_its_example(capsys) -> None:
    """The ``--db`` help showed ``postgresql+psycopg://user:pass@host/db``, the very thing README and docs/database.md
    say not to do (a session-51 audit); it now shows a URL without one and where the password goes."""
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "user:pass@" not in shown
    assert "postgresql+psycopg://user@host/db" in shown and "~/.pgpass" in shown and "PGPASSWORD" in shown
