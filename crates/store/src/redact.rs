//! [`redact`]: a database (or any) URL made fit for the log, its secrets hidden. It lives
//! with the store because the store is what knows database URLs.

/// A URL fit for the log: the userinfo (`user:pass@`) and the values of query parameters
/// that carry secrets (`password`, `pass`, `pwd`, `secret`, `token`, `key`) are hidden.
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &base[..s], &base[at + 1..]),
        _ => base.to_string(),
    };
    if let Some(q) = query {
        let secret = |k: &str| {
            let k = k.to_ascii_lowercase();
            [
                "password",
                "pass",
                "pwd",
                "secret",
                "token",
                "key",
                "sslpassword",
            ]
            .iter()
            .any(|s| k == *s || k.ends_with(&format!("_{s}")))
        };
        let parts: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if secret(k) => format!("{k}=…"),
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_userinfo_and_secret_query_values() {
        assert_eq!(
            redact("postgres://nurture:hunter2@db:5432/nurture"),
            "postgres://…@db:5432/nurture"
        );
        assert_eq!(
            redact("postgres://db/nurture?user=n&password=hunter2&sslmode=require"),
            "postgres://db/nurture?user=n&password=…&sslmode=require"
        );
        assert_eq!(
            redact("smtp://relay?tls=required&PASS=x&auth_token=y"),
            "smtp://relay?tls=required&PASS=…&auth_token=…"
        );
        assert_eq!(redact("sqlite://nurture.db"), "sqlite://nurture.db");
    }
}
