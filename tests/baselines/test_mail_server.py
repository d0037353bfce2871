"""The embedded mail server itself: access rules, bind address, plain mode, the CLI, clean-up."""

from __future__ import annotations

import argparse
import json
import os
import poplib
import signal
import smtplib
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiosmtpd", reason="the mail server needs aiosmtpd (pip install 'snip[mail]')")

import apps.mail.server as server_module
from apps.cli import CommandError
from apps.mail.server import EmbeddedMailServer, MailServerError, reap_stale_servers

from .conftest import aiter_images, make_images, run

REPO = Path(__file__).resolve().parents[2]


def test_mail_needs_a_login_and_a_local_recipient(mail_server: Any, mail_pair: tuple[str, str]) -> None:
    tx_addr, _rx = mail_pair
    context = ssl.create_default_context(cafile=str(mail_server.ca_file))
    with smtplib.SMTP_SSL(mail_server.host, mail_server.smtps_port, context=context, timeout=5) as smtp:
        smtp.ehlo()
        code, text = smtp.mail(tx_addr)
        assert code == 530, text  # no AUTH yet
        smtp.login(tx_addr, mail_server.accounts[tx_addr].password)
        assert smtp.mail(tx_addr)[0] == 250
        code, text = smtp.rcpt("someone@elsewhere.example")
        assert code == 550 and b"does not relay" in text
    with smtplib.SMTP(mail_server.host, mail_server.smtp_port, timeout=5) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth")  # AUTH is offered only after STARTTLS
        smtp.starttls(context=context)
        smtp.ehlo()
        assert smtp.has_extn("auth")


def test_sending_to_an_unknown_recipient_is_an_outcome_error(mail_server: Any, mail_pair: tuple[str, str]) -> None:
    from apps.transports.email import EmailSender

    tx_addr, _rx = mail_pair

    async def main() -> None:
        tx = EmailSender(mail_server.client_settings(tx_addr), "nobody@elsewhere.example")
        try:
            [outcome] = await tx.send_all(aiter_images(make_images(1)), want_reply=True)
        finally:
            await tx.aclose()
        assert not outcome.delivered and "recipient refused" in (outcome.error or "")

    run(main())


def test_bind_address_plain_mode_and_async_use() -> None:
    if server_module.dovecot_problem() is not None:
        pytest.skip(str(server_module.dovecot_problem()))

    async def main() -> None:
        async with EmbeddedMailServer(host="127.0.0.2", users={"a@x.test": "pw-a"}, require_tls=False) as mail:
            assert mail.host == "127.0.0.2"
            # Plain logins are allowed in this mode, on both protocols.
            with smtplib.SMTP(mail.host, mail.smtp_port, timeout=5) as smtp:
                smtp.login("a@x.test", "pw-a")
                smtp.sendmail("a@x.test", ["a@x.test"], b"From: a@x.test\r\nSubject: hi\r\n\r\nhello\r\n")
            pop = poplib.POP3(mail.host, mail.pop3_port, timeout=5)
            pop.user("a@x.test")
            pop.pass_("pw-a")
            assert pop.stat()[0] == 1
            pop.quit()
            # The certificate names the bind address, so verification passes against it.
            context = ssl.create_default_context(cafile=str(mail.ca_file))
            pops = poplib.POP3_SSL(mail.host, mail.pop3s_port, context=context, timeout=5)
            pops.quit()
            folder = mail.directory
        assert not folder.exists()

    run(main())


def test_missing_dovecot_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.mail import cli

    hint = "Dovecot is not installed; install it with: apt-get install dovecot-core dovecot-pop3d dovecot-lmtpd"
    monkeypatch.setattr(server_module, "dovecot_problem", lambda: hint)
    with pytest.raises(MailServerError, match="apt-get install dovecot-core"):
        EmbeddedMailServer().start()
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["mailserver"])
    with pytest.raises(CommandError, match="apt-get install dovecot-core"):
        args.func(args)


def test_mailserver_command_prints_settings_and_cleans_up_on_sigterm() -> None:
    if server_module.dovecot_problem() is not None:
        pytest.skip(str(server_module.dovecot_problem()))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "apps.cli", "mailserver", "--json", "--user", "cam@snip.test"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        settings = json.loads(line)
        folder = Path(settings["directory"])
        assert set(settings["users"]) == {"cam@snip.test"}
        assert Path(settings["users"]["cam@snip.test"]).stat().st_mode & 0o077 == 0  # password file private
        config = Path(settings["configs"]["cam@snip.test"]).read_text()
        assert "password_file" in config and "password =" not in config
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not folder.exists()


def test_stale_folders_of_dead_runs_are_reaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module.tempfile, "gettempdir", lambda: str(tmp_path))
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(done.stdout)
    stale = tmp_path / "snip-mail-stale"
    stale.mkdir()
    (stale / "owner.pid").write_text(str(dead_pid))
    alive = tmp_path / "snip-mail-alive"
    alive.mkdir()
    (alive / "owner.pid").write_text(str(os.getpid()))
    assert reap_stale_servers() == [stale]
    assert not stale.exists() and alive.exists()
