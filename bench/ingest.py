#!/usr/bin/env python3
"""HTTP ingest benchmark (issue 21): `POST /api/events` with idempotency ids from a concurrent
client (bench/ingest_client.rs, C keep-alive connections) against `nurture run` on SQLite,
while that daemon is sending a backlog of leads into Postfix's smtp-sink. Prints events/s,
p50/p99 latency, how many emails went out meanwhile, and checks that every event was recorded
once (a second post of the same ids is a no-op).

References, the same events without HTTP: `nurture contacts import --event` (all of them in
one process) and `nurture event` (a sample, one process per event as a shell script would).

Usage: bench/ingest.py [--binary target/release/nurture] [--events 50000] [--connections 64]
                       [--backlog 20000] [--cli-sample 200]
Build first: cargo build --release. Needs rustc, smtp-sink (Debian package postfix), python3.
"""
import argparse, os, shutil, signal, sqlite3, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from send import ROOT, env, free_port, start_sink  # noqa: E402

KEY = "bench-api-key"


def client(work):
    """Builds the load generator once per run (a second with rustc -O)."""
    exe = os.path.join(work, "ingest_client")
    subprocess.run(["rustc", "-O", "--edition", "2021", "-o", exe, os.path.join(ROOT, "bench/ingest_client.rs")], check=True)
    return exe


def project(root, leads):
    shutil.copytree(os.path.join(ROOT, "templates"), os.path.join(root, "templates"))
    os.makedirs(os.path.join(root, "campaigns"))
    shutil.copy(os.path.join(ROOT, "campaigns/ebook-nurture.yaml"), os.path.join(root, "campaigns"))
    with open(os.path.join(root, "leads.csv"), "w") as f:
        f.write("email,first_name,company\n")
        for i in range(leads):
            f.write(f"lead{i}@example.com,Lead{i},Company {i % 97}\n")


def parse(line):
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split())}


def count(db, sql):
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/nurture"))
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--backlog", type=int, default=20_000, help="leads waiting for their first email when the posts start")
    ap.add_argument("--cli-sample", type=int, default=200, help="events recorded with one `nurture event` process each")
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    os.environ["PATH"] += ":/usr/sbin"
    work = tempfile.mkdtemp(prefix="nurture-ingest-bench-")
    sink_port, http_port = free_port(), free_port()
    sink = start_sink(sink_port)
    daemon = None
    try:
        exe = client(work)
        root = os.path.join(work, "http")
        project(root, a.backlog)
        e = env()
        subprocess.run([binary, "contacts", "import", "leads.csv", "--event", "lead.captured"], cwd=root, env=e, check=True, capture_output=True)
        # The import's events carry no `source`: tell the trigger they came from the ebook form.
        con = sqlite3.connect(os.path.join(root, "nurture.db"))
        con.execute("UPDATE events SET properties='{\"source\":\"ebook\"}'")
        con.commit()
        con.close()
        e.update(NURTURE_SMTP_URL=f"smtp://127.0.0.1:{sink_port}", NURTURE_API_KEY=KEY, NURTURE_LISTEN=f"127.0.0.1:{http_port}")
        db = os.path.join(root, "nurture.db")
        daemon = subprocess.Popen([binary, "run"], cwd=root, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1).read()
                break
            except OSError:
                if time.time() > deadline or daemon.poll() is not None:
                    sys.exit("nurture run did not become healthy")
                time.sleep(0.05)
        # The posts start once the send round is sending (its first emails recorded sent), so
        # they compete with it from the first request, not with the enrolling before it.
        deadline = time.time() + 120
        while count(db, "SELECT COUNT(*) FROM messages WHERE state = 'sent'") == 0:
            if time.time() > deadline or daemon.poll() is not None:
                sys.exit("nurture run sent nothing within 120 s")
            time.sleep(0.05)
        sent_before = count(db, "SELECT COUNT(*) FROM messages WHERE state = 'sent'")
        out = subprocess.run([exe, f"127.0.0.1:{http_port}", KEY, str(a.events), str(a.connections), "ev"], check=True, capture_output=True, text=True).stdout
        r = parse(out)
        sent_during = count(db, "SELECT COUNT(*) FROM messages WHERE state = 'sent'") - sent_before
        # The same ids again: every one a no-op.
        again = parse(subprocess.run([exe, f"127.0.0.1:{http_port}", KEY, str(min(a.events, 2000)), str(a.connections), "ev"], check=True, capture_output=True, text=True).stdout)
        recorded = count(db, "SELECT COUNT(*) FROM events WHERE idempotency_key LIKE 'ev-%'")
        rate = r["events"] / r["seconds"]
        print(f"HTTP:        {int(r['events'])} POST /api/events with ids, {a.connections} keep-alive connections, against `nurture run` on SQLite: "
              f"{r['seconds']:.2f}s = {rate:,.0f} events/s; latency p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms "
              f"(target >= 10,000/s with p99 < 50 ms)")
        throughout = "the backlog was still being sent when the posts ended" if sent_before + sent_during < a.backlog else "the backlog ran out before the posts ended"
        print(f"             meanwhile the daemon sent {sent_during} emails into smtp-sink (a backlog of {a.backlog} leads, then the posted ones; {throughout})")
        ok = r["non_202"] == 0 and recorded == a.events and again["non_202"] == 0
        print(f"             recorded {recorded} events ({'each once' if recorded == a.events else 'MISMATCH'}); "
              f"{int(again['events'])} repeated ids answered 202 and changed nothing; non-202 answers: {int(r['non_202'] + again['non_202'])}")
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        daemon = None

        # References without HTTP, each on a fresh database.
        cli = os.path.join(work, "cli")
        project(cli, 0)
        with open(os.path.join(cli, "events.csv"), "w") as f:
            f.write("email,first_name,company\n")
            for i in range(a.events):
                f.write(f"http{i}@example.com,Lead{i},Company {i % 97}\n")
        e = env()
        subprocess.run([binary, "migrate"], cwd=cli, env=e, check=True, capture_output=True)
        t = time.perf_counter()
        subprocess.run([binary, "contacts", "import", "events.csv", "--event", "lead.captured"], cwd=cli, env=e, check=True, capture_output=True)
        bulk = a.events / (time.perf_counter() - t)
        print(f"import:      the same {a.events} contacts and events through `nurture contacts import --event` in one process: {bulk:,.0f} events/s; HTTP / import = {rate / bulk:.2f}")
        t = time.perf_counter()
        for i in range(a.cli_sample):
            subprocess.run([binary, "event", f"cli{i}@example.com", "lead.captured", "--prop", "source=ebook", "--attr", f"first_name=Lead{i}"], cwd=cli, env=e, check=True, capture_output=True)
        one = a.cli_sample / (time.perf_counter() - t)
        print(f"CLI:         {a.cli_sample} events through `nurture event`, one process each: {one:,.0f} events/s; HTTP / CLI = {rate / one:.1f}")
        if not ok:
            sys.exit("an event was lost, recorded twice or refused")
    finally:
        if daemon:
            daemon.kill()
            daemon.wait()
        sink.terminate()
        sink.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
