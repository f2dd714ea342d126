//! Lance's way into the object stores: an `ObjectStoreProvider` for `s3`, `gs` and `az`
//! that hands Lance the same clients [`super::Store`] uses (configured from the environment,
//! with our retry policy), the [`session`] whose registry holds them, and the way to open a
//! dataset (local or in a store) with it. Without it Lance
//! (built without its own cloud features) has no provider for those schemes.

use std::sync::{Arc, LazyLock};

use lance::io::{ObjectStore as LanceStore, ObjectStoreParams, ObjectStoreRegistry};
use lance::session::Session;
use lance_io::object_store::{
    ObjectStoreProvider, DEFAULT_CLOUD_IO_PARALLELISM, DEFAULT_DOWNLOAD_RETRY_COUNT,
};
use url::Url;

use crate::location::{store_uri, STORE_SCHEMES};

/// Builds Lance's store for a URI from our client for it.
#[derive(Debug)]
struct EnvironmentProvider;

#[async_trait::async_trait]
impl ObjectStoreProvider for EnvironmentProvider {
    async fn new_store(&self, base: Url, params: &ObjectStoreParams) -> lance::Result<LanceStore> {
        let shown = store_uri(base.as_str().as_ref())
            .map_or_else(|| base.scheme().to_string(), |u| u.shown);
        let client = super::client(base.scheme(), base.as_str(), &shown)
            .map_err(|e| lance::Error::invalid_input(e.to_string()))?;
        Ok(LanceStore::new(
            client,
            base,
            params.block_size,
            None,
            false,
            // Object stores list keys in lexical order.
            true,
            DEFAULT_CLOUD_IO_PARALLELISM,
            DEFAULT_DOWNLOAD_RETRY_COUNT,
            params.storage_options(),
        ))
    }
}

/// The Lance session for every dataset slaf-convert opens or writes at a store URI.
pub fn session() -> Arc<Session> {
    static SESSION: LazyLock<Arc<Session>> = LazyLock::new(|| {
        let registry = ObjectStoreRegistry::default();
        for scheme in STORE_SCHEMES {
            registry.insert(scheme, Arc::new(EnvironmentProvider));
        }
        Arc::new(Session::new(
            lance::dataset::DEFAULT_INDEX_CACHE_SIZE,
            lance::dataset::DEFAULT_METADATA_CACHE_SIZE,
            Arc::new(registry),
        ))
    });
    SESSION.clone()
}

/// The session Lance needs for the table at `uri`: ours for a store URI, none (Lance's own,
/// made per dataset) for a local path.
pub fn session_for(uri: &str) -> Option<Arc<Session>> {
    store_uri(uri.as_ref()).map(|_| session())
}

/// Open the Lance dataset at `uri` (a local path or a store URI).
pub async fn open_dataset(uri: &str) -> lance::Result<lance::Dataset> {
    let builder = lance::dataset::builder::DatasetBuilder::from_uri(uri);
    match session_for(uri) {
        Some(session) => builder.with_session(session),
        None => builder,
    }
    .load()
    .await
}

/// [`open_dataset`] of the table at `dir` (a local directory or a store URI), its error
/// naming that table.
pub async fn open_table(dir: &std::path::Path) -> crate::error::Result<lance::Dataset> {
    open_dataset(&dir.to_string_lossy())
        .await
        .map_err(|e| crate::error::Error::lance(dir, e))
}
