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

#[cfg(test)]
mod tests {
    use super::redact;

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
