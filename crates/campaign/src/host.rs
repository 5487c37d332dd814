//! Webhook URL hosts (SPEC §11): the host of an `http`/`https` URL and whether the
//! `webhook_hosts` allow-list admits it. `validate` checks a webhook step's URL with these and
//! the sender checks them again before it posts.

/// The host of an absolute `http`/`https` URL, lower case, without port or brackets.
pub fn url_host(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` is not an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "`{url}` carries a user name or password; webhook URLs may not (use `webhook_secret` to sign)"
        ));
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':'))
    {
        return Err(format!("`{url}` has no valid host"));
    }
    Ok(host.to_ascii_lowercase())
}

/// Whether `host` is allowed by `webhook_hosts`: an exact name, or `*.example.com` for any
/// name under it.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    allowed.iter().any(|a| {
        let a = a.trim().to_ascii_lowercase();
        match a.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => host == a,
        }
    })
}
