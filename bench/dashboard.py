#!/usr/bin/env python3
"""Dashboard benchmark (issue 19): how long the dashboard's pages take on a SQLite database
with 1,000,000 enrollments. Prints the median time of each page.

The database is built in seconds with SQL (the real path would take an hour): the campaign is
stored by a real `nurture tick`, then contacts, enrollments (spread over the last year, in
every state), messages (the welcome email for everyone, the nudge for 40%) and open and click
events (30% and 10%) are inserted directly. Then `nurture run` serves the dashboard and each
page is fetched over HTTP with a signed-in session, several times.

Usage: bench/dashboard.py [--binary target/release/nurture] [--enrollments 1000000] [--repeat 5]
"""
import argparse, http.cookiejar, os, shutil, socket, sqlite3, statistics, subprocess, sys, tempfile, time
import urllib.error, urllib.parse, urllib.request

CAMPAIGN = """name: Bench nurture
from: "Bench <bench@example.com>"
trigger: { event: lead.captured }
exit_when: { event: purchase.completed }
steps:
  - id: welcome
    send: mail
    subject: Welcome
  - id: nudge
    after: 2d
    when: { not: { clicked: welcome } }
    send: mail
    subject: Nudge
  - id: offer
    after: 4d
    send: mail
    subject: Offer
"""
TEMPLATE = '<p>Hello</p><a href="{{unsubscribe_url}}">Unsubscribe</a>'
PASSWORD = "bench-dashboard-password"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(port):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env.update(
        NURTURE_LISTEN=f"127.0.0.1:{port}",
        NURTURE_BASE_URL=f"http://127.0.0.1:{port}",
        NURTURE_DASHBOARD_PASSWORD=PASSWORD,
        NURTURE_SECRET="bench-secret-bench-secret-bench-secret",
    )
    return env


def build(db, n):
    """Contacts, enrollments, messages and events for `n` enrollments, in SQL."""
    con = sqlite3.connect(db)
    cur = con.cursor()
    now = int(time.time() * 1000)
    version = cur.execute("SELECT version_id FROM campaigns WHERE id = 'bench'").fetchone()[0]
    day = 86_400_000
    cur.executescript("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")
    # i = 1..n; enrolled i*365/n days ago; state by i % 20: 0-11 active (welcome done,
    # waiting at nudge or offer), 12-16 completed, 17-18 goal, 19 unsubscribed.
    cur.execute(
        f"""WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n})
        INSERT INTO contacts (id, email, email_key, created_at, updated_at)
        SELECT i, 'lead' || i || '@example.com', 'lead' || i || '@example.com', {now} - i * 365 * {day} / {n}, {now} FROM seq"""
    )
    cur.execute(
        f"""INSERT INTO enrollments (id, campaign_id, contact_id, state, step_id, seq, next_run_at, enrolled_at, ended_at, exit_reason)
        SELECT id, 'bench', id,
          CASE WHEN id % 20 < 12 THEN 'active' WHEN id % 20 < 17 THEN 'completed' ELSE 'exited' END,
          CASE WHEN id % 20 < 12 THEN (CASE WHEN id % 2 = 0 THEN 'nudge' ELSE 'offer' END) WHEN id % 20 < 17 THEN NULL ELSE 'nudge' END,
          CASE WHEN id % 20 < 12 AND id % 2 = 1 THEN 2 ELSE 1 END,
          CASE WHEN id % 20 < 12 THEN {now} + {day} ELSE NULL END,
          created_at,
          CASE WHEN id % 20 < 12 THEN NULL ELSE created_at + 3 * {day} END,
          CASE WHEN id % 20 >= 17 AND id % 20 < 19 THEN 'goal' WHEN id % 20 = 19 THEN 'unsubscribed' ELSE NULL END
        FROM contacts"""
    )
    # The welcome email for everyone; the nudge for 40%.
    cur.execute(
        f"""INSERT INTO messages (enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, attempts, message_id, created_at, sent_at, updated_at)
        SELECT id, 0, id, 'bench', {version}, 'welcome', 'sent', 1, '<w' || id || '@bench>', enrolled_at, enrolled_at, enrolled_at FROM enrollments"""
    )
    cur.execute(
        f"""INSERT INTO messages (enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, attempts, message_id, created_at, sent_at, updated_at)
        SELECT id, 1, id, 'bench', {version}, 'nudge', 'sent', 1, '<n' || id || '@bench>', enrolled_at + 2 * {day}, enrolled_at + 2 * {day}, enrolled_at + 2 * {day}
        FROM enrollments WHERE id % 5 < 2"""
    )
    # Opens of 30% of the welcome emails, clicks of 10%.
    for name, mod in (("email.opened", 10 // 3), ("email.clicked", 10)):
        cur.execute(
            f"""INSERT INTO events (contact_id, name, properties, occurred_at, enrollment_id, step_id, processed_at, created_at)
            SELECT id, '{name}', '{{}}', enrolled_at + 3600000, id, 'welcome', enrolled_at + 3600000, enrolled_at + 3600000
            FROM enrollments WHERE id % {mod} = 0"""
        )
    con.commit()
    cur.execute("ANALYZE")
    con.commit()
    counts = {t: cur.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("enrollments", "messages", "events")}
    con.close()
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/nurture")
    ap.add_argument("--enrollments", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    if not os.path.exists(binary):
        sys.exit(f"{binary} is missing: cargo build --release (or pass --binary)")
    root = tempfile.mkdtemp(prefix="nurture-dashboard-bench-")
    try:
        os.makedirs(f"{root}/campaigns")
        os.makedirs(f"{root}/templates")
        open(f"{root}/campaigns/bench.yaml", "w").write(CAMPAIGN)
        open(f"{root}/templates/mail.html.hbs", "w").write(TEMPLATE)
        port = free_port()
        env = env_for(port)
        p = subprocess.run([binary, "tick"], cwd=root, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"nurture tick failed: {p.stderr}")
        t = time.perf_counter()
        counts = build(f"{root}/nurture.db", args.enrollments)
        print(f"built {counts['enrollments']:,} enrollments, {counts['messages']:,} messages, "
              f"{counts['events']:,} events in {time.perf_counter() - t:.1f} s")

        daemon = subprocess.Popen([binary, "run"], cwd=root, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.time() + 120
            while True:
                try:
                    urllib.request.urlopen(f"{base}/healthz", timeout=5)
                    break
                except Exception:
                    if time.time() > deadline or daemon.poll() is not None:
                        sys.exit("nurture run did not come up")
                    time.sleep(0.2)
            jar = http.cookiejar.CookieJar()
            opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
            body = urllib.parse.urlencode({"password": PASSWORD, "next": "/dashboard"}).encode()
            opener.open(f"{base}/dashboard/login", data=body, timeout=60).read()
            if not any(c.name == "nurture_session" for c in jar):
                sys.exit("sign-in failed")
            pages = [
                ("campaigns list", "/dashboard"),
                ("campaign, funnel of 30 days", "/dashboard/campaigns/bench?days=30"),
                ("campaign, funnel of 365 days", "/dashboard/campaigns/bench?days=365"),
                ("contact search", "/dashboard/contacts?q=lead12345"),
                ("contact explain", "/dashboard/contacts/12345"),
            ]
            print(f"{'page':32} {'median':>9} {'min':>9} {'max':>9}")
            for label, path in pages:
                times = []
                failed = None
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    try:
                        r = opener.open(base + path, timeout=120)
                        html = r.read()
                    except urllib.error.HTTPError as e:
                        # 503: the server's 10 s request limit cut the page off.
                        failed = f"HTTP {e.code} after {time.perf_counter() - t:.1f} s"
                        break
                    times.append(time.perf_counter() - t)
                    if r.status != 200 or b"<title>Sign in" in html:
                        sys.exit(f"{path}: HTTP {r.status}, not the page")
                if failed:
                    print(f"{label:32} {failed}")
                    continue
                print(f"{label:32} {statistics.median(times) * 1000:8.0f}ms {min(times) * 1000:8.0f}ms {max(times) * 1000:8.0f}ms")
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
