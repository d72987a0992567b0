"""``cloud-ws local``'s notifications: the cloud's rules on the embedded bus, SNS in moto, real webhooks.

In the cloud, one rule per target on the notifications bus (filtered by
project and outcome, ``notify.target_pattern``) sends each attempt's outcome
to the SNS topic or, through an API destination, to a webhook. moto's
EventBridge delivers neither SNS nor API destination bodies, so here each
target's rule, with the very same pattern, sends the event to one local queue
with the target's name (an input transformer), and :class:`Dispatcher`
drains it: the topic gets ``detail.summary`` published in the embedded SNS
(subscribers, e.g. an SQS queue, see it as they would in AWS), a webhook gets
``detail.webhook`` POSTed for real, with the connection's header, retried a
few times as API destinations retry.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import requests

from contract import notifications as notify
from contract.log import get_logger

log = get_logger("emulator.notifications")

#: Receives of one message before a failing webhook is given up (API destinations retry too).
MAX_RECEIVES = 5
#: How soon a failed delivery comes back, in seconds.
RETRY_SECONDS = 2
#: Timeout of one webhook POST, in seconds (API destinations allow 5 s).
WEBHOOK_TIMEOUT_SECONDS = 5
TOPIC_TARGET = "topic"


def webhook_target(index: int) -> str:
    """The local target name of the ``index``-th webhook."""
    return f"webhook-{index}"


@dataclass(frozen=True)
class Provisioned:
    """The local notification resources."""

    bus_name: str
    topic_arn: str | None
    queue_url: str
    targets: notify.Targets


def provision(events: Any, sqs: Any, sns: Any, prefix: str, targets: notify.Targets) -> Provisioned:
    """The notifications bus, the topic and its subscriptions, a rule per target, and the local queue."""
    bus = f"{prefix}-notifications"
    events.create_event_bus(Name=bus)
    queue_url = sqs.create_queue(
        QueueName=f"{prefix}-notifications", Attributes={"VisibilityTimeout": str(RETRY_SECONDS)}
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    topic_arn: str | None = None
    rules: list[tuple[str, dict[str, Any]]] = []
    if targets.topic:
        topic_arn = sns.create_topic(Name=f"{prefix}-notifications")["TopicArn"]
        for email in targets.emails:
            sns.subscribe(TopicArn=topic_arn, Protocol="email", Endpoint=email)
        for number in targets.sms:
            sns.subscribe(TopicArn=topic_arn, Protocol="sms", Endpoint=number)
        rules.append((TOPIC_TARGET, notify.target_pattern(targets.projects, targets.outcomes)))
    for index, hook in enumerate(targets.webhooks):
        rules.append((webhook_target(index), notify.target_pattern(hook.projects, hook.outcomes)))
    for name, pattern in rules:
        rule = f"{prefix}-notify-{name}"
        events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(pattern))
        events.put_targets(
            Rule=rule,
            EventBusName=bus,
            Targets=[
                {
                    "Id": name,
                    "Arn": queue_arn,
                    "InputTransformer": {
                        "InputPathsMap": {},
                        "InputTemplate": f'{{"target": "{name}", "event": <aws.events.event.json>}}',
                    },
                }
            ],
        )
    return Provisioned(bus, topic_arn, queue_url, targets)


class Dispatcher:
    """Drains the local notifications queue into SNS and the webhooks (one thread)."""

    def __init__(self, sqs: Any, sns: Any, provisioned: Provisioned, session: requests.Session | None = None):
        self._sqs = sqs
        self._sns = sns
        self._provisioned = provisioned
        self._http = session or requests.Session()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notifications", daemon=True)

    def start(self) -> None:
        """Start draining."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current poll (at most a second)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        queue_url = self._provisioned.queue_url
        while not self._stop.is_set():
            try:
                reply = self._sqs.receive_message(
                    QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"]
                )
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("receiving notifications failed")
                self._stop.wait(1)
                continue
            for message in reply.get("Messages", []):
                receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
                if self.deliver(message["Body"]) or receives >= MAX_RECEIVES:
                    self._sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    def deliver(self, body: str) -> bool:
        """Send one routed notification to its target; False when it should be tried again."""
        try:
            routed = json.loads(body)
            target, detail = routed["target"], routed["event"]["detail"]
        except (ValueError, KeyError, TypeError):
            log.warning("not a routed notification; dropped")
            return True
        if target == TOPIC_TARGET:
            if self._provisioned.topic_arn is None:
                return True
            self._sns.publish(TopicArn=self._provisioned.topic_arn, Message=str(detail.get("summary", "")))
            return True
        index = int(str(target).rpartition("-")[2])
        hook = self._provisioned.targets.webhooks[index]
        try:
            answer = self._http.post(
                hook.url,
                json=detail.get("webhook"),
                headers={hook.header_name: hook.header_value or "cloud-ws"},
                timeout=WEBHOOK_TIMEOUT_SECONDS,
            )
        except requests.RequestException as exc:
            log.warning("webhook unreachable; retried", extra={"webhook": index, "reason": str(exc)})
            return False
        if answer.status_code == 429 or answer.status_code >= 500:  # API destinations retry these
            log.warning("webhook answered %s; retried", answer.status_code, extra={"webhook": index})
            return False
        if answer.status_code >= 400:
            log.warning(
                "webhook refused the notification", extra={"webhook": index, "status": answer.status_code}
            )
        return True
