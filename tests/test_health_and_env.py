"""`fedsilo health` over mTLS (a silo checked with its own certificate, the coordinator, a silo
through the coordinator's config), and ``${VAR}`` in silo and coordinator configs."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from bundled_data import data_file
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import Consortium, SiloSpec, free_port

from fedsilo.cli.main import main
from fedsilo.coordinator.config import load_coordinator_config
from fedsilo.coordinator.server import serve_coordinator
from fedsilo.crypto import tls
from fedsilo.envsubst import expand_env
from fedsilo.errors import ConfigError
from fedsilo.protos import fedsilo_pb2 as pb
from fedsilo.protos import fedsilo_pb2_grpc as pb_grpc
from fedsilo.silo_node.config import load_silo_config

GUEST = [f"x{i}" for i in range(10)]


def _one_line(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    got = capsys.readouterr()
    assert len(got.err.strip().splitlines()) <= 1, got.err
    return got.out.strip(), got.err.strip()


@pytest.mark.e2e
def test_health_of_a_silo_and_the_coordinator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = Consortium(tmp_path, tls=True)
    for party in ("bank", "bureau"):
        c.add_silo(SiloSpec(party, data_file("breast_hetero_guest"), GUEST, label="y"))
    c.start_all()
    try:
        bank = c.configs["bank"]
        assert main(["health", "--config", str(bank)]) == 0
        out, err = _one_line(capsys)
        assert out == f"bank at {c.nodes['bank'].address}: SERVING" and not err
        coord = c.coordinator_config().path
        assert main(["health", "--config", str(coord), "--silo", "bureau"]) == 0
        assert _one_line(capsys)[0].endswith(": SERVING")
        # the silo's own certificate reaches its health check only, another silo's not even that
        folder = tmp_path / "certs"
        for party, method in (("bureau", "health"), ("bank", "describe")):
            creds = tls.channel_credentials(
                ca=folder / "ca.pem", cert=folder / f"{party}.pem", key=folder / f"{party}.key"
            )
            with grpc.secure_channel(
                c.nodes["bank"].address, creds, options=tls.identity_options("bank")
            ) as channel:
                with pytest.raises(grpc.RpcError) as refused:
                    if method == "health":
                        health_pb2_grpc.HealthStub(channel).Check(
                            health_pb2.HealthCheckRequest(), timeout=10
                        )
                    else:
                        pb_grpc.SiloServiceStub(channel).Describe(pb.DescribeRequest(), timeout=10)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, party
        # each refusal is one line of the (in-process) silo's log, with the caller's name
        logged = capsys.readouterr().err
        assert "request refused" in logged and "caller=bureau" in logged, logged
        # the coordinator service
        text = coord.read_text().replace(
            'name = "coordinator"\n', f'name = "coordinator"\nlisten = "0.0.0.0:{free_port()}"\n'
        )
        coord.write_text(text)
        config = load_coordinator_config(coord)
        server, _, store = serve_coordinator(config)
        try:
            assert main(["health", "--config", str(coord)]) == 0
            assert _one_line(capsys)[0].startswith("coordinator at 127.0.0.1:")
        finally:
            server.stop(None).wait()
        c.stop("bureau")
        assert main(["health", "--config", str(coord), "--silo", "bureau", "--timeout", "2"]) == 9
        out, err = _one_line(capsys)
        assert not out and err.startswith("fedsilo: error: silo 'bureau' unavailable")
    finally:
        c.stop_all()


# --- ${VAR} in configs ------------------------------------------------------------------------


def test_expand_env_values_files_and_escapes(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text("postgresql+psycopg://bank:s3cret@db/bank\n")
    env = {"A": "x", "URL_FILE": str(secret)}
    raw = {"a": "${A}-${A}", "b": ["$${A}", 3], "t": {"url": "${URL}"}}
    assert expand_env(raw, "f.toml", env) == {
        "a": "x-x",
        "b": ["${A}", 3],
        "t": {"url": "postgresql+psycopg://bank:s3cret@db/bank"},
    }
    with pytest.raises(ConfigError) as err:
        expand_env({"t": {"url": "${MISSING}"}}, "f.toml", env)
    assert str(err.value) == (
        "f.toml: 't.url': environment variable 'MISSING' is not set (nor MISSING_FILE)"
    )
    with pytest.raises(ConfigError, match="not a valid environment variable name"):
        expand_env({"a": "${1X}"}, "f.toml", env)
    with pytest.raises(ConfigError, match="cannot read NOPE_FILE"):
        expand_env({"a": "${NOPE}"}, "f.toml", {"NOPE_FILE": str(tmp_path / "none")})


def _silo_toml(tmp_path: Path, database: str, extra: str = "") -> Path:
    path = tmp_path / "bank.toml"
    path.write_text(
        f'party = "bank"\nlisten = "127.0.0.1:1"\ndatabase = "{database}"\n{extra}'
        "[tls]\ninsecure_plaintext = true\n"
        '[datasets.d]\ntable = "t"\nid_column = "id"\nfeatures = ["x"]\n'
    )
    return path


def test_silo_and_coordinator_configs_read_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BANK_DB_URL", "postgresql+psycopg://bank:pw@db:5432/bank")
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    config = load_silo_config(_silo_toml(tmp_path, "${BANK_DB_URL}", 'output_dir = "${OUT}"\n'))
    assert config.database_url == "postgresql+psycopg://bank:pw@db:5432/bank"
    assert config.reports == tmp_path / "out" / "reports"
    assert config.models == tmp_path / "out" / "models"
    monkeypatch.delenv("BANK_DB_URL")
    path = _silo_toml(tmp_path, "${BANK_DB_URL}")
    assert main(["silo", "check", "--config", str(path)]) == 2
    assert _one_line(capsys)[1] == (
        "fedsilo: error: bank.toml: 'database': environment variable 'BANK_DB_URL' is not set "
        "(nor BANK_DB_URL_FILE)"
    )
    coord = tmp_path / "coordinator.toml"
    coord.write_text('[tls]\ninsecure_plaintext = true\n[silos.bank]\naddress = "${BANK_ADDR}"\n')
    with pytest.raises(ConfigError, match="coordinator.toml: 'silos.bank.address': .*BANK_ADDR"):
        load_coordinator_config(coord)
    monkeypatch.setenv("BANK_ADDR", "bank:50051")
    assert load_coordinator_config(coord).silos == {"bank": "bank:50051"}


def test_reports_default_beside_the_config(tmp_path: Path) -> None:
    config = load_silo_config(_silo_toml(tmp_path, "sqlite:///x.db"))
    assert config.reports == tmp_path / "reports"
