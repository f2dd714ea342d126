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

pub mod lance;
mod ranged;
mod stream;
mod transfer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use crate::error::{Error, Result};
use crate::location::store_uri;

pub use self::transfer::DownloadReport;
use crate::error::config_error;
pub(crate) use crate::error::store_error;

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
    /// `scheme` and `bucket` (or container) as parsed.
    scheme: String,
    bucket: String,
}

/// An object found under a store's prefix.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its path relative to the prefix, '/'-separated.
    pub rel: String,
    /// The object itself (deleted as listed: no re-encoding of its name).
    location: ObjectPath,
    /// When it was last written, by the store's clock.
    pub modified: chrono::DateTime<chrono::Utc>,
}

impl Store {
    /// The store and prefix named by `uri` (`s3://bucket/prefix`, `gs://...`, `az://container/...`),
    /// configured from the environment. Nothing is requested until an operation runs.
    pub fn open(uri: &str) -> Result<Store> {
        let named =
            store_uri(uri.as_ref()).ok_or_else(|| Error::Usage(format!("{uri}: not a URI")))?;
        // The same refusals as where paths are given (credentials, schemes, bucket and key).
        crate::location::check_path(uri.as_ref(), "object store", true).map_err(Error::Usage)?;
        let shown = named.shown.trim_end_matches('/').to_string();
        let url = url::Url::parse(uri).map_err(|e| Error::Usage(format!("{shown}: {e}")))?;
        let bucket = url.host_str().unwrap_or_default().to_string();
        let client = client(&named.scheme, uri, &shown)?;
        let root = ObjectPath::from_url_path(url.path())
            .map_err(|e| Error::Usage(format!("{shown}: {e}")))?;
        Ok(Store {
            client,
            root,
            shown,
            scheme: named.scheme,
            bucket,
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

    /// The prefix to list under; `None` for a bucket's root.
    fn prefix(&self) -> Option<&ObjectPath> {
        (!self.root.as_ref().is_empty()).then_some(&self.root)
    }

    /// Where a local copy of this object goes below a directory: `scheme/bucket/key...`,
    /// from the parsed key (no `..`), so copies from different places stay apart.
    pub fn local_path(&self) -> PathBuf {
        let mut path = PathBuf::from(&self.scheme);
        path.push(&self.bucket);
        for part in self.root.parts() {
            path.push(part.as_ref());
        }
        path
    }

    /// `rel` as it may be shown; also the URI Lance opens it by (a URI carries no
    /// credentials, so what is shown is the URI).
    pub fn shown_child(&self, rel: &str) -> String {
        format!("{}/{rel}", self.shown)
    }

    /// The prefix `rel` below this one, with the same client.
    pub fn child(&self, rel: &str) -> Store {
        Store {
            root: self.path(rel),
            shown: self.shown_child(rel.trim_matches('/')),
            ..self.clone()
        }
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

    /// Every object under the prefix.
    pub async fn list(&self) -> Result<Vec<Listed>> {
        let metas: Vec<object_store::ObjectMeta> = self
            .client
            .list(self.prefix())
            .try_collect()
            .await
            .map_err(|e| store_error(&self.shown, &e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let rel: Vec<_> = m.location.prefix_match(&self.root)?.collect();
                let rel: Vec<&str> = rel.iter().map(|p| p.as_ref()).collect();
                (!rel.is_empty()).then(|| Listed {
                    rel: rel.join("/"),
                    location: m.location.clone(),
                    modified: m.last_modified,
                })
            })
            .collect())
    }

    /// Whether the prefix holds any object but `except` (`None`: any object at all); lists
    /// no further than the first.
    pub async fn holds_other_than(&self, except: Option<&str>) -> Result<bool> {
        let except = except.map(|rel| self.path(rel));
        let mut listing = self.client.list(self.prefix());
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| store_error(&self.shown, &e))?;
            if Some(&meta.location) != except.as_ref() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// When the object `rel` was last written (the store's clock), or `None` if there is none.
    pub async fn modified(&self, rel: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        match self.client.head(&self.path(rel)).await {
            Ok(meta) => Ok(Some(meta.last_modified)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(&self.shown_child(rel), &e)),
        }
    }

    /// Delete an object as listed (gone already is fine).
    pub async fn delete_listed(&self, listed: &Listed) -> Result<()> {
        self.delete_at(&listed.location, &listed.rel).await
    }

    /// Delete the object `rel` (gone already is fine).
    pub async fn delete(&self, rel: &str) -> Result<()> {
        self.delete_at(&self.path(rel), rel).await
    }

    /// Delete the object at `location`, shown as `rel` (gone already is fine).
    async fn delete_at(&self, location: &ObjectPath, rel: &str) -> Result<()> {
        match self.client.delete(location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(&self.shown_child(rel), &e)),
        }
    }
}

/// The client for `uri` (of `scheme`, shown as `shown`), configured from the environment.
pub(crate) fn client(scheme: &str, uri: &str, shown: &str) -> Result<Arc<dyn ObjectStore>> {
    let retry = retry_config()?;
    let client: Arc<dyn ObjectStore> = match scheme {
        "s3" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(uri)
                .with_retry(retry)
                .build()
                .map_err(|e| config_error(shown, e))?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(uri)
                .with_retry(retry)
                .build()
                .map_err(|e| config_error(shown, e))?,
        ),
        "az" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(uri)
                .with_retry(retry)
                .build()
                .map_err(|e| config_error(shown, e))
                .map_err(|e| match e {
                    Error::Store { uri, what, .. } if what.contains("Account must be") => {
                        Error::Store {
                            uri,
                            what: format!(
                                "{what} (the account comes from AZURE_STORAGE_ACCOUNT_NAME)"
                            ),
                            transient: false,
                        }
                    }
                    other => other,
                })?,
        ),
        // Store::open and Lance's registry let only STORE_SCHEMES through.
        other => {
            return Err(Error::Internal(format!(
                "{shown}: no client for {other}://"
            )))
        }
    };
    Ok(client)
}

/// The retry policy: object_store's backoff, within [`RETRY_SECONDS_VAR`] seconds.
fn retry_config() -> Result<RetryConfig> {
    let mut retry = RetryConfig::default();
    if let Ok(text) = std::env::var(RETRY_SECONDS_VAR) {
        retry.retry_timeout = text
            .trim()
            .parse()
            .ok()
            .and_then(|seconds: f64| Duration::try_from_secs_f64(seconds).ok())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{RETRY_SECONDS_VAR}={text}: expected a number of seconds"
                ))
            })?;
        if retry.retry_timeout.is_zero() {
            retry.max_retries = 0;
        }
    }
    Ok(retry)
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
        assert_eq!(
            Store::open("s3://b/raw/my%20x.h5ad").unwrap().local_path(),
            PathBuf::from("s3/b/raw/my x.h5ad")
        );
        let e = Store::open("s3://b/../../../home/u/.bashrc")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'..' are not allowed"), "{e}");
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
        let e = Store::open("gs://bucket").unwrap_err().to_string();
        assert!(e.contains("names a bucket"), "{e}");
    }
}
