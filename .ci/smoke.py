"""The smoke flow of an installed Otklik (.ci/wheel): against `otklik run` at BASE, with
the standard library only, as a newcomer's first minutes go: /healthz, the demo page, the
dashboard's login page, a signed trigger asking for a link, its survey answered on the
page, and the answer in the metrics API. Exits non-zero at the first step that fails."""

from __future__ import annotations

import hashlib
import hmac
import http.cookiejar
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

BASE, ADMIN, SECRET = sys.argv[1], sys.argv[2], sys.argv[3]
if not BASE.startswith("http://127.0.0.1:"):
    sys.exit(f"smoke.py drives an otklik on loopback, not {BASE}")
jar = http.cookiejar.CookieJar()  # the CSRF cookie the survey page sets


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None  # a 303 is the answer to check, not a page to follow


def call(path: str, *, data: bytes | None = None, headers: dict[str, str] | None = None,
         follow: bool = True) -> tuple[int, str]:
    handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPCookieProcessor(jar)]
    if not follow:
        handlers.append(NoRedirect())
    request = urllib.request.Request(BASE + path, data=data,  # noqa: S310 (loopback)
                                     headers=headers or {})
    try:
        with urllib.request.build_opener(*handlers).open(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def step(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok ' if ok else 'FAIL'} {name}{': ' + detail[:300] if detail and not ok else ''}")
    if not ok:
        sys.exit(1)


for _ in range(300):
    try:
        status, body = call("/healthz")
        if status == 200:
            break
    except OSError:
        pass
    time.sleep(0.1)
step("GET /healthz", status == 200, body)
status, body = call("/")
step("the demo page", status == 200 and "<form" in body, body)
status, body = call("/admin/login")
step("the dashboard's login page", status == 200 and 'name="token"' in body, body)

trigger = json.dumps({"survey": "post_call_csat", "idempotency_key": "smoke-1",
                      "channel": "link", "customer": {"external_id": "smoke-1"},
                      "context": {"agent_name": "Anna"}}).encode()
stamp = str(int(time.time()))
signature = hmac.new(SECRET.encode(), stamp.encode() + b"." + trigger,
                     hashlib.sha256).hexdigest()
status, body = call("/api/v1/triggers", data=trigger, headers={
    "Content-Type": "application/json", "X-Otklik-Timestamp": stamp,
    "X-Otklik-Signature": f"sha256={signature}"})
step("a signed trigger", status == 202 and json.loads(body).get("survey_url"), body)
page = urllib.parse.urlsplit(json.loads(body)["survey_url"]).path

status, html = call(page)
fields = {name: re.search(rf'name="{name}" value="([^"]+)"', html)
          for name in ("csrf", "session", "position")}
five = re.search(r'value="(\d+)"[^>]*><span>5</span>', html)
step("its survey page", status == 200 and all(fields.values()) and five is not None, html)
form = {name: match[1] for name, match in fields.items() if match} | {
    "answer": five[1] if five else ""}
status, body = call(page, data=urllib.parse.urlencode(form).encode(), follow=False,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
step("one answer", status == 303, f"{status} {body}")

status, body = call("/api/v1/metrics?survey=post_call_csat",
                    headers={"Authorization": f"Bearer {ADMIN}"})
answers = json.loads(body).get("overall", {}).get("answers") if status == 200 else None
step("the metrics API counts it", answers == 1, body)
