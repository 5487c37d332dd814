"""A headless Chromium for nurture's tests, driven line by line over stdin/stdout.

testkit's `Browser` starts this script with Debian's chromium (Playwright's Python package
drives it through the DevTools protocol) and writes one JSON command per line; the script
answers each with one JSON line: {"ok": true, "value": ...} or {"ok": false, "error": "..."}.
The first line it prints is {"ok": true, "value": "ready"} once the browser is up.
"""

import argparse
import json
import sys

from playwright.sync_api import sync_playwright


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chromium", required=True)
    ap.add_argument("--no-javascript", action="store_true")
    ap.add_argument("--timezone", default="UTC")
    ap.add_argument("--timeout-ms", type=int, default=20000)
    args = ap.parse_args()

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=args.chromium,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        context = browser.new_context(
            java_script_enabled=not args.no_javascript,
            timezone_id=args.timezone,
            viewport={"width": 1100, "height": 800},
        )
        context.set_default_timeout(args.timeout_ms)
        page = context.new_page()
        last_status = {"value": None}

        def on_response(response):
            if response.request.is_navigation_request() and response.request.frame == page.main_frame:
                last_status["value"] = response.status

        page.on("response", on_response)
        reply({"ok": True, "value": "ready"})

        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                cmd = json.loads(line)
                value = run(page, context, cmd, last_status)
                reply({"ok": True, "value": value})
            except Exception as e:  # the test prints it and fails
                reply({"ok": False, "error": f"{type(e).__name__}: {e}"})
        browser.close()


def run(page, context, cmd, last_status):
    c = cmd["cmd"]
    if c == "goto":
        response = page.goto(cmd["url"])
        return response.status if response else None
    if c == "fill":
        page.fill(cmd["selector"], cmd["value"])
        return None
    if c == "check":
        page.check(cmd["selector"])
        return None
    if c == "click":
        # A click that submits a form or follows a link navigates: wait for the new page.
        last_status["value"] = None
        if cmd.get("navigates", True):
            with page.expect_navigation():
                page.click(cmd["selector"])
            page.wait_for_load_state()
        else:
            page.click(cmd["selector"])
        return last_status["value"]
    if c == "text":
        return page.inner_text(cmd["selector"])
    if c == "count":
        return page.locator(cmd["selector"]).count()
    if c == "attribute":
        return page.get_attribute(cmd["selector"], cmd["name"])
    if c == "content":
        return page.content()
    if c == "url":
        return page.url
    if c == "title":
        return page.title()
    if c == "evaluate":
        return page.evaluate(cmd["script"])
    if c == "wait_for":
        page.wait_for_selector(cmd["selector"])
        return None
    if c == "screenshot":
        page.screenshot(path=cmd["path"], full_page=True)
        return cmd["path"]
    if c == "cookies":
        return context.cookies()
    if c == "clear_cookies":
        context.clear_cookies()
        return None
    raise ValueError(f"unknown command {c!r}")


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
