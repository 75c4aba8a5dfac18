"""Screenshot a page that never goes idle, in real time, through Chromium's DevTools pipe.

    live_shot.py <chromium> <url> <out.png> <width,height> <wait text> <timeout s> [<then js>]

Chromium's `--screenshot --virtual-time-budget` waits for the network to settle, but the
Temporal UI long-polls the history of a *running* workflow, so it never does. Here the page
loads in real time; once its text contains <wait text> (or at the timeout), <then js> runs
in it if given (to open a detail, say), and the shot is taken after a moment to draw.
Exit 1 when the text never showed. Standard library only: the DevTools protocol over
`--remote-debugging-pipe` (fd 3 in, fd 4 out, NUL-terminated JSON).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

SETTLE_S = 3.0  # after the text appears, and after <then js>: fonts and late requests draw


class Pipe:
    def __init__(self, to_browser: int, from_browser: int) -> None:
        self.out, self.inp = to_browser, from_browser
        self.buf, self.next_id = b"", 0

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.out, json.dumps(msg).encode() + b"\0")
        while True:  # events (no id) are of no use here
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self.buf:
            chunk = os.read(self.inp, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(raw)
        return parsed


def main(
    chromium: str, url: str, out: str, window: str, wait_text: str, timeout: str, then_js: str = ""
) -> int:
    width, height = (int(v) for v in window.split(","))
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()

    def child_fds() -> None:  # the pipe ends at fd 3 and 4, where Chromium looks for them
        r, w = os.dup(to_r), os.dup(from_w)
        os.dup2(r, 3, inheritable=True)
        os.dup2(w, 4, inheritable=True)

    with tempfile.TemporaryDirectory(prefix="live-shot-") as profile:
        browser = subprocess.Popen(  # noqa: S603 - the chromium we were given
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={window}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            preexec_fn=child_fds,  # no threads here, so preexec_fn is safe
            pass_fds=(3, 4),  # kept open through close_fds
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_r)
        os.close(from_w)
        cdp = Pipe(to_w, from_r)
        try:
            target = cdp.call("Target.createTarget", url="about:blank")
            session = cdp.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
            sid = session["sessionId"]
            cdp.call(
                "Emulation.setDeviceMetricsOverride",
                sid,
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            cdp.call("Page.navigate", sid, url=url)
            has_text = f"(document.body?.innerText ?? '').includes({json.dumps(wait_text)})"
            deadline = time.monotonic() + float(timeout)
            found = False
            while time.monotonic() < deadline:
                probe = cdp.call(
                    "Runtime.evaluate",
                    sid,
                    expression=has_text,
                    returnByValue=True,
                )
                if probe["result"].get("value") is True:
                    found = True
                    break
                time.sleep(0.5)
            if not found:
                print(f"live_shot: {wait_text!r} not on the page after {timeout}s", file=sys.stderr)
            time.sleep(SETTLE_S)
            if then_js:
                cdp.call("Runtime.evaluate", sid, expression=then_js)
                time.sleep(SETTLE_S)
            shot = cdp.call("Page.captureScreenshot", sid, format="png")
            with open(out, "wb") as fh:
                fh.write(base64.b64decode(shot["data"]))
            cdp.call("Browser.close")
        finally:
            try:
                browser.wait(timeout=10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()
    return 0 if found else 1


if __name__ == "__main__":
    if len(sys.argv) not in (7, 8):
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
