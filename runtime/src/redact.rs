//! Credentials kept out of what Kestrel prints. A URL's password (`scheme://user:password@host`)
//! is shown as `***` wherever a URL appears in a string: a source URI (a `cmd:` pipeline holds
//! its camera's `rtsp://` URL), an MQTT URL. Sources and sinks keep the real string to use and
//! show only this one, so logs, errors, the run summary and `/metrics` never carry a password.

use std::borrow::Cow;

/// `text` with the password of every `scheme://user:password@host` replaced by `***`; a user
/// without a password, and everything that is not a URL's user information, are unchanged.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut done = 0;
    let mut from = 0;
    while let Some(at) = text[from..].find("://") {
        let start = from + at + 3;
        // The authority: up to the path, query or fragment, or the end of the URL in a
        // command line (white space or a quote).
        let end = text[start..]
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'') || c.is_whitespace())
            .map_or(text.len(), |e| start + e);
        let authority = &text[start..end];
        if let Some(user_end) = authority.rfind('@') {
            if let Some(colon) = authority[..user_end].find(':') {
                out.push_str(&text[done..start + colon + 1]);
                out.push_str("***");
                done = start + user_end;
            }
        }
        from = end;
    }
    if done == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[done..]);
    Cow::Owned(out)
}

/// A URL whose user has no password yet (`scheme://user@host…`) with `password` added
/// (percent-encoded): how a password kept in a file of its own reaches an `rtsp://` source.
/// `None` when `url` is not such a URL (no user, or a password already).
pub fn with_password(url: &str, password: &str) -> Option<String> {
    let start = url.find("://")? + 3;
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |e| start + e);
    let at = start + url[start..end].rfind('@')?;
    if at == start || url[start..at].contains(':') {
        return None;
    }
    let mut out = String::with_capacity(url.len() + 3 * password.len() + 1);
    out.push_str(&url[..at]);
    out.push(':');
    for b in password.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(&url[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::{redact, with_password};

    #[test]
    fn a_password_joins_a_user_without_one() {
        assert_eq!(
            with_password("rtsp://viewer@10.0.0.2:554/s?x=1", "p@ss:w/rd").as_deref(),
            Some("rtsp://viewer:p%40ss%3Aw%2Frd@10.0.0.2:554/s?x=1")
        );
        let joined = with_password("rtsp://viewer@cam/s", "secret").unwrap();
        assert_eq!(redact(&joined), "rtsp://viewer:***@cam/s");
        assert_eq!(with_password("rtsp://cam/s", "x"), None, "no user");
        assert_eq!(
            with_password("rtsp://a:b@cam/s", "x"),
            None,
            "a password already"
        );
        assert_eq!(with_password("rtsp://@cam/s", "x"), None, "an empty user");
        assert_eq!(with_password("synthetic", "x"), None);
    }

    #[test]
    fn passwords_become_stars_and_nothing_else_changes() {
        let cases = [
            (
                "rtsp://cam:hunter2@10.0.0.7:554/stream1",
                "rtsp://cam:***@10.0.0.7:554/stream1",
            ),
            ("mqtt://u:p@broker/topic", "mqtt://u:***@broker/topic"),
            (
                "cmd:gst-launch-1.0 rtspsrc location=rtsp://a:b%40c@h/x ! fakesink",
                "cmd:gst-launch-1.0 rtspsrc location=rtsp://a:***@h/x ! fakesink",
            ),
            (
                "cmd:\"x 'rtsp://u:1@h' && y rtsp://v:2@k/p\"",
                "cmd:\"x 'rtsp://u:***@h' && y rtsp://v:***@k/p\"",
            ),
            ("rtsp://user@host/p", "rtsp://user@host/p"),
            ("rtsp://host:554/p", "rtsp://host:554/p"),
            ("synthetic", "synthetic"),
            ("file:/tmp/a:b@c.y4m", "file:/tmp/a:b@c.y4m"),
            ("http://u:pw@h", "http://u:***@h"),
        ];
        for (text, want) in cases {
            assert_eq!(redact(text), want, "{text}");
        }
    }
}
