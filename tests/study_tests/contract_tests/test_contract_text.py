"""The text helpers both command lines and the study service print through
(study.contract.text): credentials redacted, messages on one line."""

from __future__ import annotations

import pytest

from study.contract.text import one_line, redact_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "postgresql+psycopg://mistudy:s3cret@db.example:5432/optuna",
            "postgresql+psycopg://mistudy:***@db.example:5432/optuna",
        ),
        ("http://ml:pw@host:5000/api", "http://ml:***@host:5000/api"),
        ("mysql://u:p%40ss@h/db", "mysql://u:***@h/db"),  # an escaped '@' inside the password
        ("https://:token@host/x", "https://:***@host/x"),  # a password without a user
    ],
)
def test_redact_url_hides_the_password_and_keeps_the_user_and_host(text, expected):
    assert redact_url(text) == expected


def test_redact_url_redacts_every_url_of_a_text():
    text = (
        "cannot reach http://a:first@h1:5000/api, falling back to "
        "postgresql://b:second@h2/db (user b)"
    )
    out = redact_url(text)
    assert "first" not in out and "second" not in out
    assert out == (
        "cannot reach http://a:***@h1:5000/api, falling back to postgresql://b:***@h2/db (user b)"
    )


@pytest.mark.parametrize(
    "text",
    [
        "sqlite:////abs/path/optuna.db",
        "http://user@host:5000",  # a user without a password
        "http://127.0.0.1:5000/#/experiments/1",  # a port is not a password
        "key 'storage': the folder of the SQLite file /tmp/x/optuna.db does not exist",
    ],
)
def test_redact_url_leaves_text_without_a_password_unchanged(text):
    assert redact_url(text) == text


def test_redact_url_accepts_any_object():
    assert redact_url(RuntimeError("http://u:pw@h/x")) == "http://u:***@h/x"


def test_one_line_collapses_every_run_of_whitespace():
    assert one_line("  first line\n\tsecond   line\r\n\nthird ") == "first line second line third"


def test_one_line_caps_the_length_and_marks_the_cut():
    assert one_line("x" * 2000) == "x" * 2000  # at the limit: untouched
    assert one_line("x" * 2001) == "x" * 2000 + " ..."
    assert one_line("abc def", limit=3) == "abc ..."
    assert one_line("a\n\n b", limit=3) == "a b"  # collapsed first, then measured
