"""The bare-bones reference for the intake benchmark: parse the body, insert it, commit,
enqueue a job. No validation, translation or auth. Same gunicorn settings as ours.

    DATABASE_URL=mysql://... REDIS_URL=redis://... gunicorn -c gunicorn.conf.py bench.reference_app:app
"""

from __future__ import annotations

import json
import os

import pymysql
import redis
from flask import Flask, request
from rq import Queue
from rq.serializers import JSONSerializer
from sqlalchemy.engine import make_url

app = Flask(__name__)
_url = make_url(os.environ["DATABASE_URL"])
_state: dict = {}


def connection() -> pymysql.Connection:
    if "db" not in _state:
        _state["db"] = pymysql.connect(
            host=_url.host,
            port=_url.port or 3306,
            user=_url.username,
            password=_url.password or "",
            database=_url.database,
            charset="utf8mb4",
        )
        _state["queue"] = Queue(
            "reference", connection=redis.Redis.from_url(os.environ["REDIS_URL"]), serializer=JSONSerializer
        )
    return _state["db"]


@app.post("/api/v1/submit/CPAN-Testers-Report")
def submit():
    body = request.get_data()
    guid = json.loads(body)["metadata"]["core"]["guid"]
    db = connection()
    with db.cursor() as cursor:
        cursor.execute("INSERT INTO reference_report (guid, body) VALUES (%s, %s)", (guid, body.decode()))
    db.commit()
    _state["queue"].enqueue("workers.jobs.process_report", guid, job_id=f"ref-{guid}")
    return {"guid": guid}, 201
