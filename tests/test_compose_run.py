"""docker/compose.yaml, run as written, without a container daemon.

Each service of the compose file runs as a process in a container of our own making: a fresh
mount namespace (``unshare -m``) whose root is a tmpfs holding the host's programs read-only
(``/usr``, the Python and the virtualenv fedsilo is installed in) and a copy of ``/etc`` whose
hosts file names the services, plus exactly the service's volumes at their container paths
(named volumes are folders of this test, bind mounts are the files of ``docker/``), under the
user and working directory of ``docker/Dockerfile`` (uid 10001) or the service's ``user``. Its
entrypoint, command, environment, ``depends_on`` conditions and health checks are read from
the compose file; a command runs exactly as compose would run it. PostgreSQL 127.0.0.1:5432
(database ``test``) stands in for the ``postgres`` service, in a schema ``deploy_*`` of its
own, dropped afterwards. Then a job runs the way the compose file's header says (the compose
job with 3 trees instead of 30: the deployment, not the model, is under test).

What is not reproduced: the image build (the package is the one installed for the tests), the
network (services share the host's loopback, so the compose file's fixed ports must be free),
and restart policies. It needs root and mount namespaces (skipped otherwise, saying so).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from support import pg_schema

from fedsilo.cli.main import main

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
#: services the test provides itself (the PostgreSQL server of the test machine)
STAND_INS = {"postgres"}


def _can_make_containers() -> str | None:
    """Why containers of our own cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (mount namespaces, chroot, switching to uid 10001)"
    if not shutil.which("unshare") or not shutil.which("setpriv"):
        return "needs unshare and setpriv (util-linux)"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a mount namespace: {probe.stderr.strip()}"
    return None


@dataclass(frozen=True)
class Image:
    """What docker/Dockerfile gives a container: user, working directory, environment."""

    user: str
    workdir: str
    env: dict[str, str]
    entrypoint: list[str]

    @classmethod
    def read(cls) -> Image:
        text_ = (DOCKER / "Dockerfile").read_text()
        env: dict[str, str] = {}
        for line in re.findall(r"^ENV (.+)$", text_, re.M):
            env |= dict(pair.split("=", 1) for pair in shlex.split(line))
        uid = re.search(r"useradd .*--uid (\d+)", text_)
        user = re.findall(r"^USER (\S+)$", text_, re.M)
        assert uid and user == ["fedsilo"], "the image runs as the fedsilo user it creates"
        workdir = re.findall(r"^WORKDIR (\S+)$", text_, re.M)[-1]
        entry = re.search(r"^ENTRYPOINT (\[.*\])$", text_, re.M)
        assert entry
        return cls(uid.group(1), workdir, env, yaml.safe_load(entry.group(1)))


@dataclass
class World:
    """The host side of the compose project: its folder, volumes, and the root filesystems."""

    tmp: Path
    project: Path
    image: Image
    spec: dict[str, Any]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def volume(self, name: str, target: str) -> Path:
        """A named volume; created like docker does, from the image's folder at ``target``."""
        path = self.tmp / "volumes" / name
        if not path.exists():
            path.mkdir(parents=True)
            if target == self.image.workdir:  # the image made it, owned by its user
                os.chown(path, int(self.image.user), int(self.image.user))
        return path

    def mounts(self, service: str) -> list[tuple[Path, str, bool]]:
        out = []
        for entry in self.spec["services"][service].get("volumes", []):
            parts = entry.split(":")
            source, target, ro = parts[0], parts[1], parts[2:] == ["ro"]
            if source.startswith("./"):
                host = self.project / source[2:]
            else:
                host = self.volume(source, target)
            out.append((host, target, ro))
        return out

    def script(self, service: str, argv: list[str], env: dict[str, str]) -> str:
        """A shell script that builds the service's root filesystem and runs ``argv`` in it."""
        s = self.spec["services"][service]
        rootfs = self.tmp / "rootfs" / f"{service}-{uuid.uuid4().hex[:6]}"
        lines = [
            "set -e",
            f"R={shlex.quote(str(rootfs))}",
            'mkdir -p "$R"',
            'mount -t tmpfs tmpfs "$R"',
        ]
        lines += ['mkdir -p "$R/usr" "$R/dev" "$R/proc" "$R/tmp" "$R/var" "$R/run"']
        lines += [
            'mount --rbind /usr "$R/usr"',
            'mount --rbind /dev "$R/dev"',
            'mount -t proc proc "$R/proc"',
        ]
        for link in ("bin", "lib", "lib64", "sbin"):
            if Path(f"/{link}").is_symlink():
                lines.append(f'ln -s {os.readlink(f"/{link}")} "$R/{link}"')
        lines += [
            'cp -a /etc "$R/etc"',
            f'cp {shlex.quote(str(self.tmp / "hosts"))} "$R/etc/hosts"',
        ]
        readonly = {Path(sys.base_prefix), Path(sys.prefix), ROOT}
        for path in sorted(readonly):
            q = shlex.quote(str(path))
            lines += [
                f'mkdir -p "$R"{q}',
                f'mount --bind {q} "$R"{q}',
                f'mount -o remount,bind,ro "$R"{q}',
            ]
        for host, target, ro in self.mounts(service):
            t = shlex.quote(target)
            make = (
                f'mkdir -p "$R"{t}'
                if host.is_dir()
                else f'mkdir -p "$(dirname "$R"{t})" && touch "$R"{t}'
            )
            lines += [make, f'mount --bind {shlex.quote(str(host))} "$R"{t}']
            if ro:
                lines.append(f'mount -o remount,bind,ro "$R"{t}')
        user = str(s.get("user", self.image.user)).split(":")[0]
        workdir = s.get("working_dir", self.image.workdir)
        lines.append(f'mkdir -p "$R"{shlex.quote(workdir)}')
        if user == self.image.user:
            lines.append(f'chown {user}:{user} "$R"{shlex.quote(workdir)} 2>/dev/null || true')
        envs = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
        run = f"cd {shlex.quote(workdir)} && exec env -i {envs} " + shlex.join(argv)
        inner = (
            f"exec setpriv --reuid {user} --regid {user} --clear-groups sh -c {shlex.quote(run)}"
        )
        lines.append(f'exec chroot "$R" sh -c {shlex.quote(inner)}')
        return "\n".join(lines)

    def env(self, service: str) -> dict[str, str]:
        path = f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin"
        s = self.spec["services"][service]
        user = str(s.get("user", self.image.user)).split(":")[0]
        home = self.image.workdir if user == self.image.user else "/root"
        return {"PATH": path, "HOME": home, **self.image.env, **s.get("environment", {})}

    def argv(self, service: str) -> list[str]:
        s = self.spec["services"][service]
        entry = s.get("entrypoint", self.image.entrypoint)
        return [*entry, *(s.get("command") or [])]

    def start(self, service: str) -> subprocess.Popen[bytes]:
        script = self.script(service, self.argv(service), self.env(service))
        log = (self.tmp / "logs" / f"{service}.log").open("ab")
        proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[service] = proc
        return proc

    def exec(
        self, service: str, argv: list[str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """``docker compose exec SERVICE ARGV``: the service's filesystem, user and environment."""
        script = self.script(service, argv, self.env(service))
        return subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def log(self, service: str) -> str:
        return (self.tmp / "logs" / f"{service}.log").read_text(errors="replace")[-3000:]

    def wait_healthy(self, service: str, timeout: float = 240.0) -> None:
        check = self.spec["services"][service]["healthcheck"]["test"]
        assert check[0] == "CMD"
        deadline = time.monotonic() + timeout
        while True:
            proc = self.procs[service]
            assert proc.poll() is None, f"{service} exited {proc.returncode}:\n{self.log(service)}"
            if self.exec(service, check[1:], timeout=60).returncode == 0:
                return
            assert time.monotonic() < deadline, f"{service} never healthy:\n{self.log(service)}"
            time.sleep(1.0)

    def wait_completed(self, service: str) -> None:
        proc = self.procs[service]
        assert proc.wait(timeout=120) == 0, f"{service} failed:\n{self.log(service)}"

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _compose() -> dict[str, Any]:
    """The compose file after compose's own interpolation (``$$`` is a literal ``$``)."""
    raw = (DOCKER / "compose.yaml").read_text()
    assert not re.search(r"(?<!\$)\$\{", raw), "the compose file uses no host variables"
    spec: dict[str, Any] = yaml.safe_load(raw.replace("$$", "$"))
    return spec


def _order(services: dict[str, Any]) -> list[str]:
    """Services in an order that satisfies every ``depends_on``."""
    done: list[str] = []
    while len(done) < len(services):
        for name, s in services.items():
            if name not in done and all(d in done for d in s.get("depends_on", {})):
                done.append(name)
    return done


@pytest.fixture
def deploy_pg(pg_server: str) -> Iterator[str]:
    with pg_schema(pg_server, "deploy") as url:
        yield url


def _project(tmp: Path, pg: str) -> Path:
    """docker/ as an operator prepares it: configs, certificates and secrets (header steps)."""
    project = tmp / "docker"
    shutil.copytree(DOCKER / "config", project / "config")
    # the compose job as written, with 3 trees instead of 30: the deployment is what is tested
    job = project / "config" / "job.toml"
    text_ = job.read_text()
    assert "n_estimators = 30\n" in text_
    job.write_text(text_.replace("n_estimators = 30\n", "n_estimators = 3\n"))
    certs_dir = str(project / "certs")
    assert main(["certs", "init", certs_dir]) == 0
    assert (
        main(
            [
                "certs",
                "issue",
                certs_dir,
                "coordinator",
                "--role",
                "coordinator",
                "--host",
                "coordinator",
            ]
        )
        == 0
    )
    for party in ("bank", "bureau", "lender"):
        assert main(["certs", "issue", certs_dir, party, "--role", "silo", "--host", party]) == 0
    assert (project / "certs" / "bank.key").stat().st_mode & 0o077 == 0  # 0600, host user's
    secrets = project / "secrets"
    secrets.mkdir(mode=0o700)
    # the stand-in server for the `postgres` service, reached under the service's name
    url = make_url(pg).set(host="postgres", port=5432)  # search_path: a deploy_* schema
    (secrets / "bank_db_url").write_text(url.render_as_string(hide_password=False))
    (secrets / "bank_db_password").write_text("unused-by-the-stand-in")
    for f in secrets.iterdir():
        f.chmod(0o600)
    return project


@pytest.mark.timeout(2400)
def test_compose_services_run_a_job(tmp_path: Path, deploy_pg: str) -> None:
    why = _can_make_containers()
    if why:
        pytest.skip(why)
    pg = deploy_pg
    tmp = tmp_path
    tmp.chmod(0o755)
    (tmp / "logs").mkdir()
    spec = _compose()
    services = spec["services"]
    names = " ".join(n for n in services)
    (tmp / "hosts").write_text(f"127.0.0.1 localhost {names}\n::1 localhost\n")
    world = World(tmp=tmp, project=_project(tmp, pg), image=Image.read(), spec=spec)
    try:
        for name in _order(services):
            if name in STAND_INS:
                continue
            for dep, cond in services[name].get("depends_on", {}).items():
                if dep in STAND_INS:
                    continue
                if cond["condition"] == "service_completed_successfully":
                    world.wait_completed(dep)
                else:
                    assert cond["condition"] == "service_healthy"
                    world.wait_healthy(dep)
            world.start(name)
        world.wait_healthy("coordinator")
        for party in ("bank", "bureau", "lender"):  # keys: its own only, readable by uid 10001
            keys = tmp / "volumes" / f"{party}-keys"
            assert sorted(p.name for p in keys.glob("*.key")) == [f"{party}.key"]
            st = (keys / f"{party}.key").stat()
            assert (st.st_uid, st.st_mode & 0o777) == (10001, 0o400)
        ran = world.exec("coordinator", ["fedsilo", "run", "/etc/fedsilo/job.toml"], timeout=1800)
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        assert "succeeded" in ran.stdout
        # results where the README says: scores in the bank's PostgreSQL, reports in its volume
        engine = create_engine(pg)
        try:
            with engine.connect() as conn:
                scored = conn.execute(text("SELECT COUNT(*) FROM risk_scores")).scalar_one()
                ledger = conn.execute(text("SELECT COUNT(*) FROM fedsilo_ledger")).scalar_one()
        finally:
            engine.dispose()
        assert scored > 20000 and ledger > 0
        reports = sorted((tmp / "volumes" / "bank-data" / "reports").glob("*.html"))
        assert reports and all(p.stat().st_uid == 10001 for p in reports)
        assert (tmp / "volumes" / "bureau-data" / "bureau.db").stat().st_uid == 10001
        assert (tmp / "volumes" / "coordinator-data" / "coordinator.db").is_file()
        listed = world.exec(
            "coordinator",
            ["fedsilo", "jobs", "--config", "/etc/fedsilo/coordinator.toml"],
            timeout=60,
        )
        assert listed.returncode == 0 and "default-risk" in listed.stdout, listed.stderr
        down = world.exec(
            "coordinator",
            ["fedsilo", "health", "--config", "/etc/fedsilo/coordinator.toml", "--silo", "bank"],
            timeout=60,
        )
        assert down.returncode == 0 and "SERVING" in down.stdout, down.stderr
    finally:
        world.stop_all()
