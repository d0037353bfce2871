"""A throw-away certificate authority and server certificate for the embedded mail server.

Made with the openssl command-line tool (always present where Dovecot is). Clients trust the
server by loading ``ca.pem`` into their own SSL context; nothing disables verification.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


class CertificateError(RuntimeError):
    """The certificate could not be made (openssl missing or failing)."""


@dataclass(frozen=True)
class ServerCertificate:
    ca_file: Path  # what clients trust
    cert_file: Path  # server certificate followed by nothing else (the CA is the trust anchor)
    key_file: Path


def _subject_alt_names(names: list[str]) -> str:
    entries: list[str] = []
    for name in dict.fromkeys(names):  # de-duplicate, keep order
        try:
            ipaddress.ip_address(name)
        except ValueError:
            entries.append(f"DNS:{name}")
        else:
            entries.append(f"IP:{name}")
    return ",".join(entries)


def _openssl(*args: str) -> None:
    try:
        subprocess.run(["openssl", *args], check=True, capture_output=True, text=True, timeout=30)
    except subprocess.CalledProcessError as exc:
        raise CertificateError(f"openssl {args[0]} failed: {exc.stderr.strip()}") from None


def make_certificate(directory: Path, names: list[str], *, days: int = 30) -> ServerCertificate:
    """A CA and a server certificate for ``names`` (host names and IP addresses) in ``directory``."""
    if shutil.which("openssl") is None:
        raise CertificateError("the openssl command is needed to make certificates: apt-get install openssl")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_cert), "-days", str(days),
        "-subj", "/CN=snip embedded mail server CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )
    _openssl("req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={names[0]}")
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={_subject_alt_names(names)}\n"
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", str(days), "-extfile", str(ext),
    )
    ca_key.unlink()  # nothing else will ever be signed with it
    csr.unlink()
    return ServerCertificate(ca_file=ca_cert, cert_file=cert, key_file=key)
