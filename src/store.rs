//! Object stores: the client for an `s3://`, `gs://` or `az://` URI, configured from the
//! cloud's standard environment variables only, and the few operations the workflow needs of
//! it: fetch an object (or a directory's objects) to local files, upload a local file, and
//! read, write, list and delete objects under a prefix.
//!
//! Credentials and endpoints come from the environment as `object_store`'s builders read them
//! (`AWS_*`, `AZURE_STORAGE_*`, `GOOGLE_*`); a URI carrying credentials never gets here
//! ([`crate::location`] refuses it). Every error names the object by scheme, bucket and path
//! only. Requests are retried by `object_store` with exponential backoff (up to 10 times
//! within [`RETRY_SECONDS_VAR`], default 180 s); what still fails is an [`Error::Store`],
//! transient (exit 75) unless the store answered for good (not found, denied, bad
//! credentials, bad configuration).

mod transfer;

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use crate::error::{Error, Result};
use crate::location::store_uri;

pub use self::transfer::DownloadReport;

/// Environment variable: seconds within which a failed request is retried (default 180).
pub const RETRY_SECONDS_VAR: &str = "SLAF_CONVERT_STORE_RETRY_SECONDS";

/// A prefix in an object store: the client and where under it we work.
#[derive(Debug, Clone)]
pub struct Store {
    client: Arc<dyn ObjectStore>,
    /// The prefix (no leading or trailing '/'); empty for a bucket's root.
    root: ObjectPath,
    /// `scheme://bucket/prefix`, as errors and logs may show it.
    shown: String,
}

impl Store {
    /// The store and prefix named by `uri` (`s3://bucket/prefix`, `gs://...`, `az://container/...`),
    /// configured from the environment. Nothing is requested until an operation runs.
    pub fn open(uri: &str) -> Result<Store> {
        let named =
            store_uri(uri.as_ref()).ok_or_else(|| Error::Usage(format!("{uri}: not a URI")))?;
        let shown = named.shown.trim_end_matches('/').to_string();
        if named.has_credentials {
            return Err(Error::Usage(format!(
                "{shown}: refused, the URI carries credentials or a query string; give \
                 credentials in the store's environment variables"
            )));
        }
        let url = url::Url::parse(uri).map_err(|e| Error::Usage(format!("{shown}: {e}")))?;
        if url.host_str().unwrap_or_default().is_empty() {
            return Err(Error::Usage(format!(
                "{shown}: no bucket or container named"
            )));
        }
        let retry = retry_config()?;
        let client: Arc<dyn ObjectStore> = match named.scheme.as_str() {
            "s3" => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(uri)
                    .with_retry(retry)
                    .build()
                    .map_err(|e| config_error(&shown, e))?,
            ),
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(uri)
                    .with_retry(retry)
                    .build()
                    .map_err(|e| config_error(&shown, e))?,
            ),
            "az" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(uri)
                    .with_retry(retry)
                    .build()
                    .map_err(|e| config_error(&shown, e))
                    .map_err(|e| match e {
                        Error::Store { uri, what, .. } => Error::Store {
                            uri,
                            what: format!(
                                "{what} (the account comes from AZURE_STORAGE_ACCOUNT_NAME)"
                            ),
                            transient: false,
                        },
                        other => other,
                    })?,
            ),
            other => {
                return Err(Error::Usage(format!(
                    "{shown}: {other}:// is not an object store slaf-convert reads or writes \
                     (s3://, gs://, az://)"
                )))
            }
        };
        let root = ObjectPath::from_url_path(url.path())
            .map_err(|e| Error::Usage(format!("{shown}: {e}")))?;
        Ok(Store {
            client,
            root,
            shown,
        })
    }

    /// `scheme://bucket/prefix`, without credentials.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The last segment of the prefix (a file or directory name), if any.
    pub fn name(&self) -> Option<String> {
        self.root.filename().map(str::to_string)
    }

    /// The object `rel` ('/'-separated, relative to the prefix).
    fn path(&self, rel: &str) -> ObjectPath {
        rel.split('/')
            .filter(|s| !s.is_empty())
            .fold(self.root.clone(), |p, s| p.join(s))
    }

    /// `rel` as it may be shown.
    pub fn shown_child(&self, rel: &str) -> String {
        format!("{}/{rel}", self.shown)
    }

    /// The object `rel`, or `None` if there is none.
    pub async fn read(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let got = match self.client.get(&self.path(rel)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error(&self.shown_child(rel), &e)),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|e| store_error(&self.shown_child(rel), &e))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Write the object `rel` whole (a single PUT: readers see the old object or this one).
    pub async fn write(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        self.client
            .put(&self.path(rel), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| store_error(&self.shown_child(rel), &e))
    }

    /// Every object under the prefix, as paths relative to it.
    pub async fn list(&self) -> Result<Vec<String>> {
        let prefix = (!self.root.as_ref().is_empty()).then_some(&self.root);
        let metas: Vec<object_store::ObjectMeta> = self
            .client
            .list(prefix)
            .try_collect()
            .await
            .map_err(|e| store_error(&self.shown, &e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let rel: Vec<_> = m.location.prefix_match(&self.root)?.collect();
                let rel: Vec<&str> = rel.iter().map(|p| p.as_ref()).collect();
                (!rel.is_empty()).then(|| rel.join("/"))
            })
            .collect())
    }

    /// Delete the object `rel` (gone already is fine).
    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self.client.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(&self.shown_child(rel), &e)),
        }
    }
}

/// The retry policy: object_store's backoff, within [`RETRY_SECONDS_VAR`] seconds.
fn retry_config() -> Result<RetryConfig> {
    let mut retry = RetryConfig::default();
    if let Ok(text) = std::env::var(RETRY_SECONDS_VAR) {
        let seconds: f64 = text
            .trim()
            .parse()
            .ok()
            .filter(|s: &f64| *s >= 0.0)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{RETRY_SECONDS_VAR}={text}: expected a number of seconds"
                ))
            })?;
        retry.retry_timeout = Duration::from_secs_f64(seconds);
        if seconds == 0.0 {
            retry.max_retries = 0;
        }
    }
    Ok(retry)
}

/// A builder's refusal: a missing or malformed setting in the environment.
fn config_error(shown: &str, e: object_store::Error) -> Error {
    Error::Store {
        uri: shown.to_string(),
        what: format!("the store cannot be configured from the environment: {e}"),
        transient: false,
    }
}

/// `e` about the object `shown`, classified: the store's final answers are not transient;
/// anything else (5xx or throttling after the retries, timeouts, refused connections) is.
pub(crate) fn store_error(shown: &str, e: &object_store::Error) -> Error {
    use object_store::Error as E;
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
        // A 4xx the store gave as its answer (a missing bucket, a bad request) stays one.
        other => !client_error_status(&other.to_string()),
    };
    let what = match e {
        E::NotFound { .. } => "not found".to_string(),
        E::PermissionDenied { .. } => format!("permission denied: {}", source_text(e)),
        E::Unauthenticated { .. } => format!("the credentials were refused: {}", source_text(e)),
        _ => concise(&source_text(e)),
    };
    // With no credentials in the environment the clients ask the machine's metadata service;
    // off a cloud machine that fails in words that do not say what is missing.
    let what = match ["169.254.169.254", "metadata.google.internal"]
        .iter()
        .any(|host| what.contains(host))
    {
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

/// A store's error on one line: the HTTP status and the store's own code and message where
/// its answer has them (S3 and Azure answer in XML), else the text with newlines folded.
fn concise(text: &str) -> String {
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let len = text[start..].find(close)?;
        Some(text[start..start + len].trim().to_string())
    };
    let status = between("status code: ", ":").filter(|s| s.len() < 40);
    match (status, between("<Code>", "</Code>")) {
        (Some(status), Some(code)) => {
            let message = between("<Message>", "</Message>").unwrap_or_default();
            // Azure appends its request id and time on lines of their own.
            let message = message.split("RequestId:").next().unwrap_or_default();
            one_line(&format!("the store answered {status}: {code}: {message}"))
        }
        _ => one_line(text),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An HTTP status 400-499 other than 408 (timeout) and 429 (throttled) in `text`.
fn client_error_status(text: &str) -> bool {
    text.match_indices("status code: ")
        .chain(text.match_indices("status: "))
        .filter_map(|(i, m)| text[i + m.len()..].get(..3)?.parse::<u16>().ok())
        .any(|code| (400..500).contains(&code) && code != 408 && code != 429)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_uris_open_without_a_request() {
        for uri in ["s3://bucket/a/b.slaf", "gs://bucket/a.h5ad"] {
            let store = Store::open(uri).unwrap();
            assert_eq!(store.shown(), uri);
        }
        // Azure names the account outside the URI; without it the error says where it goes.
        if std::env::var_os("AZURE_STORAGE_ACCOUNT_NAME").is_none() {
            let e = Store::open("az://container/x").unwrap_err().to_string();
            assert!(e.contains("AZURE_STORAGE_ACCOUNT_NAME"), "{e}");
            assert!(e.starts_with("az://container/x: "), "{e}");
        }
        let store = Store::open("gs://bucket/a/b.h5ad").unwrap();
        assert_eq!(store.name().as_deref(), Some("b.h5ad"));
        assert_eq!(store.path("x/y.json").as_ref(), "a/b.h5ad/x/y.json");
        assert_eq!(Store::open("gs://bucket").unwrap().path("x").as_ref(), "x");
    }

    #[test]
    fn test_refusals_name_no_secret() {
        for uri in [
            "s3://AKIA:secretKEY/x@bucket/x",
            "gs://bucket/x?X-Goog-Signature=secretKEY",
            "az://container/x?sig=secretKEY",
        ] {
            let e = Store::open(uri).unwrap_err().to_string();
            assert!(e.contains("credentials"), "{e}");
            assert!(!e.contains("secretKEY"), "{e}");
        }
        let e = Store::open("hdfs://node/x").unwrap_err().to_string();
        assert!(e.contains("hdfs://") && e.contains("s3://"), "{e}");
        let e = Store::open("s3:///x").unwrap_err().to_string();
        assert!(e.contains("no bucket"), "{e}");
    }

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
    }

    #[test]
    fn test_status_classification() {
        assert!(client_error_status(
            "Server returned non-2xx status code: 403 Forbidden"
        ));
        assert!(!client_error_status("status code: 503 Service Unavailable"));
        assert!(!client_error_status("status code: 429 Too Many Requests"));
        assert!(!client_error_status(
            "error sending request: connection refused"
        ));
    }
}
