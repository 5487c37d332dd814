#!/usr/bin/env python3
"""A million contacts in one run (issue 21): import N rows from CSV with an event, one
`nurture tick` that enrolls them all and sends their first step (the ebook welcome email)
through SMTP into Postfix's smtp-sink, then the idle tick with those N enrollments waiting
for their second step, against the same flow at 10,000. Prints contacts/s of the import,
messages/s of the send beside `smtp-source -d -s 10` into the same sink, the peak RSS of each
process, the database's size, and the idle-tick ratio.

Usage: bench/million.py [--binary target/release/nurture] [--contacts 1000000]
                        [--reference-messages 100000] [--small 10000]
Build first: cargo build --release. Needs smtp-sink and smtp-source (Debian package postfix).
"""
import argparse, os, shutil, sqlite3, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from send import ROOT, env, free_port, start_sink  # noqa: E402


def timed(args, cwd, e):
    """Runs a process; returns (seconds, stdout, peak RSS in MB of that process alone)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        p = subprocess.Popen(args, cwd=cwd, env=e, stdout=out, stderr=err, text=True)
        # wait4 gives this child's own peak, not the largest of every child so far.
        _, status, usage = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            sys.exit(f"{' '.join(args)} failed: {err.read()}")
        return dt, out.read().strip(), usage.ru_maxrss // 1024


def world(binary, root, n, port):
    """Imports n leads and sends their first email; returns the figures of each phase."""
    shutil.copytree(os.path.join(ROOT, "templates"), os.path.join(root, "templates"))
    os.makedirs(os.path.join(root, "campaigns"))
    shutil.copy(os.path.join(ROOT, "campaigns/ebook-nurture.yaml"), os.path.join(root, "campaigns"))
    with open(os.path.join(root, "leads.csv"), "w") as f:
        f.write("email,first_name,company\n")
        for i in range(n):
            f.write(f"lead{i}@example.com,Lead{i},Company {i % 97}\n")
    e = env()
    imp = timed([binary, "contacts", "import", "leads.csv", "--event", "lead.captured"], root, e)
    db = os.path.join(root, "nurture.db")
    # The import's events carry no `source`: tell the trigger they came from the ebook form.
    con = sqlite3.connect(db)
    con.execute("UPDATE events SET properties='{\"source\":\"ebook\"}'")
    con.commit()
    con.close()
    e["NURTURE_SMTP_URL"] = f"smtp://127.0.0.1:{port}"
    send = timed([binary, "tick"], root, e)
    if f" {n} sent," not in send[1]:
        sys.exit(f"not every lead got its email: {send[1]}")
    # Idle: every enrollment waits two days for its second step.
    idle = statistics.median(timed([binary, "tick"], root, e)[0] for _ in range(7))
    size = sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s))
    return imp, send, idle, size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/nurture"))
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--reference-messages", type=int, default=100_000,
                    help="messages smtp-source sends for the reference rate (at most --contacts)")
    ap.add_argument("--small", type=int, default=10_000, help="contacts of the idle-tick reference")
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    os.environ["PATH"] += ":/usr/sbin"
    work = tempfile.mkdtemp(prefix="nurture-million-")
    port = free_port()
    sink = start_sink(port)
    try:
        n = a.contacts
        small = world(binary, os.path.join(work, "small"), a.small, port)
        eml = subprocess.run([binary, "preview", "ebook-nurture", "--step", "welcome", "--format", "eml"], cwd=os.path.join(work, "small"), env=env(), capture_output=True, text=True, check=True).stdout
        size = len(eml.encode())
        (imp_t, imp_out, imp_rss), (send_t, send_out, send_rss), idle, db_size = world(binary, os.path.join(work, "big"), n, port)
        m = min(a.reference_messages, n)
        t = time.perf_counter()
        subprocess.run(["smtp-source", "-d", "-s", "10", "-l", str(size), "-m", str(m), "-f", "bench@example.com", "-t", "sink@example.com", f"127.0.0.1:{port}"], check=True, capture_output=True)
        ref = m / (time.perf_counter() - t)
        print(f"import:    {n:,} rows from CSV with an event: {imp_t:.1f}s = {n / imp_t:,.0f} contacts/s, peak RSS {imp_rss} MB ({imp_out})")
        print(f"send:      one tick enrolled them and sent {n:,} first emails ({size} bytes) into smtp-sink: {send_t:.1f}s = {n / send_t:,.0f} msg/s, peak RSS {send_rss} MB (target < 100 MB)")
        print(f"           {send_out}")
        print(f"reference: smtp-source -d -s 10, {m:,} messages of {size} bytes into the same sink: {ref:,.0f} msg/s; ratio nurture / smtp-source = {n / send_t / ref:.2f}")
        print(f"database:  {db_size / 1e6:,.0f} MB of SQLite for {n:,} contacts, events, enrollments and sent messages ({db_size / n:,.0f} bytes each)")
        print(f"idle tick: {a.small:,} waiting {small[2] * 1000:.1f} ms, {n:,} waiting {idle * 1000:.1f} ms (ratio {idle / small[2]:.2f}; target <= 1.5)")
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
