"""Budgets per receiver key, on an injected clock: no socket, no sleep."""

from __future__ import annotations

import math

import pytest

from agent.config import Rate, Webhook
from agent.delivery.pacing import ILERT_RATE, Budget, Pacer, rate_of, until_next_window


def test_a_budget_lets_count_go_at_once_then_one_per_slot_a_window_after_its_answer() -> None:
    budget = Budget(Rate(50, 60.0))
    assert [budget.take(0.0) for _ in range(51)] == [True] * 50 + [False]
    for i in range(50):  # answered over two seconds
        budget.settle(i * 0.04)
    assert not budget.room(59.9) and budget.next_room() == pytest.approx(60.0)
    assert budget.take(60.0) and not budget.take(60.0)  # the first slot only
    assert budget.take(60.04)


def test_no_window_of_any_phase_sees_more_than_count() -> None:
    """Whatever the receiver's windows' phase: sends 60 s apart per slot at the least."""
    budget, now, sent = Budget(Rate(5, 60.0)), 0.0, []
    while len(sent) < 40:
        if budget.take(now):
            sent.append(now)
            budget.settle(now + 0.3)  # answered 300 ms later
        now += 0.5
    for phase in range(0, 60):
        for start in range(phase, int(sent[-1]) + 60, 60):
            assert sum(start <= t < start + 60 for t in sent) <= 5


def test_a_send_that_never_left_gives_its_slot_back_at_once() -> None:
    budget = Budget(Rate(1, 60.0))
    assert budget.take(0.0)
    budget.settle(0.0, sent=False)
    assert budget.take(0.0)


def test_a_refusal_closes_the_budget_until_then() -> None:
    budget = Budget(Rate(50, 60.0))
    budget.close(30.0)
    assert not budget.room(29.0) and budget.next_room() == 30.0 and budget.take(30.0)


def test_all_slots_in_sends_not_yet_answered_means_no_time_is_known() -> None:
    budget = Budget(Rate(2, 60.0))
    assert budget.take(0.0) and budget.take(0.0)
    assert budget.next_room() == math.inf  # a finishing send says when


def hook(name: str, url: str, **kw: object) -> Webhook:
    return Webhook.model_validate({"name": name, "url": url, **kw})


def test_webhooks_with_one_key_share_a_budget_at_the_strictest_rate() -> None:
    ixon = hook("ixon", "http://a/api/v1/events/ixon/il1K")
    proxy = hook("via-proxy", "https://b/relay/api/v1/events/ixon/il1K", rate_limit="20/min")
    other = hook("other", "http://a/api/v1/events/ixon/il1L")
    plain = hook("plain", "http://a/hook")
    pacer = Pacer(clock=lambda: 0.0)
    pacer.configure([ixon, proxy, other, plain])
    assert pacer.budget("ixon") is pacer.budget("via-proxy")
    assert pacer.budget("ixon").rate == Rate(20, 60.0)  # type: ignore[union-attr]
    assert pacer.budget("other") is not pacer.budget("ixon")
    assert pacer.budget("other").rate == ILERT_RATE  # type: ignore[union-attr]
    assert pacer.budget("plain") is None


def test_a_reload_keeps_a_keys_history_and_takes_its_new_rate() -> None:
    ixon = hook("ixon", "http://a/api/v1/events/ixon/il1K")
    pacer = Pacer(clock=lambda: 10.0)
    pacer.configure([ixon])
    budget = pacer.budget("ixon")
    assert budget is not None
    for _ in range(50):
        assert budget.take(0.0)
        budget.settle(1.0)
    pacer.configure([hook("renamed", ixon.url.get_secret_value(), rate_limit="40/min")])
    again = pacer.budget("renamed")
    assert again is not None and again.rate == Rate(40, 60.0)
    assert not again.room(30.0) and again.room(61.0)  # the burst before the reload counts


def test_rate_of_a_webhook() -> None:
    assert rate_of(hook("w", "http://a/hook")) is None
    assert rate_of(hook("w", "http://a/hook", rate_limit="5/s")) == ("http://a/hook", Rate(5, 1))
    assert rate_of(hook("w", "http://a/api/v1/events/ixon/il1K", rate_limit="none")) is None
    assert rate_of(hook("w", "http://a/api/v1/events/ixon/il1K")) == ("il1K", ILERT_RATE)


def test_the_next_window_of_the_receiver_plus_jitter_and_never_more_than_one() -> None:
    for wall in (6000.0, 6000.5, 6059.9):
        wait = until_next_window(60.0, wall=lambda w=wall: w)  # type: ignore[misc]
        to_boundary = 6060.0 - wall
        assert to_boundary + 1.2 <= wait <= to_boundary + 9.0
