"""`fedsilo certs issue`: extra hosts are added to the defaults, never swapped for them; the
role is stated, never defaulted."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from fedsilo import settings
from fedsilo.cli.main import main
from fedsilo.crypto.certs import certificate_role, load_certificate


def _sans(cert_path: Path) -> tuple[set[str], set[str]]:
    """(DNS names, IP addresses) of a certificate's subject alternative names."""
    cert = load_certificate(cert_path)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(san.get_values_for_type(x509.DNSName))
    return dns, {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def test_extra_hosts_are_added_to_the_defaults(tmp_path: Path) -> None:
    assert main(["certs", "init", str(tmp_path)]) == 0
    assert (
        main(
            [
                "certs",
                "issue",
                str(tmp_path),
                "bank",
                "--role",
                "silo",
                "--host",
                "bank.example.org",
                "--host",
                "10.0.0.5",
                "--host",
                "localhost",
            ]
        )
        == 0
    )
    dns, ips = _sans(tmp_path / "bank.pem")
    assert dns == {"bank.fedsilo.invalid", "localhost", "bank.example.org"}
    assert ips == {"127.0.0.1", "10.0.0.5"}


def test_without_host_the_defaults_only(tmp_path: Path) -> None:
    assert main(["certs", "init", str(tmp_path)]) == 0
    assert main(["certs", "issue", str(tmp_path), "coordinator", "--role", "coordinator"]) == 0
    dns, ips = _sans(tmp_path / "coordinator.pem")
    assert dns | ips == {"coordinator.fedsilo.invalid", *settings.CERT_DEFAULT_HOSTS}


def test_the_role_is_written_into_the_certificate(tmp_path: Path) -> None:
    assert main(["certs", "init", str(tmp_path)]) == 0
    assert main(["certs", "issue", str(tmp_path), "bank", "--role", "silo"]) == 0
    assert main(["certs", "issue", str(tmp_path), "coordinator", "--role", "coordinator"]) == 0
    assert certificate_role(load_certificate(tmp_path / "bank.pem")) == "silo"
    assert certificate_role(load_certificate(tmp_path / "coordinator.pem")) == "coordinator"


def test_without_role_one_line_and_no_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "init", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["certs", "issue", str(tmp_path), "bank"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--role silo or --role coordinator" in err and "'bank'" in err
    assert not (tmp_path / "bank.pem").exists() and not (tmp_path / "bank.key").exists()


def test_an_unknown_role_is_refused(tmp_path: Path) -> None:
    assert main(["certs", "init", str(tmp_path)]) == 0
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        main(["certs", "issue", str(tmp_path), "bank", "--role", "admin"])
