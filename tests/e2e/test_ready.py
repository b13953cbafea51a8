"""`/ready` tells the truth about the followers of the multi-process service."""

from __future__ import annotations

import os
import signal
import subprocess

import httpx
import pytest

from tests.e2e.conftest import customer_body
from tests.e2e.service import Service, wait_until

pytestmark = pytest.mark.e2e


def test_a_frozen_projection_worker_makes_ready_fail_until_it_catches_up(
    service: Service,
) -> None:
    """SIGSTOP the projection worker while commands arrive: `/ready` answers 503 naming it
    within a minute (default settings), and 200 again once it is resumed and caught up;
    `/health` stays 200 throughout."""
    frozen = service.child("projections run")
    with service.client() as http:
        assert http.get("/ready").status_code == 200
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            for _ in range(5):
                assert http.post("/v1/customers", json=customer_body()).status_code == 201

            def not_ready() -> httpx.Response | None:
                response = http.get("/ready")
                return response if response.status_code == 503 else None

            refused = wait_until(not_ready, 60, "/ready to answer 503")
            assert refused.headers["content-type"] == "application/problem+json"
            assert "projections" in refused.json()["detail"]
            assert http.get("/health").status_code == 200
        finally:
            os.kill(frozen.pid, signal.SIGCONT)

        def caught_up() -> bool:
            response = http.get("/ready")
            if response.status_code != 200:
                return False
            body = response.json()
            return bool(body["followers"]["projections"] >= body["position"])

        assert wait_until(caught_up, 60, "/ready to answer 200 with the worker caught up")


def test_followers_status_lists_every_follower_of_the_service(service: Service) -> None:
    """`rightsledger followers status` shows the three followers running (exit 0), and
    `followers resume` refuses a follower that is not parked (exit 1, saying so)."""

    def reported() -> subprocess.CompletedProcess[str] | None:
        done = service.spawn_cli("followers", "status")
        named = all(name in done.stdout for name in ("projections", "request-workers", "relay"))
        return done if done.returncode == 0 and named else None

    shown = wait_until(reported, 60, "every follower to report")
    assert "running" in shown.stdout
    refused = service.spawn_cli("followers", "resume", "projections")
    assert refused.returncode == 1
    assert "not parked" in refused.stderr
