//! The dashboard (SPEC §12) in a real headless Chromium against the real `nurture run`, on a
//! database whose enrollments were made by the CLI: four leads enrolled by events, ticks
//! that send them the welcome email and the nudge (into the outbox), one open through the
//! tracking pixel, one purchase that reaches the goal. The pages must show exactly those numbers. Screenshots
//! of each page are saved as test artifacts (`target/test-artifacts/`).

use nurture_testkit::{Browser, BrowserOptions};

use crate::support::{Daemon, Project};

const CAMPAIGN: &str = r#"name: Welcome series
from: "Ana <ana@leadcraft.example>"
trigger: { event: lead.captured }
exit_when: { event: purchase.completed }
tracking: { opens: true, clicks: true }
steps:
  - id: welcome
    send: welcome
    subject: "Welcome {{default contact.first_name \"there\"}}"
  - id: nudge
    after: 2d
    when: { not: { clicked: welcome } }
    send: welcome
    subject: Did you see it?
  - id: mark
    tag: [nurtured]
"#;

const TEMPLATE: &str = r#"<p>Hi {{default contact.first_name "there"}}, here is
<a href="https://leadcraft.example/guide">the guide</a>.</p>
<p><a href="{{unsubscribe_url}}">Unsubscribe</a></p>"#;

const PASSWORD: &str = "dashboard-pass-123";

fn env_for(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("NURTURE_BASE_URL", format!("http://127.0.0.1:{port}")),
        ("NURTURE_LISTEN", format!("127.0.0.1:{port}")),
        (
            "NURTURE_SECRET",
            "a-test-signing-secret-that-is-long-enough".into(),
        ),
    ]
}

/// A raw HTTP GET; the status code.
fn get_status(port: u16, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // The pixel is a GIF: read bytes, not text.
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The path of the first `/o/TOKEN` open pixel in an `.eml` (quoted-printable HTML).
fn open_pixel(eml: &str) -> String {
    let unfolded = eml
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let at = unfolded.find("/o/").expect("an open pixel");
    let token: String = unfolded[at + 3..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    format!("/o/{token}")
}

/// The real time: the daemon's funnel window is measured from it, so the test's enrollments
/// must be recent in wall-clock terms.
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn cell(b: &mut Browser, row: &str, col: &str) -> String {
    b.text(&format!("{row} [data-col={col}]"))
        .trim()
        .to_string()
}

#[test]
fn the_dashboard_shows_a_campaigns_real_numbers_in_chromium() {
    // Arrange: leads enrolled by the CLI, sent their emails by ticks, one of them buys.
    let p = Project::new();
    p.file("campaigns/welcome.yaml", CAMPAIGN)
        .file("templates/welcome.html.hbs", TEMPLATE);
    let port = nurture_testkit::free_port();
    let cli = |args: &[&str]| {
        let mut run = p.nurture(args);
        for (k, v) in env_for(port) {
            run = run.env(k, &v);
        }
        run.output().success()
    };
    for who in ["ana", "ben", "cleo"] {
        cli(&[
            "event",
            &format!("{who}@leads.example"),
            "lead.captured",
            "--attr",
            "first_name=Lee",
        ]);
    }
    cli(&["tick"]);
    assert_eq!(
        std::fs::read_dir(p.path().join("outbox")).unwrap().count(),
        3
    );
    // Ben buys; Dan arrives. Three days later (the nudge is due) Ben has reached the goal,
    // Ana and Cleo get the nudge and complete, Dan gets the welcome and waits for the nudge.
    cli(&["event", "ben@leads.example", "purchase.completed"]);
    cli(&["event", "dan@leads.example", "lead.captured"]);
    let later = (wall_clock() + chrono::Duration::days(3)).to_rfc3339();
    cli(&["tick", "--now", &later]);
    cli(&["tick", "--now", &later]);
    let outbox: Vec<_> = std::fs::read_dir(p.path().join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(outbox.len(), 6, "four welcome emails and two nudges");

    // Without a password the daemon serves no dashboard at all.
    {
        let d = Daemon::start_on(&p, port, &[]);
        assert_eq!(get_status(d.port, "/dashboard"), 404);
    }

    let d = Daemon::start_on(&p, port, &[("NURTURE_DASHBOARD_PASSWORD", PASSWORD)]);
    // Ana opens her email: the real tracking pixel, served by the daemon.
    let ana = outbox
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .find(|m| m.contains("ana@leads.example") && m.contains("Subject: Welcome"))
        .expect("ana's email");
    assert_eq!(get_status(d.port, &open_pixel(&ana)), 200);

    let base = format!("http://127.0.0.1:{}", d.port);
    let mut b = Browser::launch_with(BrowserOptions {
        javascript: true,
        timezone: "Europe/Berlin".into(),
    });

    // No cookie: the login page, whatever page was asked for.
    b.goto(&format!("{base}/dashboard/campaigns/welcome"));
    assert!(b.title().starts_with("Sign in"), "{}", b.title());
    assert_eq!(b.count("svg"), 0);
    // A wrong password is refused.
    b.fill("#password", "not-it");
    assert_eq!(b.click("button[type=submit]"), Some(401));
    assert!(b.text(".error").contains("The password is wrong"));
    assert!(b.cookies().is_empty(), "{:?}", b.cookies());
    b.screenshot("dashboard-login-refused");
    // The right one lands on the page first asked for, with a strict HttpOnly cookie.
    b.fill("#password", PASSWORD);
    b.click("button[type=submit]");
    assert!(
        b.url().ends_with("/dashboard/campaigns/welcome"),
        "{}",
        b.url()
    );
    let cookies = b.cookies();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert_eq!(cookies[0]["name"], "nurture_session");
    assert_eq!(cookies[0]["httpOnly"], true);
    assert_eq!(cookies[0]["sameSite"], "Strict");
    assert_eq!(cookies[0]["secure"], false, "plain http base URL");

    // The campaign page: the flow picture with the counts of each step.
    assert_eq!(b.count("figure.flow svg g.step"), 3);
    let step = |b: &mut Browser, id: &str, what: &str| {
        b.attribute(
            &format!("svg g.step[data-step={id}]"),
            &format!("data-{what}"),
        )
        .unwrap_or_default()
    };
    for (id, what, n) in [
        ("welcome", "sent", "4"),
        ("welcome", "opened", "1"),
        ("welcome", "clicked", "0"),
        ("welcome", "waiting", "0"),
        ("nudge", "sent", "2"),
        ("nudge", "waiting", "1"),
        ("nudge", "converted", "1"),
        ("mark", "waiting", "0"),
    ] {
        assert_eq!(step(&mut b, id, what), n, "{id} {what}");
    }
    let svg = b.text("figure.flow");
    for label in [
        "wait 2d",
        "else skip",
        "enrolled by the event lead.captured",
    ] {
        assert!(svg.contains(label), "{label} not in the flow: {svg}");
    }
    // The header: Dan waits for the nudge, Ana and Cleo completed, Ben reached the goal.
    let totals = b.text("#totals");
    assert!(
        totals.contains("enrolled 4 · active 1 · completed 2 · reached goal 1"),
        "{totals}"
    );
    assert_eq!(cell(&mut b, "#steps tr[data-step=welcome]", "sent"), "4");
    assert_eq!(cell(&mut b, "#steps tr[data-step=nudge]", "waiting"), "1");
    // The funnel of the last 30 days: 4 enrolled, 4 emailed, 1 opened, 0 clicked, 1 goal.
    for (stage, n) in [
        ("enrolled", "4"),
        ("emailed", "4"),
        ("opened", "1"),
        ("clicked", "0"),
        ("goal", "1"),
    ] {
        assert_eq!(
            b.text(&format!("#funnel-table tr[data-stage={stage}] td.n"))
                .trim(),
            n,
            "{stage}"
        );
    }
    assert_eq!(b.text("#conversion"), "25.0%");
    // Times are the viewer's (the script ran: Berlin), and the page says so.
    assert_eq!(b.attribute("main time", "data-local").as_deref(), Some("1"));
    assert!(
        b.text("footer").contains("Europe/Berlin"),
        "{}",
        b.text("footer")
    );
    b.screenshot("dashboard-campaign");

    // The campaigns list.
    b.goto(&format!("{base}/dashboard"));
    let row = "#campaigns tr[data-campaign=welcome]";
    assert_eq!(cell(&mut b, row, "enrolled"), "4");
    assert_eq!(cell(&mut b, row, "active"), "1");
    assert_eq!(cell(&mut b, row, "goal"), "1");
    assert_eq!(cell(&mut b, row, "completed"), "2");
    assert!(b.text(row).contains("active"));
    b.screenshot("dashboard-campaigns");

    // Contact search by prefix, then a contact's explain page.
    b.goto(&format!("{base}/dashboard/contacts"));
    b.fill("#q", "BEN@");
    b.click("main button[type=submit]");
    assert_eq!(b.count("#results tbody tr"), 1);
    b.click("#results a");
    assert!(b.title().starts_with("ben@leads.example"), "{}", b.title());
    let explain = b.text("#explain");
    assert!(explain.contains("welcome"), "{explain}");
    assert!(explain.contains("goal"), "{explain}");
    b.screenshot("dashboard-contact");
    b.goto(&format!("{base}/dashboard/contacts?q=zed"));
    assert!(b.text("#no-results").contains("zed"));

    b.goto(&format!("{base}/dashboard/forms"));
    assert!(b.text("#no-forms").starts_with("No forms yet"));
    b.screenshot("dashboard-forms");

    // Signing out ends the session.
    b.click("header button[type=submit]");
    b.goto(&format!("{base}/dashboard/forms"));
    assert!(b.title().starts_with("Sign in"), "{}", b.title());
    drop(b);

    // Without JavaScript everything still works, and times are UTC, labelled as such.
    let mut b = Browser::launch_with(BrowserOptions {
        javascript: false,
        timezone: "Europe/Berlin".into(),
    });
    b.goto(&format!("{base}/dashboard"));
    b.fill("#password", PASSWORD);
    b.click("button[type=submit]");
    assert_eq!(
        cell(&mut b, "#campaigns tr[data-campaign=welcome]", "enrolled"),
        "4"
    );
    b.goto(&format!("{base}/dashboard/campaigns/welcome"));
    assert!(
        b.text("main time").ends_with(" UTC"),
        "{}",
        b.text("main time")
    );
    assert_eq!(b.text("footer").trim(), "Times are shown in UTC.");
    b.screenshot("dashboard-campaign-no-js");
}
