"""The receiver itself: it must refuse what standardwebhooks does not verify, or every other
test's check of signatures would be empty."""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import datetime, timezone

import httpx
import pytest
from standardwebhooks import Webhook

from receiver import Receiver

BODY = json.dumps({
    "type": "task.status", "timestamp": "2026-11-24T12:00:00Z",
    "data": {"seq": 1, "task_id": "t", "status": "pending", "attempt": 1,
             "task": {"id": "t"}},
})


def signed(secret: str, msg_id: str = "msg_1", body: str = BODY, at: float | None = None) -> dict:
    when = datetime.fromtimestamp(at if at is not None else time.time(), tz=timezone.utc)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body),
        "content-type": "application/json",
    }


def post(url: str, **kwargs: object) -> httpx.Response:
    with httpx.Client(trust_env=False) as client:
        return client.post(url, **kwargs)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def test_a_request_signed_with_the_secret_is_taken():
    secret = new_secret()
    receiver = Receiver(secret)
    try:
        answer = post(receiver.url, content=BODY, headers=signed(secret))
        assert answer.status_code == 200
        receiver.check()
        assert [r.webhook_id for r in receiver.accepted()] == ["msg_1"]
    finally:
        receiver.close()


@pytest.mark.parametrize("wrong", [
    "another secret", "no signature", "another body", "another id", "an old timestamp",
])
def test_a_request_standardwebhooks_refuses_is_a_failure(wrong):
    secret = new_secret()
    receiver = Receiver(secret)
    try:
        headers = signed(new_secret() if wrong == "another secret" else secret,
                         at=time.time() - 600 if wrong == "an old timestamp" else None)
        body = BODY
        if wrong == "no signature":
            del headers["webhook-signature"]
        elif wrong == "another body":
            body = BODY.replace('"pending"', '"completed"')
        elif wrong == "another id":
            headers["webhook-id"] = "msg_2"
        answer = post(receiver.url, content=body, headers=headers)
        assert answer.status_code == 400
        assert receiver.accepted() == []
        with pytest.raises(AssertionError, match="did not verify"):
            receiver.check()
        with pytest.raises(AssertionError, match="did not verify"):
            receiver.wait_for(lambda: False, timeout=5)
    finally:
        receiver.close()


def test_down_refuses_connections_and_up_listens_on_the_same_port():
    secret = new_secret()
    receiver = Receiver(secret)
    try:
        url = receiver.url
        receiver.down()
        with pytest.raises(httpx.ConnectError):
            post(url, content=BODY, headers=signed(secret))
        receiver.up()
        assert receiver.url == url
        assert post(url, content=BODY, headers=signed(secret)).status_code == 200
    finally:
        receiver.close()
