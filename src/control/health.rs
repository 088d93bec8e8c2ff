//! `grpc.health.v1.Health` following the engine's health: the overall service (`""`, what the
//! Kubernetes gRPC probe asks by default) and `starwal.v1.Control` are SERVING exactly when the
//! engine says so, NOT_SERVING otherwise (while it sets up, retries, drains or has stopped).
//!
//! During a StarRocks outage the engine rides out (invariant 7), these readiness services are
//! NOT_SERVING from the first failed load attempt until the failing tables' loads commit again:
//! readiness means "changes reach StarRocks now", and a probe's `failureThreshold` absorbs a
//! single retried blip. [`LIVENESS_SERVICE`] stays SERVING, because a restart would not help:
//! the agent resumes by itself once StarRocks is back. Why it is NOT_SERVING (the table, the
//! attempts, the last error) is in `Status.GetStatus`'s `health_detail`, which health cannot carry.
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

/// Forwards health changes until the engine's handle is dropped. Only a change of SERVING vs
/// NOT_SERVING is published: the detail (which changes with every failed attempt of an outage)
/// is not part of the health protocol, and `Health/Watch` clients would get repeats.
pub(crate) async fn follow(mut health: watch::Receiver<Health>, reporter: HealthReporter) {
    let mut published: Option<bool> = None;
    loop {
        let current = health.borrow_and_update().clone();
        if published != Some(current.serving) {
            publish(&reporter, &current).await;
            published = Some(current.serving);
        }
        if health.changed().await.is_err() {
            return;
        }
    }
}
