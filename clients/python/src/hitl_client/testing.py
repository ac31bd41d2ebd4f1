"""Run a real hitl for tests: ``with HitlServer() as hitl: Client(hitl.url)``.

The binary is ``HITL_BIN`` from the environment, else the one given. It runs with
``--store memory --addr 127.0.0.1:0 --process-delay-ms 0`` (``store``, ``addr`` and ``data_dir``
change them; ``args`` are added), and the URL is read
from the line ``listening on http://HOST:PORT`` it prints. Its output is kept in ``log`` for a
failing test to show.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from typing import Dict, List, Optional, Sequence

_LISTENING = re.compile(r"listening on (http://\S+)")


class HitlServer:
    def __init__(
        self,
        binary: Optional[str] = None,
        args: Sequence[str] = (),
        env: Optional[Dict[str, str]] = None,
        start_timeout: float = 30.0,
        *,
        store: str = "memory",
        addr: str = "127.0.0.1:0",
        data_dir: Optional[str] = None,
    ) -> None:
        self.binary = os.environ.get("HITL_BIN") or binary or "hitl"
        self.args = list(args)
        self.store = store
        self.addr = addr
        self.data_dir = data_dir
        self.env = env or {}
        self.start_timeout = start_timeout
        self.url = ""
        self.port = 0
        self.lines: List[str] = []
        self.proc: "Optional[subprocess.Popen[str]]" = None
        self._found = threading.Event()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def start(self) -> "HitlServer":
        if not os.path.exists(self.binary) and os.sep in self.binary:
            raise FileNotFoundError(
                f"no hitl binary at {self.binary}: build it with `cargo build`, or set HITL_BIN"
            )
        # Only what the test says: no HITL_* setting of the caller's leaks in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("HITL_")}
        env.setdefault("RUST_LOG", "hitl=info,warn")
        env.update(self.env)
        cmd = [self.binary, "--store", self.store, "--addr", self.addr, "--process-delay-ms", "0"]
        if self.data_dir is not None:
            cmd += ["--data-dir", self.data_dir]
        cmd += self.args
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._read, name="hitl-server-output", daemon=True).start()
        deadline = time.monotonic() + self.start_timeout
        while not self._found.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"hitl did not start ({' '.join(cmd)}):\n{self.log}")
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if not self._found.is_set():
                m = _LISTENING.search(line)
                if m:
                    self.url = m.group(1).rstrip("/")
                    self.port = int(self.url.rsplit(":", 1)[1])
                    self._found.set()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> "HitlServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def hash_secret(binary: str, secret: str) -> str:
    """The Argon2 hash of ``secret``, by ``hitl hash-secret``, for ``--users``."""
    out = subprocess.run(
        [os.environ.get("HITL_BIN") or binary, "hash-secret"],
        input=secret + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip().splitlines()[-1]
