//! The same layout in an object store (`s3://`, `gs://`, `az://`, `file://`)
//! through the `object_store` crate. Credentials and endpoints come from the
//! usual environment variables (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`,
//! `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, …).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use camino::Utf8Path;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3ConfigKey;
use object_store::azure::AzureConfigKey;
use object_store::buffered::BufWriter;
use object_store::gcp::GoogleConfigKey;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload, RetryConfig,
};
use tokio::io::AsyncWriteExt;

use super::{ByteStream, RemoteError, chain};

pub struct StoreRemote {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl StoreRemote {
    pub fn new(url: &url::Url) -> Result<StoreRemote, String> {
        let (scheme, prefix) =
            ObjectStoreScheme::parse(url).map_err(|e| format!("`{url}` is not an object store URL: {e}"))?;
        // A down remote should degrade the build in seconds, not minutes.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
        };
        // Timeouts go in as config keys, so what the environment set
        // (AWS_ALLOW_HTTP, proxies) stays.
        let plain_http = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT", "AZURE_STORAGE_ENDPOINT"]
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|e| e.starts_with("http://")));
        let mut client = vec![
            (ClientConfigKey::ConnectTimeout, "5s"),
            (ClientConfigKey::Timeout, "600s"),
        ];
        // An `http://` endpoint (a local MinIO, moto or Azurite) needs plain HTTP allowed.
        if plain_http {
            client.push((ClientConfigKey::AllowHttp, "true"));
        }
        let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match scheme {
            ObjectStoreScheme::AmazonS3 => {
                let b = client.iter().fold(
                    object_store::aws::AmazonS3Builder::from_env().with_url(url.as_str()),
                    |b, (k, v)| b.with_config(AmazonS3ConfigKey::Client(*k), *v),
                );
                b.with_retry(retry).build().map(|s| Arc::new(s) as _)
            }
            ObjectStoreScheme::GoogleCloudStorage => {
                let b = client.iter().fold(
                    object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url.as_str()),
                    |b, (k, v)| b.with_config(GoogleConfigKey::Client(*k), *v),
                );
                b.with_retry(retry).build().map(|s| Arc::new(s) as _)
            }
            ObjectStoreScheme::MicrosoftAzure => {
                let b = client.iter().fold(
                    object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url.as_str()),
                    |b, (k, v)| b.with_config(AzureConfigKey::Client(*k), *v),
                );
                b.with_retry(retry).build().map(|s| Arc::new(s) as _)
            }
            ObjectStoreScheme::Local => {
                let dir = url
                    .to_file_path()
                    .map_err(|()| format!("`{url}` is not a local path"))?;
                std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                return object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map(|s| StoreRemote {
                        store: Arc::new(s),
                        prefix: Path::default(),
                    })
                    .map_err(|e| format!("cannot use {}: {e}", dir.display()));
            }
            other => {
                return Err(format!(
                    "`{url}`: {other:?} is not a supported remote cache; use http(s)://, s3://, gs://, az:// or file://"
                ));
            }
        };
        let store = built.map_err(|e| format!("cannot open {url}: {e}"))?;
        Ok(StoreRemote { store, prefix })
    }

    fn path(&self, rel: &str) -> Path {
        rel.split('/').fold(self.prefix.clone(), |p, part| p.join(part))
    }

    pub async fn get(&self, rel: &str) -> Result<Option<ByteStream>, RemoteError> {
        match self.store.get(&self.path(rel)).await {
            Ok(r) => Ok(Some(r.into_stream().map_err(|e| chain(&e)).boxed())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(chain(&e)),
        }
    }

    pub async fn head(&self, rel: &str) -> Result<bool, RemoteError> {
        match self.store.head(&self.path(rel)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(chain(&e)),
        }
    }

    pub async fn put_bytes(&self, rel: &str, bytes: Bytes) -> Result<(), RemoteError> {
        self.store
            .put(&self.path(rel), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| chain(&e))
    }

    /// Stream a file up: small files in one PUT, large ones as a multipart upload.
    pub async fn put_file(&self, rel: &str, file: &Utf8Path) -> Result<(), RemoteError> {
        let mut f = tokio::fs::File::open(file)
            .await
            .map_err(|e| RemoteError(format!("reading {file}: {e}")))?;
        let mut w = BufWriter::new(self.store.clone(), self.path(rel));
        let copied = tokio::io::copy(&mut f, &mut w).await;
        match copied {
            Ok(_) => w.shutdown().await.map_err(|e| chain(&e)),
            Err(e) => {
                let _ = w.abort().await;
                Err(chain(&e))
            }
        }
    }
}
