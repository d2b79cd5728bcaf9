"""Remote workers over TLS with least privilege, end to end on servers of the test's own:
a throwaway CA (trustme), ``redis-server`` on a TLS-only port with the ACL file that
``scripts.redis_acl`` makes (one user per worker host, client certificates required), and
``mariadbd`` requiring TLS, with the accounts of ``deploy/mariadb/grants.sql``.

A real ``python -m workers.run`` (simple and forking) processes reports over TLS with only
the worker grants (scheduler, retries, failures and maintenance included) while Redis's ACL
log stays empty; plain-text connections are refused; the worker users cannot flush Redis,
drop tables or read the testers' secrets; a revoked host is locked out while the others go
on.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pymysql
import pytest
import redis
import sqlalchemy as sa
from rq import Retry
from rq.registry import FailedJobRegistry
from werkzeug.security import generate_password_hash

import settings
from app import create_app, create_viewer_app
from queueing.contract import BATCH_JOB_FUNCTION, JOB_FUNCTION, job_id, report_queue
from scripts import check_pipeline
from storage.engine import create_engine
from storage.reports import store_report
from storage.tables import test_report
from tests import captures
from tests.backends import services_required
from tests.helpers import auth_header, register_profile, with_new_guid
from tests.processes import environment
from tests.processing_helpers import report_row
from tests.test_worker_allowlist import plant_job
from tests.tls_servers import HOST, Pki, TlsMariaDB, TlsRedis, wait_for
from workers.sweeper import sweep

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "cpanstats"
OWNER = ("cpantesters", "owner-secret")
WORKER_DB = ("cpt_worker", "worker-db-secret")
READER_DB = ("cpt_reader", "reader-db-secret")
REDIS_USERS = ["admin:cpt-admin", "web:cpt-web", "worker:worker-a", "worker:worker-b"]
BINARIES = ("redis-server", "mariadbd", "mariadb-install-db", "mariadb")
OPERATOR, OPERATOR_PASSWORD = "operator", "operator-password"


def _have(binary: str) -> bool:
    return shutil.which(binary) is not None or Path(f"/usr/sbin/{binary}").exists()


@dataclasses.dataclass
class Farm:
    directory: Path
    pki: Pki
    redis: TlsRedis
    mariadb: TlsMariaDB

    def password(self, user: str) -> str:
        return (self.directory / "redis-passwords" / f"{user}.password").read_text().strip()

    def redis_url(self, user: str) -> str:
        return self.redis.url(user, self.password(user))

    def redis_client(self, user: str) -> redis.Redis:
        return self.redis.client(user, self.password(user))

    @property
    def admin(self) -> redis.Redis:
        return self.redis_client("cpt-admin")

    def database_url(self, account: tuple[str, str], certificate: str | None = None) -> str:
        return self.mariadb.url(*account, DATABASE, certificate=certificate)

    def acl_log(self) -> list[dict]:
        return self.admin.acl_log()


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    missing = [b for b in BINARIES if not _have(b)]
    if missing:
        if services_required():
            pytest.fail(f"missing {missing} and CPT_REQUIRE_SERVICES is set")
        pytest.skip(f"missing {missing}")
    directory = tmp_path_factory.mktemp("tls-farm")
    pki = Pki.create(directory / "pki")
    # The ACL file as an operator makes it: one user per worker host, passwords in files.
    aclfile = directory / "users.acl"
    made = subprocess.run(
        [sys.executable, "-m", "scripts.redis_acl", "file", "--passwords", str(directory / "redis-passwords")]
        + REDIS_USERS,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    aclfile.write_text(made.stdout)
    for spec in REDIS_USERS + ["worker:worker-c"]:
        pki.client(spec.split(":")[1])
    admin_password = (directory / "redis-passwords" / "cpt-admin.password").read_text().strip()
    farm = Farm(
        directory,
        pki,
        TlsRedis(directory / "redis", pki, aclfile, ("cpt-admin", admin_password)),
        TlsMariaDB(directory / "mariadb", pki),
    )
    try:
        farm.redis.start()
        farm.mariadb.start()
        farm.mariadb.sql(
            f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
            f"CREATE USER '{OWNER[0]}'@'%' IDENTIFIED BY '{OWNER[1]}' REQUIRE SSL;"
            f"GRANT ALL ON {DATABASE}.* TO '{OWNER[0]}'@'%';"
        )
        # The Procfile's release command, over TLS.
        subprocess.run(
            [sys.executable, "-m", "scripts.migrate"],
            cwd=ROOT,
            env=environment(DATABASE_URL=farm.database_url(OWNER)),
            check=True,
            capture_output=True,
            timeout=120,
        )
        # The shipped grants script, applied as the README says.
        farm.mariadb.sql(
            f"SET @db = '{DATABASE}', @worker_password = '{WORKER_DB[1]}', @reader_password = '{READER_DB[1]}';"
            f"SOURCE {ROOT / 'deploy' / 'mariadb' / 'grants.sql'};"
        )
        yield farm
    except BaseException:
        print("--- redis log\n" + farm.redis.log_tail() + "\n--- mariadb log\n" + farm.mariadb.log_tail())
        raise
    finally:
        farm.redis.stop()
        farm.mariadb.stop()


@pytest.fixture
def web(farm, tmp_path):
    """The web app (intake, /status, /metrics, the dashboard) over TLS: the owner's
    database account, the web Redis user."""
    config = settings.load(
        {},
        DATABASE_URL=farm.database_url(OWNER),
        REDIS_URL=farm.redis_url("cpt-web"),
        SPOOL_DIR=str(tmp_path / "spool"),
        ADMIN_USER=OPERATOR,
        ADMIN_PASSWORD_HASH=generate_password_hash(OPERATOR_PASSWORD),
    )
    app = create_app(config)
    engine = app.extensions["cpantesters"].engine
    with engine.connect() as conn:
        known = conn.execute(sa.text("SELECT COUNT(*) FROM metabase_user")).scalar()
    if not known:
        register_profile(engine)
    farm.admin.acl_log_reset()
    yield app
    engine.dispose()


def submit(app, count: int) -> list[str]:
    client = app.test_client()
    submission = captures.load("01-ok")[0]
    guids = []
    for _ in range(count):
        body, guid = with_new_guid(submission.body)
        response = client.post("/api/v1/submit/CPAN-Testers-Report", data=body, headers=auth_header())
        assert response.status_code == 201, response.json
        assert response.json == {"guid": guid}
        guids.append(guid)
    return guids


def states(app, guids) -> dict[str, str]:
    with app.extensions["cpantesters"].engine.connect() as conn:
        rows = conn.execute(sa.select(test_report.c.guid, test_report.c.state).where(test_report.c.guid.in_(guids)))
        return dict(rows.all())


@contextmanager
def worker_process(farm, user: str, log: Path, *args: str):
    """``python -m workers.run`` as a worker host runs it: the cpt_worker account and the
    host's own Redis user, both over TLS, client certificates given."""
    env = environment(
        DATABASE_URL=farm.database_url(WORKER_DB, certificate=user),
        REDIS_URL=farm.redis_url(user),
        LOG_LEVEL="INFO",
    )
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.run", "--maintenance-interval", "1", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def denied(farm) -> list[str]:
    return [f"{e['username']}: {e['reason']} {e['object']} ({e['context']})" for e in farm.acl_log()]


@pytest.mark.parametrize(("user", "mode"), [("worker-a", []), ("worker-b", ["--fork"])], ids=["simple", "fork"])
def test_a_worker_processes_reports_over_tls_with_only_its_grants(farm, web, tmp_path, user, mode):
    guids = submit(web, 3)
    owner = create_engine(farm.database_url(OWNER))
    try:
        bad = report_row(grade="bogus")  # processing fails: retried by the scheduler, then given up
        batch = [report_row() for _ in range(2)]
        for row in (bad, *batch):
            store_report(owner, row)
    finally:
        owner.dispose()
    queue = report_queue(farm.redis_client("cpt-web"))
    queue.enqueue(JOB_FUNCTION, bad["guid"], job_id=job_id(bad["guid"]), retry=Retry(max=1, interval=1))
    queue.enqueue(BATCH_JOB_FUNCTION, [r["guid"] for r in batch])
    marker = tmp_path / "forged-job-ran"
    planted = plant_job(farm.redis_client("cpt-web"), "os.system", [f"touch {marker}"])
    everything = [*guids, bad["guid"], *(r["guid"] for r in batch)]
    expected = {**{g: "done" for g in guids + [r["guid"] for r in batch]}, bad["guid"]: "failed"}

    with worker_process(farm, user, tmp_path / "worker.log", *mode) as worker:
        wait_for(lambda: states(web, everything) == expected or worker.poll() is not None, 90, "reports processed")
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        failed = FailedJobRegistry(queue=queue)
        wait_for(lambda: {job_id(bad["guid"]), planted} <= set(failed.get_job_ids()), 30, "failed jobs registered")
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]

    assert states(web, everything) == expected
    assert not marker.exists()
    assert denied(farm) == []  # every command the worker sent, its scheduler and maintenance included, was allowed


def test_the_web_side_serves_status_metrics_and_the_dashboard_over_tls(farm, web, capsys, tmp_path):
    client = web.test_client()
    login = {"Authorization": auth_header(OPERATOR, OPERATOR_PASSWORD)["Authorization"]}
    wrong = client.post(
        "/api/v1/submit/CPAN-Testers-Report",
        data=with_new_guid(captures.load("01-ok")[0].body)[0],
        headers=auth_header(secret="wrong"),
    )
    assert wrong.status_code == 401  # counted by the throttle in Redis
    for path in ("/status?format=json", "/metrics", "/readyz"):
        assert client.get(path).status_code == 200, path
    assert client.get("/status?format=json").json["verdict"]["state"]
    for path in ("/dashboard/", "/dashboard/0/data/queues.json", "/dashboard/0/data/workers.json"):
        assert client.get(path, headers=login).status_code == 200, path
    # The sweeper and the check command, with the same URLs.
    services = web.extensions["cpantesters"]
    sweep(services.engine, services.redis, grace_seconds=0)
    environ = {"DATABASE_URL": farm.database_url(OWNER), "REDIS_URL": farm.redis_url("cpt-web")}
    check_pipeline.run(["--no-notify", "--json", "--spool-dir", str(tmp_path)], environ=environ)
    figures = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert figures["errors"] == {}
    assert denied(farm) == []


def test_the_viewer_and_read_api_work_with_the_read_only_account(farm, web, tmp_path):
    (guid,) = submit(web, 1)
    with worker_process(farm, "worker-a", tmp_path / "worker.log", "--burst") as worker:
        worker.wait(timeout=60)
    config = settings.load({}, DATABASE_URL=farm.database_url(READER_DB), REDIS_URL=farm.redis_url("cpt-web"))
    viewer = create_viewer_app(config)
    try:
        client = viewer.test_client()
        page = client.get(f"/report/{guid}")
        assert page.status_code == 200
        assert b"CPAN Tester" in page.data  # the tester's name, read from metabase_user
        assert client.get("/v3/summary/Foo-Bar").status_code in (200, 404)
        assert client.get(f"/report/{guid}?json=1").json["success"] == "1"
    finally:
        viewer.extensions["cpantesters_viewer"].engine.dispose()


def test_plain_text_connections_to_the_tls_ports_are_refused(farm):
    plain = redis.Redis(host=HOST, port=farm.redis.port, socket_timeout=5, socket_connect_timeout=5)
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    # TLS with the right password but no client certificate: refused too (tls-auth-clients yes).
    no_certificate = redis.Redis(
        host=HOST,
        port=farm.redis.port,
        username="worker-a",
        password=farm.password("worker-a"),
        ssl=True,
        ssl_ca_certs=str(farm.pki.ca_file),
        socket_timeout=5,
    )
    with pytest.raises(redis.ConnectionError):
        no_certificate.ping()
    # The server refuses any TCP connection without TLS (require_secure_transport), even for
    # an account that does not ask for TLS itself ...
    # (MariaDB 10.11 answers it "Access denied"; the same login over TLS is let in).
    farm.mariadb.sql("CREATE USER IF NOT EXISTS 'probe'@'%' IDENTIFIED BY 'probe'")
    probe = {"host": HOST, "port": farm.mariadb.port, "user": "probe", "password": "probe"}
    pymysql.connect(**probe, ssl_ca=str(farm.pki.ca_file)).close()
    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        pymysql.connect(**probe, ssl_disabled=True)
    # ... and the service's accounts REQUIRE SSL wherever they are created.
    for user, password in (OWNER, WORKER_DB, READER_DB):
        with pytest.raises(pymysql.err.OperationalError):
            pymysql.connect(host=HOST, port=farm.mariadb.port, user=user, password=password, ssl_disabled=True)


def test_a_server_the_ca_did_not_sign_is_not_trusted(farm, tmp_path):
    stranger = Pki.create(tmp_path / "other-ca")
    url = farm.redis.url("worker-a", farm.password("worker-a"), ca=stranger.ca_file)
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis.from_url(url, socket_timeout=5).ping()
    engine = create_engine(farm.mariadb.url(*WORKER_DB, DATABASE, ca=stranger.ca_file))
    try:
        with pytest.raises(sa.exc.OperationalError, match="certificate verify failed"):
            engine.connect().close()
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "command",
    [
        ["FLUSHALL"],
        ["FLUSHDB"],
        ["CONFIG", "GET", "*"],
        ["KEYS", "*"],
        ["ACL", "LIST"],
        ["CLIENT", "LIST"],
        ["EVAL", "return 1", "0"],
        ["GET", "cpt:authfail:anything"],
        ["SET", "other:key", "1"],
        ["SHUTDOWN"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_worker_redis_user_cannot(farm, command):
    with pytest.raises(redis.exceptions.NoPermissionError):
        farm.redis_client("worker-a").execute_command(*command)


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE cpanstats",
        "CREATE TABLE planted (id INT)",
        "ALTER TABLE cpanstats ADD COLUMN planted INT",
        "SELECT secret_hash, secret_salt FROM metabase_user",
        "SELECT fullname FROM metabase_user",
        "UPDATE test_report SET report = '' WHERE id = 0",
        "DELETE FROM test_report WHERE id = 0",
        "INSERT INTO metabase_user (resource, fullname) VALUES ('x', 'x')",
        "GRANT SELECT ON cpanstats.* TO CURRENT_USER",
    ],
)
def test_the_worker_database_account_cannot(farm, statement):
    engine = create_engine(farm.database_url(WORKER_DB))
    try:
        with pytest.raises(sa.exc.DatabaseError, match="denied"), engine.begin() as conn:
            conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT secret_hash FROM metabase_user",
        "SELECT * FROM metabase_user",
        "UPDATE cpanstats SET state = 'pass' WHERE id = 0",
        "INSERT INTO test_report (guid) VALUES ('x')",
        "DROP TABLE cpanstats",
    ],
)
def test_the_read_only_account_cannot(farm, statement):
    engine = create_engine(farm.database_url(READER_DB))
    try:
        with pytest.raises(sa.exc.DatabaseError, match="denied"), engine.begin() as conn:
            conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def test_the_database_accounts_require_tls_even_where_the_server_would_not(farm):
    for account in (WORKER_DB, READER_DB):
        grants = farm.mariadb.sql(f"SHOW GRANTS FOR '{account[0]}'@'%'")
        assert "REQUIRE SSL" in grants, grants


def test_a_revoked_worker_host_is_locked_out_and_the_others_go_on(farm, web, tmp_path):
    # A host added to the running server, as the README says, then revoked.
    line = subprocess.run(
        [sys.executable, "-m", "scripts.redis_acl", "setuser", "worker", "worker-c", "--passwords"]
        + [str(farm.directory / "redis-passwords")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    farm.admin.execute_command(*shlex.split(line))
    with worker_process(farm, "worker-c", tmp_path / "revoked.log"):
        wait_for(lambda: any(c["user"] == "worker-c" for c in farm.admin.client_list()), 60, "worker-c connected")
        farm.admin.acl_log_reset()

        farm.admin.execute_command("ACL", "DELUSER", "worker-c")

        assert not any(c["user"] == "worker-c" for c in farm.admin.client_list())  # cut off at once
        with pytest.raises(redis.exceptions.AuthenticationError):
            farm.redis_client("worker-c").ping()
        # Its own attempts to come back are refused, and it processes nothing.
        wait_for(
            lambda: any(e["username"] == "worker-c" and e["reason"] == "auth" for e in farm.acl_log()),
            60,
            "the revoked host's reconnection refused",
        )
        guids = submit(web, 2)
        with worker_process(farm, "worker-a", tmp_path / "other.log", "--burst") as other:
            other.wait(timeout=60)
        assert set(states(web, guids).values()) == {"done"}
        assert not any(c["user"] == "worker-c" for c in farm.admin.client_list())
    assert "Job OK" not in (tmp_path / "revoked.log").read_text()
