#!/usr/bin/env python3
"""Send-pipeline benchmark (issues 4 and 7): N leads imported with an event, then ONE
`nurture tick` that enrolls, renders and delivers them into Postfix's smtp-sink, side by side
with Postfix's own `smtp-source -d -s 10` pushing messages of the same size into the same
sink. Prints messages/s of each and the ratio.

Usage: bench/send.py [--binary target/release/nurture] [--leads 5000] [--repeat 5] [--derived-text] [--dkim [rsa|ed25519]]
Build first: cargo build --release. Needs smtp-sink and smtp-source (Debian package postfix).
"""
import argparse, os, resource, shutil, socket, sqlite3, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_sink(port):
    args = ["smtp-sink"]
    if os.geteuid() == 0:
        args += ["-u", "nobody"]
    p = subprocess.Popen(args + [f"127.0.0.1:{port}", "1024"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return p
        except OSError:
            time.sleep(0.02)
    sys.exit("smtp-sink did not start")


def env():
    e = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    e["NURTURE_RATE_PER_SECOND"] = "1000000"
    return e


# The dashboard counters kept by triggers (migrations 0011 and 0012, issue 19).
COUNT_TRIGGERS = [
    "enrollment_counts_insert", "enrollment_counts_update", "enrollment_counts_delete",
    "funnel_marked", "funnel_unmarked", "funnel_enrolled", "funnel_goal_changed", "funnel_unenrolled",
    "funnel_emailed_insert", "funnel_emailed_update", "funnel_engaged",
    "step_marked", "step_unmarked", "step_unenrolled", "step_sent_insert", "step_sent_update",
    "step_sent_delete", "step_engaged",
]


def bare_copy(source, target):
    """A copy of the database without the dashboard counters' triggers (for --trigger-cost)."""
    shutil.copy(source, target)
    con = sqlite3.connect(target)
    try:
        for name in COUNT_TRIGGERS:
            if not con.execute("SELECT 1 FROM sqlite_master WHERE type='trigger' AND name=?", (name,)).fetchone():
                sys.exit(f"trigger {name} not found: keep bench/send.py's COUNT_TRIGGERS in step with migrations/sqlite")
            con.execute(f"DROP TRIGGER {name}")
        con.commit()
    finally:
        con.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/nurture"))
    ap.add_argument("--leads", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5, help="runs of each side, alternating (median reported)")
    ap.add_argument("--derived-text", action="store_true",
                    help="drop the welcome email's .txt.hbs so its text part is derived from the HTML")
    ap.add_argument("--dkim", nargs="?", const="rsa", choices=["rsa", "ed25519"],
                    help="sign every message with DKIM: rsa (the default, a 2048-bit key made with openssl) or ed25519")
    ap.add_argument("--trigger-cost", action="store_true",
                    help="also run each tick on a copy without the dashboard counters' triggers "
                         "(migrations 0011 and 0012) and report what they cost the send")
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    for tool in ("smtp-sink", "smtp-source"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"{tool} not found: install Debian's postfix package")
    os.environ["PATH"] += ":/usr/sbin"
    work = tempfile.mkdtemp(prefix="nurture-send-bench-")
    port = free_port()
    sink = start_sink(port)
    try:
        # The repository's example campaigns and templates: the ebook welcome email.
        shutil.copytree(os.path.join(ROOT, "templates"), os.path.join(work, "templates"))
        if a.derived_text:
            os.remove(os.path.join(work, "templates/ebook/welcome.txt.hbs"))
        os.makedirs(os.path.join(work, "campaigns"))
        shutil.copy(os.path.join(ROOT, "campaigns/ebook-nurture.yaml"), os.path.join(work, "campaigns"))
        with open(os.path.join(work, "leads.csv"), "w") as f:
            f.write("email,first_name,company\n")
            for i in range(a.leads):
                f.write(f"lead{i}@example.com,Lead{i},Company {i % 97}\n")
        e = env()
        # Size of a real rendered message.
        eml = subprocess.run([binary, "preview", "ebook-nurture", "--step", "welcome", "--format", "eml"], cwd=work, env=e, capture_output=True, text=True, check=True).stdout
        size = len(eml.encode())
        subprocess.run([binary, "contacts", "import", "leads.csv", "--event", "lead.captured"], cwd=work, env=e, check=True, capture_output=True)
        # The import's events carry no `source`, so tell the trigger they came from the ebook form.
        subprocess.run(["python3", "-c", "import sqlite3; c=sqlite3.connect('nurture.db'); c.execute(\"UPDATE events SET properties='{\\\"source\\\":\\\"ebook\\\"}'\"); c.commit()"], cwd=work, check=True)
        e["NURTURE_SMTP_URL"] = f"smtp://127.0.0.1:{port}"
        if a.dkim:
            key = os.path.join(work, "dkim.pem")
            gen = ["genrsa", "-out", key, "2048"] if a.dkim == "rsa" else ["genpkey", "-algorithm", "ed25519", "-out", key]
            subprocess.run(["openssl", *gen], check=True, capture_output=True)
            e.update(NURTURE_DKIM_DOMAIN="leadcraft.example", NURTURE_DKIM_SELECTOR="nurture", NURTURE_DKIM_PRIVATE_KEY=key)
        db = os.path.join(work, "nurture.db")
        shutil.copy(db, db + ".imported")
        if a.trigger_cost:
            bare_copy(db + ".imported", db + ".bare")
        # This machine is noisy (a VM sharing its host): both sides run --repeat times,
        # alternating, from the same imported database, and the medians are compared.
        ticks, bare, refs, out = [], [], [], ""

        def tick(source):
            for suffix in ("-wal", "-shm"):
                if os.path.exists(db + suffix):
                    os.remove(db + suffix)
            shutil.copy(source, db)
            t = time.perf_counter()
            said = subprocess.run([binary, "tick"], cwd=work, env=e, capture_output=True, text=True, check=True).stdout.strip()
            if f" {a.leads} sent," not in said:
                sys.exit(f"not every lead got its email: {said}")
            return time.perf_counter() - t, said

        for run in range(a.repeat):
            took, out = tick(db + ".imported")
            ticks.append(took)
            if a.trigger_cost:
                bare.append(tick(db + ".bare")[0])
            t = time.perf_counter()
            subprocess.run(["smtp-source", "-d", "-s", "10", "-l", str(size), "-m", str(a.leads), "-f", "bench@example.com", "-t", "sink@example.com", f"127.0.0.1:{port}"], check=True, capture_output=True)
            refs.append(time.perf_counter() - t)
        dt, dt2 = statistics.median(ticks), statistics.median(refs)
        nurture_rate, ref = a.leads / dt, a.leads / dt2
        spread = lambda xs: ", ".join(f"{a.leads / x:,.0f}" for x in sorted(xs, reverse=True))
        signed = {"rsa": ", DKIM rsa-sha256 (2048-bit key)", "ed25519": ", DKIM ed25519-sha256"}.get(a.dkim, "")
        print(f"nurture:     {a.leads} leads enrolled, rendered{signed} and sent by one tick: median {dt:.2f}s = {nurture_rate:,.0f} msg/s ({size} byte messages; runs: {spread(ticks)})")
        print(f"             {out}")
        if a.trigger_cost:
            db2 = statistics.median(bare)
            print(f"             without the dashboard counters' triggers (0011, 0012): median {db2:.2f}s = {a.leads / db2:,.0f} msg/s "
                  f"(runs: {spread(bare)}); the triggers cost {(dt - db2) / dt:.0%} of the tick, {(dt - db2) / a.leads * 1e6:.0f} µs per message")
        # The largest child: a tick (the import and preview before it are smaller).
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        print(f"             peak RSS while sending: {peak} MB")
        print(f"smtp-source: {a.leads} messages of {size} bytes (unsigned), 10 sessions: median {dt2:.2f}s = {ref:,.0f} msg/s (runs: {spread(refs)})")
        what = ("DKIM " + a.dkim if a.dkim else "unsigned") + (", derived text" if a.derived_text else "")
        print(f"ratio:       nurture ({what}, {a.leads} leads) / smtp-source = {nurture_rate / ref:.2f} (medians of {a.repeat} alternating runs)")
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
