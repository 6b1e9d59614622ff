"""What the status listener's login costs the real `ixon-agent run`, per request.

    .venv/bin/python bench/login.py [--requests 2000]

Two agents on the default machine config, one with ``[status.users]`` (a bcrypt hash of
12 rounds, as `hash-password` makes) and one without. Each gets ``--requests`` GETs of
``/metrics`` one after another on a kept-alive connection (with the login: the right
password every time, so only the first pays bcrypt). Printed: the agent's CPU per request
with and without the login, and the difference. Goal: at most 1 ms per authenticated
request after the first.
"""

from __future__ import annotations

import argparse
import time

import httpx
from harness import Agent, device, free_port

from agent.observe.auth import hash_password

PASSWORD = "bench-Password-1"

CONFIG = """
[agent]
name = "Login bench"
[[sources]]
name = "plc"
host = "127.0.0.1"
port = {port}
poll_interval = "1s"
  [[sources.variables]]
  name = "oil_temp"
  register = "holding"
  address = 100
  type = "float"
[status]
port = {status}
{users}
"""


def measure(text: str, status: int, requests: int, auth: tuple[str, str] | None) -> float:
    agent = Agent(text)
    try:
        agent.start()
        time.sleep(1.0)
        url = f"http://127.0.0.1:{status}/metrics"
        with httpx.Client(auth=auth) as client:
            assert client.get(url).status_code == 200  # the first: bcrypt, when logged in
            time.sleep(0.5)
            before = agent.cpu()
            for _ in range(requests):
                client.get(url)
            used = agent.cpu() - before
    finally:
        agent.stop()
    return used / requests * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    users = f'  [status.users]\n  jane = "{hash_password(PASSWORD)}"'
    with device(200) as port:
        rows = []
        for _ in range(2):  # interleaved: drift hits both alike
            status = free_port()
            plain = measure(
                CONFIG.format(port=port, status=status, users=""), status, args.requests, None
            )
            status = free_port()
            login = measure(
                CONFIG.format(port=port, status=status, users=users),
                status,
                args.requests,
                ("jane", PASSWORD),
            )
            rows.append((plain, login))
    plain = min(r[0] for r in rows)
    login = min(r[1] for r in rows)
    print(
        f"GET /metrics x {args.requests} on a kept-alive connection,"
        " `ixon-agent run` CPU per request (best of 2):"
    )
    print(
        f"  without a login {plain:.3f} ms;"
        f" with basic auth (bcrypt 12 rounds, remembered) {login:.3f} ms"
    )
    print(f"  the login adds {login - plain:+.3f} ms per request after the first (goal <= 1 ms)")


if __name__ == "__main__":
    main()
