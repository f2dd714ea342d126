//! What a store's failure means: one line naming the object and the store's own code and
//! message (never a request, a signature or a response body beyond those), and whether a
//! retry of the same command can succeed.

use super::Error;

/// The clients' own hosts for credentials when the environment has none.
const METADATA_HOSTS: [&str; 2] = ["169.254.169.254", "metadata.google.internal"];

/// Error codes (S3's and Azure's) of a failure that a later retry can get past.
const TRANSIENT_CODES: [&str; 8] = [
    "RequestTimeout",
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
    "ServerBusy",
    "OperationTimedOut",
    "InternalServerError",
];

/// A builder's refusal: a missing or malformed setting in the environment.
pub(crate) fn config_error(shown: &str, e: object_store::Error) -> Error {
    Error::Store {
        uri: shown.to_string(),
        what: format!("the store cannot be configured from the environment: {e}"),
        transient: false,
    }
}

/// `e` about the object `shown`, classified. Not transient: the store's final answers (not
/// found, denied, bad credentials, a 3xx or 4xx other than 408/429, e.g. a missing bucket or
/// the wrong region) and no credentials at all; transient: throttling, timeouts and server
/// errors after the client's retries (by status or by the store's code), and connections
/// that failed.
pub(crate) fn store_error(shown: &str, e: &object_store::Error) -> Error {
    use object_store::Error as E;
    let text = source_text(e);
    let no_credentials = METADATA_HOSTS.iter().any(|host| text.contains(host));
    let code = between(&text, "<Code>", "</Code>");
    let transient = match e {
        E::NotFound { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotModified { .. }
        | E::NotImplemented { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. } => false,
        _ if no_credentials => false,
        _ if code
            .as_deref()
            .is_some_and(|c| TRANSIENT_CODES.contains(&c)) =>
        {
            true
        }
        _ if text.to_ascii_lowercase().contains("redirect") => false,
        _ => !final_status(&text),
    };
    let what = match e {
        E::NotFound { .. } => "not found".to_string(),
        E::PermissionDenied { .. } => format!("permission denied: {}", concise(&text)),
        E::Unauthenticated { .. } => format!("the credentials were refused: {}", concise(&text)),
        _ => concise(&text),
    };
    // Off a cloud machine the metadata service fails in words that do not say what is missing.
    let what = match no_credentials {
        true => format!(
            "no credentials: none in the environment (see `slaf-convert --help`) and the \
             machine's metadata service gave none ({what})"
        ),
        false => what,
    };
    Error::Store {
        uri: shown.to_string(),
        what,
        transient,
    }
}

/// The error and its causes on one line.
fn source_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// The text between the first `open` and the `close` after it.
fn between(text: &str, open: &str, close: &str) -> Option<String> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(text[start..start + len].trim().to_string())
}

/// A store's error on one line: the HTTP status and the store's own code and message where
/// its answer has them (S3 and Azure answer in XML; nothing else of the body, which can
/// echo the signed request), else the text with newlines folded and query strings cut.
fn concise(text: &str) -> String {
    let status = between(text, "status code: ", ":").filter(|s| s.len() < 40);
    match (status, between(text, "<Code>", "</Code>")) {
        (Some(status), Some(code)) => {
            let message = between(text, "<Message>", "</Message>").unwrap_or_default();
            // Azure appends its request id and time on lines of their own.
            let message = message.split("RequestId:").next().unwrap_or_default();
            one_line(&format!("the store answered {status}: {code}: {message}"))
        }
        // A body we cannot pick apart is left out: it may echo the signed request.
        _ => one_line(text.split('<').next().unwrap_or_default()),
    }
}

/// `text` on one line, each URL's query string (which can carry a signature) cut off.
fn one_line(text: &str) -> String {
    let words: Vec<&str> = text
        .split_whitespace()
        .map(|w| match w.contains("://") {
            true => w.split('?').next().unwrap_or(w),
            false => w,
        })
        .collect();
    words.join(" ")
}

/// An HTTP status 300-499 other than 408 (timeout) and 429 (throttled) in `text`: the
/// store's final answer.
fn final_status(text: &str) -> bool {
    text.match_indices("status code: ")
        .chain(text.match_indices("status: "))
        .filter_map(|(i, m)| text[i + m.len()..].get(..3)?.parse::<u16>().ok())
        .any(|code| (300..500).contains(&code) && code != 408 && code != 429)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_concise_messages_are_one_line() {
        let text = "Generic S3 error: Error performing list request: Error performing GET \
            http://h/nob?list-type=2 in 3ms - Server returned non-2xx status code: 404 Not \
            Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code><Message>The \
            specified bucket does not exist</Message></Error>";
        assert_eq!(
            concise(text),
            "the store answered 404 Not Found: NoSuchBucket: The specified bucket does not exist"
        );
        assert_eq!(concise("a\n  b"), "a b");
        let azure = "status code: 404 Not Found: <Code>ContainerNotFound</Code><Message>The \
            specified container does not exist.\nRequestId:79dd\nTime:2026</Message>";
        assert_eq!(
            concise(azure),
            "the store answered 404 Not Found: ContainerNotFound: The specified container does \
             not exist."
        );
        // An unparsed body (which may echo a signed request) and query strings are left out.
        let signed = "GET http://h/b/k?X-Amz-Signature=abc failed: <Error><CanonicalRequest>\
            x-amz-security-token:TOKEN</CanonicalRequest>";
        assert_eq!(concise(signed), "GET http://h/b/k failed:");
    }

    #[test]
    fn test_store_codes_decide_retries() {
        let transient = |text: &str| {
            let e = object_store::Error::Generic {
                store: "S3",
                source: text.to_string().into(),
            };
            match store_error("s3://b/k", &e) {
                Error::Store { transient, .. } => transient,
                other => panic!("{other}"),
            }
        };
        assert!(transient(
            "status code: 400 Bad Request: <Code>RequestTimeout</Code>"
        ));
        assert!(transient(
            "status code: 503 Slow Down: <Code>SlowDown</Code>"
        ));
        assert!(transient("error sending request: connection refused"));
        assert!(!transient(
            "status code: 301 Moved: <Code>PermanentRedirect</Code>"
        ));
        assert!(!transient(
            "Received redirect without LOCATION: wrong region?"
        ));
        assert!(!transient(
            "status code: 404 Not Found: <Code>NoSuchBucket</Code>"
        ));
        assert!(!transient(
            "PUT http://169.254.169.254/latest/api/token: refused"
        ));
    }

    #[test]
    fn test_status_classification() {
        assert!(final_status(
            "Server returned non-2xx status code: 403 Forbidden"
        ));
        assert!(final_status("status code: 301 Moved Permanently"));
        assert!(!final_status("status code: 503 Service Unavailable"));
        assert!(!final_status("status code: 429 Too Many Requests"));
        assert!(!final_status("error sending request: connection refused"));
    }
}
