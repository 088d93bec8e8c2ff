//! `grpc.health.v1.Health` following the engine's health: the overall service (`""`, what the
//! Kubernetes gRPC probe asks by default) and `starwal.v1.Control` are SERVING exactly when the
//! engine says so, NOT_SERVING otherwise (while it sets up, retries, drains or has stopped).
//!
//! The reporter starts out SERVING in tonic-health, so [`publish`] runs once before the server
//! accepts its first connection; [`follow`] then forwards every change, which is what
//! `Health/Watch` clients see.

use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::control::pb;
use crate::state::Health;

/// The service names whose status follows the engine's health.
pub(crate) const FOLLOWING_SERVICES: [&str; 2] = ["", pb::control_server::SERVICE_NAME];

fn serving_status(health: &Health) -> ServingStatus {
    if health.serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

/// A service that is SERVING whenever the process answers at all: what a liveness probe asks
/// (`grpc: {port: 50051, service: starwal.liveness}`), so an agent that is retrying setup or
/// draining is not restarted for it — readiness (`""`) says whether it replicates.
pub const LIVENESS_SERVICE: &str = "starwal.liveness";

/// Sets every following service to `health`.
pub(crate) async fn publish(reporter: &HealthReporter, health: &Health) {
    reporter
        .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
        .await;
    let status = serving_status(health);
    for service in FOLLOWING_SERVICES {
        reporter.set_service_status(service, status).await;
    }
}

/// Forwards health changes until the engine's handle is dropped.
pub(crate) async fn follow(mut health: watch::Receiver<Health>, reporter: HealthReporter) {
    loop {
        let current = health.borrow_and_update().clone();
        publish(&reporter, &current).await;
        if health.changed().await.is_err() {
            return;
        }
    }
}
