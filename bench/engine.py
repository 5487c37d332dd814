#!/usr/bin/env python3
"""Engine benchmark (issue 3): import speed, idle tick cost at 10k vs 1M waiting enrollments,
and resident memory of `nurture run` holding 1M enrollments. Prints its figures.

Usage: bench/engine.py [--binary target/release/nurture] [--leads 100000] [--waiting 1000000]
Build first: cargo build --release
"""
import argparse, os, shutil, signal, sqlite3, statistics, subprocess, sys, tempfile, time

CAMPAIGN = """name: Bench
from: "Bench <bench@example.com>"
trigger: { event: lead.captured }
steps:
  - id: later
    after: 30d
    send: later
    subject: Later
"""
TEMPLATE = '<p>Hello</p><a href="{{unsubscribe_url}}">Unsubscribe</a>'


def project(root):
    os.makedirs(f"{root}/campaigns")
    os.makedirs(f"{root}/templates")
    open(f"{root}/campaigns/bench.yaml", "w").write(CAMPAIGN)
    open(f"{root}/templates/later.html.hbs", "w").write(TEMPLATE)


def run(binary, root, *args, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    t = time.perf_counter()
    p = subprocess.run([binary, *args], cwd=root, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if check and p.returncode != 0:
        sys.exit(f"{' '.join(args)} failed: {p.stderr}")
    return dt, p


def fill_waiting(db, n):
    """Adds waiting enrollments straight into the database (far faster than the real path)."""
    con = sqlite3.connect(db)
    now = int(time.time() * 1000)
    later = now + 30 * 86400 * 1000
    cur = con.cursor()
    start = cur.execute("SELECT COALESCE(MAX(id), 0) FROM contacts").fetchone()[0]
    batch = 50_000
    for lo in range(start, start + n, batch):
        hi = min(lo + batch, start + n)
        cur.executemany(
            "INSERT INTO contacts (id, email, email_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            ((i + 1, f"w{i}@example.com", f"w{i}@example.com", now, now) for i in range(lo, hi)),
        )
        cur.executemany(
            "INSERT INTO enrollments (campaign_id, contact_id, state, step_id, seq, next_run_at, enrolled_at) "
            "VALUES ('bench', ?, 'active', 'later', 0, ?, ?)",
            ((i + 1, later, now) for i in range(lo, hi)),
        )
    con.commit()
    count = cur.execute("SELECT COUNT(*) FROM enrollments WHERE state = 'active'").fetchone()[0]
    con.close()
    return count


def idle_tick(binary, root, runs=7):
    times = [run(binary, root, "tick")[0] for _ in range(runs)]
    return statistics.median(times)


def rss_of_run(binary, root, seconds=4):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env["NURTURE_LISTEN"] = "127.0.0.1:0"
    p = subprocess.Popen([binary, "run"], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(seconds)
    peak = 0
    with open(f"/proc/{p.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) // 1024
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    return peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/nurture")
    ap.add_argument("--leads", type=int, default=100_000)
    ap.add_argument("--waiting", type=int, default=1_000_000)
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    if not os.path.exists(binary):
        sys.exit(f"{binary} not found; run cargo build --release first")
    root = tempfile.mkdtemp(prefix="nurture-bench-")
    try:
        project(root)
        with open(f"{root}/leads.csv", "w") as f:
            f.write("email,first_name,company\n")
            for i in range(a.leads):
                f.write(f"lead{i}@example.com,Lead{i},Company {i % 977}\n")
        dt, p = run(binary, root, "contacts", "import", "leads.csv", "--event", "lead.captured")
        print(f"import:   {a.leads} leads with an event in {dt:.2f}s = {a.leads / dt:,.0f} contacts/s ({p.stdout.strip()})")
        dt, p = run(binary, root, "tick")
        print(f"enroll:   one tick enrolled them in {dt:.2f}s = {a.leads / dt:,.0f} enrollments/s ({p.stdout.strip()})")

        small = tempfile.mkdtemp(prefix="nurture-bench-small-")
        project(small)
        run(binary, small, "migrate")
        run(binary, small, "tick")
        n_small = fill_waiting(f"{small}/nurture.db", 10_000)
        t_small = idle_tick(binary, small)
        n_big = fill_waiting(f"{root}/nurture.db", a.waiting - a.leads) if a.waiting > a.leads else a.leads
        t_big = idle_tick(binary, root)
        print(f"idle tick: {n_small:,} waiting {t_small * 1000:.1f} ms, {n_big:,} waiting {t_big * 1000:.1f} ms (ratio {t_big / t_small:.2f}; target <= 1.5)")
        rss = rss_of_run(binary, root)
        print(f"memory:   nurture run with {n_big:,} waiting enrollments: peak RSS {rss} MB (target < 60 MB)")
        shutil.rmtree(small, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
