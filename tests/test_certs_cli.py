"""`fedsilo certs issue --host`: extra hosts are added to the defaults, never swapped for them."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from fedsilo import settings
from fedsilo.cli.main import main
from fedsilo.crypto.certs import load_certificate


def _sans(cert_path: Path) -> tuple[set[str], set[str]]:
    """(DNS names, IP addresses) of a certificate's subject alternative names."""
    cert = load_certificate(cert_path)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(san.get_values_for_type(x509.DNSName))
    return dns, {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def test_extra_hosts_are_added_to_the_defaults(tmp_path: Path) -> None:
    assert main(["certs", "init", str(tmp_path)]) == 0
    assert main(["certs", "issue", str(tmp_path), "bank", "--host", "bank.example.org",
                 "--host", "10.0.0.5", "--host", "localhost"]) == 0
    dns, ips = _sans(tmp_path / "bank.pem")
    assert dns == {"bank.fedsilo.invalid", "localhost", "bank.example.org"}
    assert ips == {"127.0.0.1", "10.0.0.5"}


def test_without_host_the_defaults_only(tmp_path: Path) -> None:
    assert main(["certs", "init", str(tmp_path)]) == 0
    assert main(["certs", "issue", str(tmp_path), "coordinator"]) == 0
    dns, ips = _sans(tmp_path / "coordinator.pem")
    assert dns | ips == {"coordinator.fedsilo.invalid", *settings.CERT_DEFAULT_HOSTS}
