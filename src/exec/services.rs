//! The services handle: one HTTP client per executor of studio.yaml, built
//! at most once per build, from which a job on a service host takes its client.
//!
//! A client carries its executor's timeouts, the host rule, no proxy and no
//! redirects ([`Service`]); building them once lets jobs share connection
//! pools, and a job is handed only the client of the host the scheduler
//! picked for it.

use std::sync::{Arc, OnceLock};

use super::http::{HttpError, Service};
use crate::project::model::Executor;

/// The clients of every executor, indexed like the project's executors.
/// Each is built when a job first needs it (a no-op build, or a build that
/// sends nothing to a service, builds none), then shared.
#[derive(Debug, Default)]
pub struct Services {
    executors: Vec<Executor>,
    clients: Vec<OnceLock<Result<Arc<Service>, HttpError>>>,
}

impl Services {
    pub fn new(executors: &[Executor]) -> Services {
        Services {
            executors: executors.to_vec(),
            clients: executors.iter().map(|_| OnceLock::new()).collect(),
        }
    }

    /// Executor number `index` of studio.yaml.
    pub fn executor(&self, index: usize) -> Option<&Executor> {
        self.executors.get(index)
    }

    /// The client of executor number `index`: `None` when it has no URL.
    /// The loader has checked the URLs; a client that still cannot be
    /// built is an error of the jobs that need it, not of the build.
    pub fn get(&self, index: usize) -> Option<Result<Arc<Service>, HttpError>> {
        let e = self.executors.get(index).filter(|e| !e.url.is_empty())?;
        Some(
            self.clients[index]
                .get_or_init(|| Service::new(e).map(Arc::new))
                .clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executor(id: &str, url: &str) -> Executor {
        Executor {
            id: id.into(),
            line: 7,
            ..crate::exec::http::tests::executor(url, false)
        }
    }

    #[test]
    fn one_client_per_executor_with_a_url() {
        let services = Services::new(&[
            executor("comfy-a", "http://127.0.0.1:8188/"),
            executor("local", ""),
            executor("comfy-b", "http://127.0.0.2:8188"),
        ]);
        let a = services.get(0).unwrap().unwrap();
        assert_eq!(
            (a.executor.as_str(), a.base.as_str(), a.line),
            ("comfy-a", "http://127.0.0.1:8188", 7)
        );
        assert!(services.get(1).is_none(), "no URL, no client");
        assert_eq!(services.get(2).unwrap().unwrap().executor, "comfy-b");
        assert!(services.get(3).is_none());
        // Shared, not rebuilt per job.
        assert!(Arc::ptr_eq(&a, &services.get(0).unwrap().unwrap()));
    }

    #[test]
    fn a_client_that_cannot_be_built_is_an_error_of_its_jobs() {
        let services = Services::new(&[executor("far", "http://10.1.2.3:8188")]);
        let err = services.get(0).unwrap().unwrap_err();
        assert!(err.to_string().contains("remote_host"), "{err}");
    }
}
