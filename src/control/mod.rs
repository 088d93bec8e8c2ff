//! The control plane: a gRPC server on `STARWAL_CONTROL_ADDR` and a Prometheus endpoint on
//! `STARWAL_METRICS_ADDR`, both reading the engine's shared [`EngineHandle`], and the client the
//! `status`/`pause`/`resume`/`drain`/`resync` subcommands use.
//!
//! gRPC services (reflection v1 and v1alpha make them discoverable with `grpcurl`):
//! - `grpc.health.v1.Health`: `""` and `starwal.v1.Control` follow the engine's health
//!   ([`health`]), so Kubernetes' native gRPC probe works unchanged;
//! - `starwal.v1.Control`: Pause, Resume, Drain, Stop, Resync, guarded by [`auth`] (a bearer
//!   `STARWAL_CONTROL_TOKEN`, or loopback peers only when none is set);
//! - `starwal.v1.Status`: GetStatus, everything in a [`StatusSnapshot`](crate::state::StatusSnapshot);
//! - `starwal.v1.Metrics`: StreamMetrics, rate samples ([`sample`]).
//!
//! Lifecycle: [`ControlServer::bind`] binds both listeners before the engine starts, so a busy
//! port is a startup error naming its variable; [`ControlServer::serve`] then runs until its
//! shutdown future completes, independently of the engine's phase (status and health must answer
//! while setup is being retried). The engine spawns `serve` and completes the shutdown future
//! once it has stopped, so the last status (STOPPED, NOT_SERVING) can still be read while it
//! drains. On shutdown, open streams (StreamMetrics; Health/Watch) get [`SHUTDOWN_GRACE`] to end
//! before the connections are dropped. The control plane never stops the engine by failing: a
//! serve error is returned to the caller to log.
//!
//! Nothing here logs or answers a secret: denials name `STARWAL_CONTROL_TOKEN`, never its value,
//! and the status's configuration summary is redacted by the engine (invariant 10).

mod auth;
pub mod client;
mod health;
mod http;
pub mod process;
pub mod prometheus;
pub mod sample;
mod services;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic_health::server::HealthReporter;

use crate::config::ControlConfig;
use crate::secret::Secret;
use crate::state::EngineHandle;

/// The generated `starwal.v1` messages, clients and server traits.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("starwal.v1");

    /// The encoded descriptor set of `proto/starwal/v1`, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/starwal_v1_descriptor.bin"));
}

/// How long open streams may run on after shutdown was asked before their connections are
/// dropped (graceful shutdown alone would wait for a Watch stream forever).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A control-plane failure: binding a listener or the gRPC server itself.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot listen on STARWAL_CONTROL_ADDR {addr}: {source}")]
    BindControl {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on STARWAL_METRICS_ADDR {addr}: {source}")]
    BindMetrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the gRPC reflection service from the embedded descriptors: {0}")]
    Reflection(#[source] tonic_reflection::server::Error),
    #[error("the gRPC control server on {addr} failed: {}", crate::error_text::chain(.source))]
    Serve {
        addr: SocketAddr,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Where the servers actually listen (the ports chosen when the configuration asked for 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlAddrs {
    /// The gRPC server.
    pub grpc: SocketAddr,
    /// The Prometheus endpoint, `None` when `STARWAL_METRICS_ADDR=off`.
    pub metrics: Option<SocketAddr>,
}

/// Bound listeners, ready to [`serve`](ControlServer::serve).
#[derive(Debug)]
pub struct ControlServer {
    grpc: TcpListener,
    metrics: Option<TcpListener>,
    addrs: ControlAddrs,
    handle: Arc<EngineHandle>,
    token: Option<Secret>,
    reporter: HealthReporter,
    health: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
}

impl ControlServer {
    /// Binds the gRPC listener on `config.addr` and, unless disabled, the metrics listener on
    /// `config.metrics_addr`. Health answers follow `handle` from the first connection on.
    pub async fn bind(
        config: &ControlConfig,
        handle: Arc<EngineHandle>,
    ) -> Result<ControlServer, ControlError> {
        let grpc =
            TcpListener::bind(config.addr)
                .await
                .map_err(|source| ControlError::BindControl {
                    addr: config.addr,
                    source,
                })?;
        let grpc_addr = grpc
            .local_addr()
            .map_err(|source| ControlError::BindControl {
                addr: config.addr,
                source,
            })?;
        let (metrics, metrics_addr) = match config.metrics_addr {
            Some(addr) => {
                let bind_error = |source| ControlError::BindMetrics { addr, source };
                let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
                let local = listener.local_addr().map_err(bind_error)?;
                (Some(listener), Some(local))
            }
            None => (None, None),
        };
        let reporter = HealthReporter::new();
        health::publish(&reporter, &handle.health().borrow()).await;
        let health = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        );
        Ok(ControlServer {
            grpc,
            metrics,
            addrs: ControlAddrs {
                grpc: grpc_addr,
                metrics: metrics_addr,
            },
            handle,
            token: config.token.clone(),
            reporter,
            health,
        })
    }

    /// The bound addresses (the real ports when port 0 was asked for).
    pub fn local_addrs(&self) -> ControlAddrs {
        self.addrs
    }

    /// Serves gRPC and metrics until `shutdown` completes, then closes both (open streams get
    /// [`SHUTDOWN_GRACE`]). Returns an error only when the gRPC server itself fails.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ControlError> {
        let ControlServer {
            grpc,
            metrics,
            addrs,
            handle,
            token,
            reporter,
            health,
        } = self;
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1().map_err(ControlError::Reflection)?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .map_err(ControlError::Reflection)?;

        let (stopping_tx, stopping) = watch::channel(false);
        let health_follower = tokio::spawn(health::follow(handle.health(), reporter));
        let metrics_server = metrics.map(|listener| {
            tokio::spawn(http::serve(listener, Arc::clone(&handle), stopping.clone()))
        });

        let router = tonic::transport::Server::builder()
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(pb::control_server::ControlServer::new(
                services::ControlService {
                    handle: Arc::clone(&handle),
                    token,
                },
            ))
            .add_service(pb::status_server::StatusServer::new(
                services::StatusService {
                    handle: Arc::clone(&handle),
                },
            ))
            .add_service(pb::metrics_server::MetricsServer::new(
                services::MetricsService {
                    handle: Arc::clone(&handle),
                    shutdown: stopping.clone(),
                },
            ));
        let incoming = TcpIncoming::from(grpc).with_nodelay(Some(true));
        let signal = async move {
            shutdown.await;
            let _ = stopping_tx.send(true);
        };
        let mut grace = stopping.clone();
        let grace = async move {
            // Err: the sender is gone, which only happens once the server future ended.
            let _ = grace.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tracing::debug!(grpc = %addrs.grpc, metrics = ?addrs.metrics, "control server serving");
        let result = tokio::select! {
            result = router.serve_with_incoming_shutdown(incoming, signal) => result
                .map_err(|source| ControlError::Serve { addr: addrs.grpc, source }),
            () = grace => {
                tracing::debug!("control connections still open after the grace period; closing them");
                Ok(())
            }
        };
        health_follower.abort();
        if let Some(metrics_server) = metrics_server {
            // It watches the same signal; on a gRPC failure the signal never came, so stop it.
            metrics_server.abort();
            let _ = metrics_server.await;
        }
        result
    }
}
