"""cloud-ws local's notifications: options, and the dispatcher's webhook retries."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from cloud_ws.commands import local
from contract import notifications as notify
from emulator.notifications import TOPIC_TARGET, Dispatcher, Provisioned, webhook_target


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    local.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_topic_alone_by_default_and_webhooks_added_by_option(tmp_path: Path) -> None:
    assert local._notifications(_args()) == notify.Targets()
    assert local._notifications(_args("--no-notifications")) is None
    file = tmp_path / "notifications.json"
    file.write_text(json.dumps({"outcomes": ["failed"], "webhooks": [{"url": "https://a.example"}]}))
    targets = local._notifications(_args("--notifications", f"@{file}", "--webhook", "http://127.0.0.1:9/b"))
    assert targets is not None
    assert targets.outcomes == ("failed",)
    assert [hook.url for hook in targets.webhooks] == ["https://a.example", "http://127.0.0.1:9/b"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--notifications", "[1]"), "notifications must be an object"),
        (("--notifications", "{"), "must be a JSON object"),
        (("--notifications", "@/nonexistent.json"), "cannot read /nonexistent.json"),
        (("--webhook", "ftp://x"), r"webhooks\[0\].url must be a URL starting with https:// or http://"),
        (("--no-notifications", "--webhook", "http://x"), "cannot be combined"),
    ],
)
def test_bad_options_are_refused(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        local._notifications(_args(*argv))


class _Answer:
    def __init__(self, status: int) -> None:
        self.status_code = status


class _Session:
    """Records posts; answers with the statuses given, in turn (an exception is raised)."""

    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.posts: list[dict[str, Any]] = []

    def post(self, url: str, **kwargs: Any) -> _Answer:
        self.posts.append({"url": url, **kwargs})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return _Answer(answer)


class _Sns:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> None:
        self.published.append(kwargs)


def _dispatcher(session: _Session, sns: _Sns) -> Dispatcher:
    targets = notify.Targets(webhooks=(notify.Webhook("http://hook.example/x", header_value="tok"),))
    provisioned = Provisioned("bus", "arn:aws:sns:us-east-1:123456789012:t", "queue", targets)
    return Dispatcher(None, sns, provisioned, session=session)  # type: ignore[arg-type]


def _routed(target: str) -> str:
    detail = notify.sample_outcome().detail()
    return json.dumps({"target": target, "event": {"detail": detail}})


def test_the_topic_gets_the_summary_and_a_webhook_the_text_with_its_header() -> None:
    session, sns = _Session(200), _Sns()
    dispatcher = _dispatcher(session, sns)

    assert dispatcher.deliver(_routed(TOPIC_TARGET))
    assert dispatcher.deliver(_routed(webhook_target(0)))

    (published,) = sns.published
    assert published["Message"].startswith("[sample] cloud-ws: deployment cloud-ws-notify-test failed")
    (post,) = session.posts
    assert post["url"] == "http://hook.example/x"
    assert post["headers"] == {notify.DEFAULT_HEADER_NAME: "tok"}
    assert "database-rds" in post["json"]["text"]


def test_a_webhook_is_retried_on_5xx_429_and_network_errors_but_not_on_4xx() -> None:
    session = _Session(500, 429, requests.ConnectionError("refused"), 404, 200)
    dispatcher = _dispatcher(session, _Sns())
    assert [dispatcher.deliver(_routed(webhook_target(0))) for _ in range(5)] == [
        False,
        False,
        False,
        True,
        True,
    ]


def test_something_that_is_not_a_routed_notification_is_dropped() -> None:
    assert _dispatcher(_Session(), _Sns()).deliver("not json")
