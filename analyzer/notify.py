"""``--notify URL``: POST the report's Slack-compatible message to an incoming webhook."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from analyzer.model import Report
from analyzer.render import slack_message
from recorder.errors import InputError


def notify(url: str, report: Report, timeout: float = 10.0) -> int:
    """POST :func:`slack_message` of ``report`` to ``url``; returns the HTTP status.

    Raises InputError with one line when the URL is not http(s) or the POST fails.
    """
    if not url.startswith(("http://", "https://")):
        raise InputError(f"--notify {url!r}: give an http:// or https:// webhook URL")
    body = json.dumps(slack_message(report)).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as err:
        raise InputError(f"--notify: the webhook answered HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise InputError(f"--notify: cannot POST to the webhook ({reason})") from None
