"""Authentication and registration as the Perl client does them (captures 04, 05, 21)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from storage import users
from storage.tables import metabase_user
from tests import captures
from tests.helpers import auth_header, register_profile, replay, services, stored_rows


@pytest.mark.parametrize("scenario", ["04-register-flow", "21-cpan-reporter-fail-register"])
def test_register_flow_goes_401_register_then_201(app, client, scenario):
    submit, head, register, resubmit = captures.load(scenario)
    first = replay(client, submit)
    assert first.status_code == 401
    assert first.headers["Content-Type"] == "application/json"
    assert first.json == {"error": f"User {captures.PROFILE_GUID} unrecognized"}
    assert replay(client, head).status_code == 404
    registered = replay(client, register)
    assert (registered.status_code, registered.json) == (200, {"message": "accepted"})
    final = replay(client, resubmit)
    assert final.status_code == 201
    assert [r["guid"] for r in stored_rows(services(app).engine)] == [final.json["guid"]]


def test_registration_stores_name_and_email_and_a_hashed_secret(app, client):
    _submit, _head, register, _resubmit = captures.load("04-register-flow")
    replay(client, register)
    with services(app).engine.connect() as conn:
        user = users.find_user(conn, captures.PROFILE_GUID)
    assert (user["fullname"], user["email"]) == ("CPAN Tester", "tester@example.com")
    assert user["secret_hash"] and captures.PROFILE_SECRET not in (user["secret_hash"], user["secret_salt"])


def test_known_profile_with_another_secret_gets_401_and_head_guid_200(app, client):
    register_profile(services(app).engine, secret="another-secret")
    submit, head = captures.load("05-authfail")
    response = replay(client, submit)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert "error" in response.json
    probe = replay(client, head)
    assert probe.status_code == 200
    assert client.get(head.path).json == {"guid": captures.PROFILE_GUID}
    assert stored_rows(services(app).engine) == []


def test_register_never_replaces_a_stored_secret(app, client):
    register_profile(services(app).engine, secret="original")
    register = captures.load("04-register-flow")[2]
    response = replay(client, register)
    assert (response.status_code, response.json) == (400, {"error": "already registered"})
    submit = captures.load("04-register-flow")[3]
    assert replay(client, submit).status_code == 401


def test_migrated_profile_without_secret_adopts_the_first_one_presented(app, client):
    register_profile(services(app).engine, secret=None)
    assert replay(client, captures.load("01-ok")[0]).status_code == 201
    # The adopted secret now guards the profile: another one is refused.
    another_report = captures.load("02-fail-grade")[0].body
    response = client.post(
        "/api/v1/submit/CPAN-Testers-Report", data=another_report, headers=auth_header(secret="not-the-first")
    )
    assert response.status_code == 401


def test_operator_reset_lets_a_profile_adopt_a_new_secret(app, client):
    register_profile(services(app).engine, secret="lost-secret")
    assert users.reset_secret(services(app).engine, captures.PROFILE_GUID)
    assert replay(client, captures.load("01-ok")[0]).status_code == 201


def test_auth_off_accepts_any_secret_for_a_known_profile(config, client, backend):
    from app import create_app
    from settings import load

    app = create_app(load({}, **{**config.__dict__, "METABASE_AUTH": "off"}))
    register_profile(app.extensions["cpantesters"].engine, secret="something-else")
    response = replay(app.test_client(), captures.load("01-ok")[0])
    assert response.status_code == 201
    app.extensions["cpantesters"].engine.dispose()


def test_missing_credentials_are_401_json(client):
    body = captures.load("01-ok")[0].body
    response = client.post("/api/v1/submit/CPAN-Testers-Report", data=body)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"


def test_a_report_claiming_another_creator_is_refused(app, client):
    other = "11111111-2222-4333-8444-555555555555"
    register_profile(services(app).engine, guid=other, secret="x")
    body = captures.load("01-ok")[0].body
    response = client.post("/api/v1/submit/CPAN-Testers-Report", data=body, headers=auth_header(other, "x"))
    assert response.status_code == 403
    assert "creator" in response.json["error"]


def test_double_encoded_names_are_repaired_on_registration(app, client):
    register = captures.load("04-register-flow")[2]
    data = json.loads(register.body)
    members = json.loads(data[0]["content"])
    members[0]["content"] = "J\u00c3\u0083\u00c2\u00b6hn \u00c3\u0089mile"
    data[0]["content"] = json.dumps(members)
    response = client.post("/api/v1/register", data=json.dumps(data))
    assert response.status_code == 200
    with services(app).engine.connect() as conn:
        name = conn.execute(sa.select(metabase_user.c.fullname)).scalar()
    assert name == "Jöhn Émile"


def test_once_encoded_names_lose_exactly_one_layer(app, client):
    register = captures.load("04-register-flow")[2]
    data = json.loads(register.body)
    members = json.loads(data[0]["content"])
    members[0]["content"] = "Slaven Rezi\u00c4\u0087 \U0001f42a".encode().decode("latin-1")
    data[0]["content"] = json.dumps(members)
    client.post("/api/v1/register", data=json.dumps(data))
    with services(app).engine.connect() as conn:
        name = conn.execute(sa.select(metabase_user.c.fullname)).scalar()
    assert name == "Slaven Rezić \U0001f42a"


def registration_with(name: str | None = None, email: str | None = None, secret: str | None = None) -> str:
    """The captured registration with its name, e-mail or secret replaced."""
    data = json.loads(captures.load("04-register-flow")[2].body)
    members = json.loads(data[0]["content"])
    for member in members:
        kind = member["metadata"]["core"]["type"]
        if kind == "Metabase-User-FullName" and name is not None:
            member["content"] = name
        if kind == "Metabase-User-EmailAddress" and email is not None:
            member["content"] = email
    data[0]["content"] = json.dumps(members)
    if secret is not None:
        data[1]["content"] = secret
    return json.dumps(data)


@pytest.mark.parametrize("field", ["name", "email"])
def test_a_lone_surrogate_in_a_registered_name_or_email_is_stored_replaced(app, client, field):
    response = client.post("/api/v1/register", data=registration_with(**{field: "Tester \ud83d"}))
    assert (response.status_code, response.headers["Content-Type"]) == (200, "application/json")
    with services(app).engine.connect() as conn:
        user = users.find_user(conn, captures.PROFILE_GUID)
    assert user["fullname" if field == "name" else "email"] == "Tester \ufffd"


def test_a_lone_surrogate_in_a_registered_secret_is_a_json_400(app, client):
    """No client can send such a secret back (Basic carries bytes): refuse it, clearly."""
    response = client.post("/api/v1/register", data=registration_with(secret="s3cr\udc2at"))
    assert (response.status_code, response.headers["Content-Type"]) == (400, "application/json")
    assert "secret" in response.json["error"]
    with services(app).engine.connect() as conn:
        assert users.find_user(conn, captures.PROFILE_GUID) is None
