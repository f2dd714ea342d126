//! Where a command's inputs and outputs are: a local path, or a URI naming an object store.
//!
//! Owns the one test of "is this text a URI" used on every path a user hands over (command
//! arguments, a manifest's `output` and input paths, a plan's). Without it `s3://bucket/x`
//! is a relative local path: `plan`, `shard` and `commit` created a directory named `s3:` and
//! exited 0. Where a command reads or writes object stores ([`STORE_SCHEMES`]: `convert`'s
//! INPUT and OUTPUT, `commit --dataset`) such a URI is let through; everywhere else, and for
//! any other scheme, a URI is refused with a message that names it without its secrets. A URI
//! carrying credentials (user info or a query string, e.g. a presigned or SAS URL) is refused
//! everywhere and never echoed whole.

use std::ffi::OsStr;
use std::path::Path;

/// URI schemes slaf-convert reads and writes (through `object_store`).
pub const STORE_SCHEMES: [&str; 3] = ["s3", "gs", "az"];

/// A URI found where a path was expected, as it may be shown: scheme, host and path only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUri {
    /// The scheme, lower-cased (`s3`, `gs`, `az`, ...).
    pub scheme: String,
    /// `scheme://host/path`, without user info or query.
    pub shown: String,
    /// The URI carried user info or a query string: credentials, or what may hold them.
    pub has_credentials: bool,
}

/// `text` as a URI (`scheme://...`), or `None` for a local path. A scheme is a letter then
/// letters, digits, `+`, `-` or `.` (RFC 3986); `./s3://x` and `s3:/x` are local paths.
pub fn store_uri(text: &OsStr) -> Option<StoreUri> {
    let text = text.to_str()?;
    let (scheme, rest) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let first_is_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    // One letter is a drive (`C://x`), not a scheme.
    if scheme.len() < 2
        || !first_is_letter
        || !chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return None;
    }
    let (before_query, query) = match rest.split_once(['?', '#']) {
        Some((before, _)) => (before, true),
        None => (rest, false),
    };
    // User info ends at the last '@' before the query, wherever the first '/' is: a secret
    // key may itself hold '/' (AWS's often do). A path with an '@' is flagged too, harmlessly.
    let (user_info, location) = match before_query.rsplit_once('@') {
        Some((_, after)) => (true, after),
        None => (false, before_query),
    };
    let scheme = scheme.to_ascii_lowercase();
    Some(StoreUri {
        shown: format!("{scheme}://{location}"),
        scheme,
        has_credentials: user_info || query,
    })
}

/// What is wrong with the bucket and path of a store URI, if anything: a bucket (or
/// container) and an object path must be named, without `.` or `..` segments (which would
/// name one object and, as a local path for its copy, another place).
pub fn check_store_path(uri: &StoreUri) -> std::result::Result<(), String> {
    let rest = uri.shown.split_once("://").map_or("", |(_, rest)| rest);
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("no bucket or container named".into());
    }
    if key.trim_matches('/').is_empty() {
        return Err("names a bucket, not an object or prefix in it".into());
    }
    if key.split('/').any(|seg| seg == "." || seg == "..") {
        return Err("'.' and '..' are not allowed in an object store path".into());
    }
    Ok(())
}

/// Refuse `path` (the `role` it plays, e.g. "OUTPUT" or "input") if it is a URI: this
/// argument must be a local path. The message names the URI without its credentials.
pub fn require_local(path: &Path, role: &str) -> std::result::Result<(), String> {
    check_path(path, role, false)
}

/// Check `path` (the `role` it plays) where a store URI may stand (`stores`) or may not:
/// a local path passes, a URI of [`STORE_SCHEMES`] passes where `stores`, and every other
/// URI, or one carrying credentials, is refused with a message naming it without them.
pub fn check_path(path: &Path, role: &str, stores: bool) -> std::result::Result<(), String> {
    let Some(uri) = store_uri(path.as_os_str()) else {
        return Ok(());
    };
    let supported = STORE_SCHEMES.contains(&uri.scheme.as_str());
    if stores && supported && !uri.has_credentials {
        return check_store_path(&uri).map_err(|what| format!("{role} {}: {what}", uri.shown));
    }
    Err(if uri.scheme == "file" {
        format!(
            "{role} {}: give the local path itself, not a file:// URI",
            uri.shown
        )
    } else if uri.has_credentials {
        format!(
            "{role} {}: refused, the URI carries credentials or a query string; give \
             credentials in the store's environment variables, never in a URI",
            uri.shown
        )
    } else if supported {
        format!(
            "{role} {}: must be a local path here (object stores are read and written where \
             inputs and datasets are named: convert's INPUT and OUTPUT, a manifest's inputs \
             and output, plan --dataset, commit --dataset, inspect); copy the data to a local \
             path (a workflow engine can stage it) and name that path",
            uri.shown
        )
    } else {
        format!(
            "{role} {}: {}:// is not an object store slaf-convert reads or writes (s3://, \
             gs://, az://)",
            uri.shown, uri.scheme
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> Option<StoreUri> {
        store_uri(OsStr::new(text))
    }

    #[test]
    fn test_store_uri_recognises_schemes_not_paths() {
        for text in [
            "s3://b/x.slaf",
            "gs://b/x",
            "az://c/x",
            "abfss://c@a/x",
            "S3://B/x",
        ] {
            assert!(uri(text).is_some(), "{text}");
        }
        for text in [
            "out.slaf",
            "C://x",
            "./s3://x",
            "s3:/x",
            "/data/s3://x",
            "1s3://x",
            "://x",
            "",
        ] {
            assert_eq!(uri(text), None, "{text}");
        }
        let u = uri("S3://bucket/a/b.slaf").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.shown.as_str()),
            ("s3", "s3://bucket/a/b.slaf")
        );
        assert!(!u.has_credentials);
    }

    #[test]
    fn test_credentials_are_flagged_and_never_shown() {
        let secret = "wJalrXUtnFEMI";
        for text in [
            format!("s3://AKIA:{secret}@bucket/x.slaf"),
            format!("s3://AKIA:{secret}/with+slash@bucket/x.slaf"),
            format!("s3://bucket/x.slaf?X-Amz-Signature={secret}"),
            format!("az://container/x?sv=2020&sig={secret}"),
            format!("gs://bucket/x#{secret}"),
        ] {
            let u = uri(&text).unwrap();
            assert!(u.has_credentials, "{text}");
            let message = require_local(Path::new(&text), "OUTPUT").unwrap_err();
            assert!(!message.contains(secret), "{message}");
            assert!(!message.contains("with+slash"), "{message}");
            assert!(message.contains("credentials"), "{message}");
        }
    }

    #[test]
    fn test_require_local() {
        assert!(require_local(Path::new("out.slaf"), "OUTPUT").is_ok());
        let message = require_local(Path::new("s3://bench/x.slaf"), "OUTPUT").unwrap_err();
        assert!(
            message.starts_with("OUTPUT s3://bench/x.slaf: must be a local path here"),
            "{message}"
        );
        assert!(check_path(Path::new("s3://bench/x.slaf"), "OUTPUT", true).is_ok());
        assert!(check_path(Path::new("az://c/x.slaf"), "OUTPUT", true).is_ok());
        let message = check_path(Path::new("hdfs://n/x"), "INPUT", true).unwrap_err();
        assert!(
            message.contains("hdfs:// is not an object store"),
            "{message}"
        );
        for (text, says) in [
            ("s3:///x", "no bucket"),
            ("gs://b", "names a bucket"),
            ("gs://b/", "names a bucket"),
            ("az://c/a/../x", "'..' are not allowed"),
            ("s3://b/./x", "'.' and '..'"),
        ] {
            let message = check_path(Path::new(text), "INPUT", true).unwrap_err();
            assert!(message.contains(says), "{text}: {message}");
        }
        let message = check_path(Path::new("s3://k:s@b/x"), "INPUT", true).unwrap_err();
        assert!(
            message.contains("credentials") && !message.contains(":s@"),
            "{message}"
        );
        let message = require_local(Path::new("file:///data/x.slaf"), "OUTPUT").unwrap_err();
        assert!(message.contains("give the local path itself"), "{message}");
        assert_eq!(uri("s3://bucket").unwrap().shown, "s3://bucket");
    }
}
