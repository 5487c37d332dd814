//! The dashboard's pages. Each reads in one read-only transaction through the bounded,
//! indexed queries of `nurture_store` (module `dashboard` there) and renders plain HTML.
//!
//! The five pages stay in one module: each is a handler of the same shape (one read, then
//! the HTML), and the route table in `dashboard/mod.rs` already says which is which.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use nurture_campaign::Campaign;
use nurture_store::{CampaignRow, Funnel};

use super::flow::{self, StepCounts};
use super::{Nav, esc, page, time, unavailable};
use crate::AppState;

/// Contacts per page of search results.
const PAGE_SIZE: i64 = 50;
/// The funnel's default window, and its bounds.
const DEFAULT_DAYS: i64 = 30;
const MAX_DAYS: i64 = 3650;

fn percent(part: i64, whole: i64) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn definition(row: &CampaignRow) -> Option<Campaign> {
    serde_json::from_str(&row.definition).ok()
}

/// `GET /dashboard`: every campaign with its status and totals.
pub(crate) async fn campaigns(State(state): State<AppState>) -> Response {
    let read = async {
        let mut tx = state.store.begin_read().await?;
        let rows = tx.campaigns().await?;
        let totals = tx.campaign_totals().await?;
        tx.commit().await?;
        Ok::<_, nurture_store::StoreError>((rows, totals))
    };
    let (rows, totals) = match read.await {
        Ok(r) => r,
        Err(e) => return unavailable(&e),
    };
    let mut body = String::from("<h1>Campaigns</h1>");
    if rows.is_empty() {
        body.push_str(
            "<p>No campaign is in use yet: campaigns are stored at the first <code>nurture tick</code> or <code>run</code>.</p>",
        );
        return page(StatusCode::OK, "Campaigns", Nav::Campaigns, &body);
    }
    body.push_str(
        "<table id=\"campaigns\"><caption>Enrollments per campaign, all time</caption><thead><tr>\
         <th scope=\"col\">Campaign</th><th scope=\"col\">Status</th><th scope=\"col\" class=\"n\">Enrolled</th>\
         <th scope=\"col\" class=\"n\">Active</th><th scope=\"col\" class=\"n\">Completed</th>\
         <th scope=\"col\" class=\"n\">Reached goal</th><th scope=\"col\" class=\"n\">Exited</th>\
         <th scope=\"col\" class=\"n\">Conversion</th></tr></thead><tbody>",
    );
    for row in &rows {
        let t = totals.get(&row.id).cloned().unwrap_or_default();
        let name = definition(row).map_or_else(|| row.id.clone(), |c| c.name);
        let _ = write!(
            body,
            "<tr data-campaign=\"{id}\"><th scope=\"row\"><a href=\"/dashboard/campaigns/{id}\">{name}</a> <span class=\"muted\">{id}</span></th>\
             <td>{status}</td><td class=\"n\" data-col=\"enrolled\">{}</td><td class=\"n\" data-col=\"active\">{}</td>\
             <td class=\"n\" data-col=\"completed\">{}</td><td class=\"n\" data-col=\"goal\">{}</td>\
             <td class=\"n\" data-col=\"exited\">{}</td><td class=\"n\">{}</td></tr>",
            t.enrolled,
            t.active,
            t.completed,
            t.goal,
            t.exited,
            percent(t.goal, t.enrolled),
            id = esc(&row.id),
            name = esc(&name),
            status = esc(&row.status),
        );
    }
    body.push_str("</tbody></table>");
    page(StatusCode::OK, "Campaigns", Nav::Campaigns, &body)
}

/// The query of the campaign page.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct CampaignQuery {
    days: Option<String>,
}

/// `GET /dashboard/campaigns/ID?days=N`: the flow with counts per step, a table of the same
/// counts, and the funnel of the contacts enrolled in the last N days.
pub(crate) async fn campaign(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<CampaignQuery>,
) -> Response {
    let days = query
        .days
        .as_deref()
        .and_then(|d| d.trim().parse::<i64>().ok())
        .unwrap_or(DEFAULT_DAYS)
        .clamp(1, MAX_DAYS);
    let now = crate::now_ms();
    // Whole UTC days: today and the `days - 1` before it (the funnel is counted per day).
    let since = (now.div_euclid(86_400_000) - (days - 1)) * 86_400_000;
    let read = async {
        let mut tx = state.store.begin_read().await?;
        let row = tx.campaigns().await?.into_iter().find(|r| r.id == id);
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let totals = tx.campaign_total(&id).await?;
        let steps = tx.step_totals(&id).await?;
        let waiting = tx.waiting_at_steps(&id).await?;
        let goals = tx.goals_by_step(&id).await?;
        let funnel = tx.funnel(&id, since).await?;
        tx.commit().await?;
        Ok::<_, nurture_store::StoreError>(Some((row, totals, steps, waiting, goals, funnel)))
    };
    let (row, totals, steps, waiting, goals, funnel) = match read.await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "No such campaign",
                Nav::Campaigns,
                &format!(
                    "<h1>No campaign <code>{}</code></h1><p><a href=\"/dashboard\">All campaigns</a></p>",
                    esc(&id)
                ),
            );
        }
        Err(e) => return unavailable(&e),
    };
    let Some(c) = definition(&row) else {
        return page(
            StatusCode::OK,
            &id,
            Nav::Campaigns,
            &format!(
                "<h1>{}</h1><p>The stored version of this campaign cannot be read by this version of nurture.</p>",
                esc(&id)
            ),
        );
    };
    let mut counts: HashMap<String, StepCounts> = HashMap::new();
    for (step, s) in steps {
        let e = counts.entry(step).or_default();
        e.sent = s.sent;
        e.opened = s.opened;
        e.clicked = s.clicked;
    }
    for (step, n) in waiting {
        counts.entry(step).or_default().waiting = n;
    }
    for (step, n) in goals {
        counts.entry(step).or_default().converted = n;
    }

    let mut body = format!(
        "<h1>{} <span class=\"muted\">{}</span></h1>\
         <p id=\"totals\">Status: <strong>{}</strong> · enrolled {} · active {} · completed {} · reached goal {}</p>\
         <h2 id=\"flow\">Flow</h2><figure class=\"flow\" aria-labelledby=\"flow\">{}</figure>",
        esc(&c.name),
        esc(&row.id),
        esc(&row.status),
        totals.enrolled,
        totals.active,
        totals.completed,
        totals.goal,
        flow::svg(&c, &counts)
    );
    body.push_str(
        "<table id=\"steps\"><caption>Per step, all time (waiting: now)</caption><thead><tr><th scope=\"col\">Step</th>\
         <th scope=\"col\">Action</th><th scope=\"col\" class=\"n\">Waiting</th><th scope=\"col\" class=\"n\">Sent</th>\
         <th scope=\"col\" class=\"n\">Opened</th><th scope=\"col\" class=\"n\">Clicked</th>\
         <th scope=\"col\" class=\"n\">Converted</th></tr></thead><tbody>",
    );
    for step in &c.steps {
        let n = counts.get(step.id.as_str()).copied().unwrap_or_default();
        let _ = write!(
            body,
            "<tr data-step=\"{id}\"><th scope=\"row\">{id}</th><td>{}</td><td class=\"n\" data-col=\"waiting\">{}</td>\
             <td class=\"n\" data-col=\"sent\">{}</td><td class=\"n\" data-col=\"opened\">{}</td>\
             <td class=\"n\" data-col=\"clicked\">{}</td><td class=\"n\" data-col=\"converted\">{}</td></tr>",
            step.action.kind(),
            n.waiting,
            n.sent,
            n.opened,
            n.clicked,
            n.converted,
            id = esc(step.id.as_str()),
        );
    }
    body.push_str("</tbody></table>");
    body.push_str(&funnel_html(&row.id, &funnel, days, since));
    page(StatusCode::OK, &c.name, Nav::Campaigns, &body)
}

fn funnel_html(id: &str, f: &Funnel, days: i64, since: i64) -> String {
    let mut out = format!(
        "<h2 id=\"funnel\">Funnel: contacts enrolled in the last {days} days</h2><p class=\"muted\">Whole UTC days: today and the {} before it.</p>\
         <form method=\"get\" action=\"/dashboard/campaigns/{}#funnel\" class=\"search\">\
         <div><label for=\"days\">Window (days)</label><input id=\"days\" name=\"days\" type=\"number\" min=\"1\" max=\"{MAX_DAYS}\" value=\"{days}\"></div>\
         <button type=\"submit\">Show</button></form>\
         <p>Since {}. Conversion rate (enrolled → goal): <strong id=\"conversion\">{}</strong></p>\
         <table id=\"funnel-table\"><caption>Funnel from enrollment to goal</caption><thead><tr><th scope=\"col\">Stage</th>\
         <th scope=\"col\" class=\"n\">Contacts</th><th scope=\"col\" class=\"n\">Of enrolled</th><th scope=\"col\" style=\"width:40%\"><span class=\"muted\">share</span></th></tr></thead><tbody>",
        days - 1,
        esc(id),
        time(since),
        percent(f.goal, f.enrolled)
    );
    for (key, label, n) in [
        ("enrolled", "Enrolled", f.enrolled),
        ("emailed", "Sent an email", f.emailed),
        ("opened", "Opened an email", f.opened),
        ("clicked", "Clicked a link", f.clicked),
        ("goal", "Reached the goal", f.goal),
    ] {
        let width = if f.enrolled == 0 {
            0.0
        } else {
            n as f64 * 100.0 / f.enrolled as f64
        };
        let _ = write!(
            out,
            "<tr data-stage=\"{key}\"><th scope=\"row\">{label}</th><td class=\"n\">{n}</td><td class=\"n\">{}</td>\
             <td><div class=\"bar\" style=\"width:{width:.1}%\"></div></td></tr>",
            percent(n, f.enrolled)
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// The query of the contact search.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct SearchQuery {
    q: Option<String>,
    after: Option<String>,
}

/// `GET /dashboard/contacts?q=PREFIX&after=KEY`: contacts whose address starts with the
/// prefix, 50 a page.
pub(crate) async fn contacts(
    State(state): State<AppState>,
    Query(query): Query<SearchQuery>,
) -> Response {
    let q = query.q.unwrap_or_default().trim().to_string();
    let mut body = format!(
        "<h1>Contacts</h1><form method=\"get\" action=\"/dashboard/contacts\" class=\"search\" role=\"search\">\
         <div style=\"flex:1\"><label for=\"q\">Email address starts with</label>\
         <input id=\"q\" name=\"q\" type=\"search\" value=\"{}\" autocomplete=\"off\"></div>\
         <button type=\"submit\">Search</button></form>",
        esc(&q)
    );
    if q.is_empty() {
        body.push_str("<p class=\"muted\">Type the beginning of an address, for example <code>ana@</code> or a whole address.</p>");
        return page(StatusCode::OK, "Contacts", Nav::Contacts, &body);
    }
    let read = async {
        let mut tx = state.store.begin_read().await?;
        let hits = tx
            .search_contacts(&q, query.after.as_deref(), PAGE_SIZE + 1)
            .await?;
        tx.commit().await?;
        Ok::<_, nurture_store::StoreError>(hits)
    };
    let mut hits = match read.await {
        Ok(h) => h,
        Err(e) => return unavailable(&e),
    };
    let more = hits.len() as i64 > PAGE_SIZE;
    hits.truncate(PAGE_SIZE as usize);
    if hits.is_empty() {
        let _ = write!(
            body,
            "<p id=\"no-results\">No contact's address starts with <code>{}</code>.</p>",
            esc(&q)
        );
        return page(StatusCode::OK, "Contacts", Nav::Contacts, &body);
    }
    body.push_str(
        "<table id=\"results\"><caption>Matching contacts</caption><thead><tr><th scope=\"col\">Email</th>\
         <th scope=\"col\">Status</th><th scope=\"col\">Contact since</th></tr></thead><tbody>",
    );
    for h in &hits {
        let _ = write!(
            body,
            "<tr><th scope=\"row\"><a href=\"/dashboard/contacts/{}\">{}</a></th><td>{}</td><td>{}</td></tr>",
            h.id,
            esc(&h.email),
            h.status.as_str(),
            time(h.created_at)
        );
    }
    body.push_str("</tbody></table>");
    if more && let Some(last) = hits.last() {
        let _ = write!(
            body,
            "<p><a rel=\"next\" href=\"/dashboard/contacts?q={}&amp;after={}\">Next {PAGE_SIZE} contacts</a></p>",
            url_encode(&q),
            url_encode(&last.key)
        );
    }
    page(StatusCode::OK, "Contacts", Nav::Contacts, &body)
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `GET /dashboard/contacts/ID`: what `nurture explain` says about the contact.
pub(crate) async fn contact(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let missing = || {
        page(
            StatusCode::NOT_FOUND,
            "No such contact",
            Nav::Contacts,
            "<h1>No such contact</h1><p><a href=\"/dashboard/contacts\">Search contacts</a></p>",
        )
    };
    let Ok(id) = id.parse::<i64>() else {
        return missing();
    };
    let read = async {
        let mut tx = state.store.begin_read().await?;
        let Some(contact) = tx.contact(id).await? else {
            tx.commit().await?;
            return Ok(None);
        };
        let lines =
            nurture_scheduler::explain(&mut tx, &contact.email, None, crate::now_ms()).await;
        tx.commit().await?;
        Ok(Some((contact, lines)))
    };
    let (contact, lines) = match read.await {
        Ok(Some(r)) => r,
        Ok(None) => return missing(),
        Err(e) => return unavailable(&e),
    };
    let lines = match lines {
        Ok(l) => l,
        Err(nurture_scheduler::EngineError::Store(e)) => return unavailable(&e),
        Err(_) => return missing(),
    };
    let body = format!(
        "<h1>{}</h1><p>Status: <strong>{}</strong> · contact since {}</p>\
         <h2>Explain</h2><p class=\"muted\">Why this contact got, or did not get, each step (the same as <code>nurture explain {}</code>).</p>\
         <pre id=\"explain\">{}</pre>",
        esc(&contact.email),
        contact.status.as_str(),
        time(contact.created_at),
        esc(&contact.email),
        with_times(&lines.join("\n"))
    );
    page(StatusCode::OK, &contact.email, Nav::Contacts, &body)
}

/// Escapes `text` and wraps each `YYYY-MM-DD HH:MM UTC` in it in a `<time>`, so the script
/// shows explain's times in the viewer's zone too.
fn with_times(text: &str) -> String {
    const LEN: usize = "2026-01-01 00:00 UTC".len();
    let shape = |s: &[u8]| {
        s.len() == LEN
            && s.iter().enumerate().all(|(i, b)| match i {
                4 | 7 => *b == b'-',
                10 | 16 => *b == b' ',
                13 => *b == b':',
                17..=19 => true,
                _ => b.is_ascii_digit(),
            })
            && &s[17..] == b"UTC"
    };
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 64);
    let mut plain = 0;
    let mut i = 0;
    while i + LEN <= bytes.len() {
        if shape(&bytes[i..i + LEN]) {
            out.push_str(&esc(&text[plain..i]));
            let stamp = &text[i..i + 16];
            let iso = format!("{}T{}:00Z", &stamp[..10], &stamp[11..]);
            let _ = write!(out, "<time datetime=\"{iso}\">{stamp} UTC</time>");
            i += LEN;
            plain = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&esc(&text[plain..]));
    out
}

/// `GET /dashboard/forms`: each form served and each form with stored submissions, with
/// submissions, confirmations, confirmation emails sent and refusals by reason.
pub(crate) async fn forms(State(state): State<AppState>) -> Response {
    let read = async {
        let mut tx = state.store.begin_read().await?;
        let counts = tx.form_counts().await?;
        tx.commit().await?;
        Ok::<_, nurture_store::StoreError>(counts)
    };
    let mut counts = match read.await {
        Ok(c) => c,
        Err(e) => return unavailable(&e),
    };
    for id in state.forms.ids() {
        if !counts.iter().any(|c| c.form == id) {
            counts.push(nurture_store::FormCounts {
                form: id,
                ..Default::default()
            });
        }
    }
    counts.sort_by(|a, b| a.form.cmp(&b.form));
    let mut body = String::from("<h1>Forms</h1>");
    if counts.is_empty() {
        body.push_str(
            "<p id=\"no-forms\">No forms yet: put them in <code>forms/*.yaml</code>.</p>",
        );
        return page(StatusCode::OK, "Forms", Nav::Forms, &body);
    }
    body.push_str(
        "<table id=\"forms\"><caption>Submissions per form, all time</caption><thead><tr>\
         <th scope=\"col\">Form</th><th scope=\"col\" class=\"n\">Submissions</th>\
         <th scope=\"col\" class=\"n\">Confirmed</th><th scope=\"col\" class=\"n\">Confirmation rate</th>\
         <th scope=\"col\" class=\"n\">Confirmation emails sent</th><th scope=\"col\">Refused</th></tr></thead><tbody>",
    );
    for c in &counts {
        let rate = if c.submissions > 0 {
            format!(
                "{:.1}%",
                100.0 * c.confirmations as f64 / c.submissions as f64
            )
        } else {
            "–".into()
        };
        let refused = if c.rejections.is_empty() {
            "none".to_string()
        } else {
            c.rejections
                .iter()
                .map(|(reason, n)| format!("{} {n}", esc(reason)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(
            body,
            "<tr><th scope=\"row\"><a href=\"/f/{id}\">{id}</a></th><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{rate}</td><td class=\"n\">{}</td><td>{refused}</td></tr>",
            c.submissions,
            c.confirmations,
            c.mailed,
            id = esc(&c.form),
        );
    }
    body.push_str("</tbody></table>");
    page(StatusCode::OK, "Forms", Nav::Forms, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_times_become_time_elements_and_the_rest_is_escaped() {
        let html = with_times("a <b> 2026-12-03 09:05 UTC x 2026-12-03 09:05 UT");
        assert_eq!(
            html,
            "a &lt;b&gt; <time datetime=\"2026-12-03T09:05:00Z\">2026-12-03 09:05 UTC</time> x 2026-12-03 09:05 UT"
        );
    }

    #[test]
    fn search_links_encode_the_query() {
        assert_eq!(url_encode("a+b@x.example"), "a%2Bb%40x.example");
    }
}
