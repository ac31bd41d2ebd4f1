"""Settings hitl must refuse at start, and the secret `hitl webhook-secret` makes."""

from __future__ import annotations

import os
import subprocess
from typing import List

import pytest
from standardwebhooks import Webhook

from checks import all_delivered
from hitl import Hitl
from receiver import Receiver


def refused(hitl_bin: str, args: List[str], tmp_path) -> str:
    """Runs hitl with ``args``; it must exit non-zero by itself. Returns what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITL_")}
    cmd = [hitl_bin, "--addr", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"), *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=15, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as running:
        raise AssertionError(f"hitl started with {args}: {running.stdout!r}") from None
    out = done.stdout + done.stderr
    assert done.returncode != 0, f"hitl exited 0 with {args}: {out}"
    assert "listening on" not in out, out
    return out


@pytest.mark.parametrize(
    "bad", ["nonsense", "whsec_", "whsec_!!!!", "whsec_c2hvcnQ=", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
)
def test_a_secret_in_a_wrong_format_is_refused_at_start(hitl_bin, tmp_path, bad):
    out = refused(
        hitl_bin, ["--webhook-url", "http://127.0.0.1:9/hook", "--webhook-secret", bad], tmp_path
    )
    assert "whsec_" in out, out


def test_webhooks_without_a_secret_are_refused_at_start(hitl_bin, tmp_path):
    out = refused(hitl_bin, ["--webhook-url", "http://127.0.0.1:9/hook"], tmp_path)
    assert "--webhook-secret" in out and "whsec_" in out, out
    out = refused(hitl_bin, ["--callback-allow", "127.0.0.1:9"], tmp_path)
    assert "--webhook-secret" in out, out


def test_webhooks_without_a_durable_store_are_refused_at_start(hitl_bin, tmp_path, secret):
    out = refused(
        hitl_bin,
        ["--store", "memory", "--webhook-url", "http://127.0.0.1:9/hook",
         "--webhook-secret", secret],
        tmp_path,
    )
    assert "store" in out, out


def test_the_secret_hitl_makes_signs_what_standardwebhooks_verifies(hitl_bin, tmp_path):
    made = [
        subprocess.run([hitl_bin, "webhook-secret"], capture_output=True, text=True,
                       check=True, timeout=15).stdout.strip()
        for _ in range(2)
    ]
    assert made[0] != made[1]
    secret = made[0]
    assert secret.startswith("whsec_")
    Webhook(secret)  # standardwebhooks takes it
    receiver = Receiver(secret, name="with hitl's secret")
    hitl = Hitl(hitl_bin, ["--data-dir", str(tmp_path / "data"), "--webhook-url", receiver.url,
                           "--webhook-secret", secret])
    try:
        hitl.start()
        task_id = hitl.loop()
        assert len(all_delivered(hitl, receiver, task_id)) == 6
        assert secret not in hitl.log, "the secret was logged"
    except BaseException:
        print(hitl.log)
        raise
    finally:
        hitl.stop()
        receiver.close()
