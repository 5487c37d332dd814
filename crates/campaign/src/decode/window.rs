//! The `send_window` of a campaign or a step: which days, which hours and in whose time zone
//! an email may go out. The policy that postpones a send lives in `crate::window`; this is
//! only its decoding.

use super::{Decoder, WINDOW_KEYS};
use crate::window::{Hours, SendWindow, WindowZone, parse_weekday};
use crate::yaml::{Kind, Node};

impl Decoder<'_> {
    pub(super) fn window(&mut self, node: &Node) -> Option<SendWindow> {
        let f = self.fields(node, "the send window", WINDOW_KEYS)?;
        let days = match f.get("days") {
            None => Some(vec![
                chrono::Weekday::Mon,
                chrono::Weekday::Tue,
                chrono::Weekday::Wed,
                chrono::Weekday::Thu,
                chrono::Weekday::Fri,
                chrono::Weekday::Sat,
                chrono::Weekday::Sun,
            ]),
            Some(n) => self.days(n),
        };
        let hours = match f.get("hours") {
            None => Some(None),
            Some(n) => self.string(n, "`hours`").and_then(|text| match Hours::parse(&text) {
                Ok(h) => Some(Some(h)),
                Err(e) => {
                    self.error(n.span, e, Some("write the hours as \"HH:MM-HH:MM\" in 24-hour time, e.g. \"09:00-17:00\"".into()));
                    None
                }
            }),
        };
        let timezone = match f.get("timezone") {
            None => Some(WindowZone::Contact),
            Some(n) if n.as_str() == Some("contact") => Some(WindowZone::Contact),
            Some(n) => self.timezone(n).map(WindowZone::Named),
        };
        Some(SendWindow {
            days: days?,
            hours: hours?,
            timezone: timezone?,
        })
    }

    fn days(&mut self, node: &Node) -> Option<Vec<chrono::Weekday>> {
        let names = self.string_list(node, "`days`")?;
        let mut out = Vec::new();
        let mut ok = true;
        let items: Vec<&Node> = match &node.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        for (name, item) in names.iter().zip(items) {
            match parse_weekday(name) {
                Some(d) if !out.contains(&d) => out.push(d),
                Some(_) => {}
                None => {
                    ok = false;
                    self.error(
                        item.span,
                        format!("`{name}` is not a day"),
                        Some("days are mon, tue, wed, thu, fri, sat, sun".into()),
                    );
                }
            }
        }
        ok.then_some(out)
    }
}
