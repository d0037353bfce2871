"""The embedded mail server of the email baseline: aiosmtpd for submission, Dovecot for POP3.

See ``apps.mail.server.EmbeddedMailServer`` (tests, benchmarks), ``snip mailserver``
(``apps.mail.cli``) and README.md in this folder for real providers' settings.
"""
