//! The control plane end to end, without Postgres: a [`ControlServer`] bound on loopback port 0
//! over an [`EngineHandle`] the test drives by hand, reached through real gRPC clients (health,
//! reflection, starwal.v1), raw TCP for `/metrics`, and the built `starwal` binary's
//! `status`/`pause`/`resync` subcommands.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use starwal::config::Config;
use starwal::control::{pb, ControlAddrs, ControlServer};
use starwal::postgres::Lsn;
use starwal::state::{EngineHandle, OpCounts, Phase, StopRequest};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const TOKEN: &str = "e2e-control-token-42";

/// A running control server; dropping `stop` without sending also shuts it down.
struct Running {
    handle: Arc<EngineHandle>,
    addrs: ControlAddrs,
    stop: oneshot::Sender<()>,
    served: JoinHandle<Result<(), starwal::control::ControlError>>,
}

impl Running {
    fn url(&self) -> String {
        format!("http://{}", self.addrs.grpc)
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .expect("connect to the control server")
    }

    async fn shut_down(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.served)
            .await
            .expect("serve ends after shutdown")
            .unwrap()
            .expect("serve returns Ok");
    }
}

async fn start(token: Option<&str>) -> Running {
    let mut vars = vec![
        (
            "STARWAL_PG_URL".to_owned(),
            "postgres://u@localhost/db".to_owned(),
        ),
        ("STARWAL_TABLES".to_owned(), "public.t".to_owned()),
        ("STARWAL_CONTROL_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("STARWAL_METRICS_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
    ];
    if let Some(token) = token {
        vars.push(("STARWAL_CONTROL_TOKEN".to_owned(), token.to_owned()));
    }
    let config = Config::from_vars(vars).unwrap();
    let handle = Arc::new(EngineHandle::new(&config));
    let server = ControlServer::bind(&config.control, Arc::clone(&handle))
        .await
        .unwrap();
    let addrs = server.local_addrs();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    Running {
        handle,
        addrs,
        stop,
        served,
    }
}

async fn check(health: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    let response = health
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(response.status).unwrap()
}

/// Runs the built `starwal` binary with `args` (blocking, so off the runtime's threads).
async fn starwal(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_starwal"))
            .args(&args)
            .env_remove("STARWAL_CONTROL_TOKEN")
            .env_remove("STARWAL_CONTROL_URL")
            .stdin(Stdio::null())
            .output()
            .expect("run starwal")
    })
    .await
    .unwrap()
}

/// One raw HTTP/1.1 request; returns the whole answer.
async fn http_get(addr: std::net::SocketAddr, request: &'static str) -> String {
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_server_health_follows_the_engine() {
    let running = start(None).await;
    let mut health = HealthClient::new(running.channel().await);

    // A new handle is INIT, NOT_SERVING: the probe must not pass before the engine streams.
    assert_eq!(check(&mut health, "").await, ServingStatus::NotServing);
    assert_eq!(
        check(&mut health, "starwal.v1.Control").await,
        ServingStatus::NotServing
    );
    // Liveness only asks whether the process answers.
    assert_eq!(
        check(&mut health, "starwal.liveness").await,
        ServingStatus::Serving
    );
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::NotServing as i32);

    running.handle.set_health(true, "streaming");
    let changed = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("Watch sees the change")
        .unwrap()
        .unwrap();
    assert_eq!(changed.status, ServingStatus::Serving as i32);
    // The reporter is updated by a task following the engine's health: poll, don't race it.
    async fn eventually(
        health: &mut HealthClient<tonic::transport::Channel>,
        service: &str,
        want: ServingStatus,
    ) -> ServingStatus {
        let mut got = check(health, service).await;
        for _ in 0..50 {
            if got == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            got = check(health, service).await;
        }
        got
    }
    assert_eq!(
        eventually(&mut health, "", ServingStatus::Serving).await,
        ServingStatus::Serving
    );
    assert_eq!(
        eventually(&mut health, "starwal.v1.Control", ServingStatus::Serving).await,
        ServingStatus::Serving
    );

    running
        .handle
        .set_health(false, "setup failed: connection refused");
    assert_eq!(
        eventually(&mut health, "", ServingStatus::NotServing).await,
        ServingStatus::NotServing
    );

    // Reflection lists every service, so grpcurl works without the .proto files.
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut reflection = ServerReflectionClient::new(running.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer: {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "grpc.health.v1.Health",
        "starwal.v1.Control",
        "starwal.v1.Status",
        "starwal.v1.Metrics",
    ] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }

    // Shutdown does not wait forever for the open Watch stream.
    drop(answers);
    running.shut_down().await;
    drop(watch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv10_status_and_token_guarded_levers() {
    let running = start(Some(TOKEN)).await;
    let handle = &running.handle;
    handle.add_table("public.orders", "orders");
    handle.set_phase(Phase::Cdc);
    handle.set_health(true, "streaming");
    handle.set_received(Lsn(0x1_0000_0100), Lsn(0x1_0000_0200));
    // A received commit waits, so the lag counts from the confirmed LSN.
    handle.set_confirmed(Lsn(0x1_0000_0000), Some(std::time::SystemTime::now()));
    handle.record_load(
        "public.orders",
        OpCounts {
            inserted: 7,
            updated: 3,
            deleted: 1,
        },
        9,
        1234,
        Duration::from_millis(40),
        false,
    );

    let mut status = pb::status_client::StatusClient::new(running.channel().await);
    let answer = status
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.phase, pb::Phase::Cdc as i32);
    assert!(answer.serving);
    assert_eq!(answer.health_detail, "streaming");
    let confirmed = answer.confirmed_lsn.clone().unwrap();
    assert_eq!(
        (confirmed.text.as_str(), confirmed.value),
        ("1/0", 0x1_0000_0000)
    );
    assert_eq!(answer.received_lsn.as_ref().unwrap().text, "1/100");
    assert_eq!(answer.lag_bytes, 0x200);
    assert_eq!(answer.tables.len(), 1);
    let table = &answer.tables[0];
    assert_eq!(
        (table.source.as_str(), table.target.as_str()),
        ("public.orders", "orders")
    );
    assert_eq!(
        (
            table.rows_inserted,
            table.rows_updated,
            table.rows_deleted,
            table.rows_loaded
        ),
        (7, 3, 1, 9)
    );
    assert_eq!((table.bytes_loaded, table.loads), (1234, 1));
    let histogram = table.load_duration.as_ref().unwrap();
    assert_eq!(histogram.count, 1);
    assert_eq!(histogram.buckets.last().unwrap().cumulative_count, 1);
    // The summary says a token is set, and never shows it.
    assert!(answer
        .config
        .iter()
        .any(|s| s.name == "control_token" && s.value == "set"));
    assert!(!format!("{answer:?}").contains(TOKEN));

    // Levers need the bearer token once one is configured, even from loopback.
    let mut control = pb::control_client::ControlClient::new(running.channel().await);
    let denied = control.pause(pb::PauseRequest {}).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);
    assert!(
        denied.message().contains("STARWAL_CONTROL_TOKEN"),
        "{denied:?}"
    );
    let mut wrong = tonic::Request::new(pb::PauseRequest {});
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer not-the-token".parse().unwrap());
    let denied = control.pause(wrong).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);
    assert!(!denied.message().contains(TOKEN));
    assert!(!handle.is_paused());

    let authorized = |message| {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        request
    };
    let paused = control
        .pause(authorized(pb::PauseRequest {}))
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap();
    assert!(paused.paused);
    assert_eq!(paused.phase, pb::Phase::Cdc as i32);
    assert!(handle.is_paused());

    let mut resume = tonic::Request::new(pb::ResumeRequest {});
    resume
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let resumed = control.resume(resume).await.unwrap().into_inner();
    assert!(!resumed.state.unwrap().paused);
    assert!(!handle.is_paused());

    let mut drain = tonic::Request::new(pb::DrainRequest {});
    drain
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    control.drain(drain).await.unwrap();
    assert_eq!(*handle.stop_requests().borrow(), Some(StopRequest::Drain));

    running.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_server_without_token_trusts_loopback() {
    let running = start(None).await;
    let mut control = pb::control_client::ControlClient::new(running.channel().await);
    control.pause(pb::PauseRequest {}).await.unwrap();
    assert!(running.handle.is_paused());
    control.stop(pb::StopRequest {}).await.unwrap();
    assert_eq!(
        *running.handle.stop_requests().borrow(),
        Some(StopRequest::Stop)
    );
    running.handle.add_table("public.orders", "orders");
    let answer = control
        .resync(pb::ResyncRequest {
            table: "public.orders".into(),
            partial: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.table, "public.orders");
    assert_eq!(running.handle.take_resyncs(), vec!["public.orders"]);
    running.shut_down().await;
}

/// `request` with the test token as bearer token.
fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn resync_request(table: &str) -> pb::ResyncRequest {
    pb::ResyncRequest {
        table: table.to_owned(),
        partial: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv10_resync_needs_the_token_and_a_known_table() {
    let running = start(Some(TOKEN)).await;
    let handle = &running.handle;
    handle.add_table("public.orders", "orders");
    handle.add_table("public.items", "items");
    let mut control = pb::control_client::ControlClient::new(running.channel().await);

    // Guarded like the other levers: no token, then a wrong one.
    let denied = control
        .resync(resync_request("public.orders"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);
    assert!(
        denied.message().contains("STARWAL_CONTROL_TOKEN"),
        "{denied:?}"
    );
    let denied = control
        .resync(with_token(resync_request("public.orders"), "not-the-token"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);
    assert!(!denied.message().contains(TOKEN));
    assert!(handle.take_resyncs().is_empty());

    let unknown = control
        .resync(with_token(resync_request("public.nope"), TOKEN))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    assert!(unknown.message().contains("public.nope"), "{unknown:?}");

    // The StarRocks name works too; the answer names the source table.
    let answer = control
        .resync(with_token(resync_request("orders"), TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.table, "public.orders");

    // Asked twice: the first request still waits.
    let twice = control
        .resync(with_token(resync_request("public.orders"), TOKEN))
        .await
        .unwrap_err();
    assert_eq!(twice.code(), tonic::Code::FailedPrecondition, "{twice:?}");
    assert!(
        twice.message().contains("public.orders") && twice.message().contains("already"),
        "{twice:?}"
    );

    // Status shows the request as a pending copy; the other table has none.
    let mut status = pb::status_client::StatusClient::new(running.channel().await);
    let answer = status
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let table = |source: &str| {
        answer
            .tables
            .iter()
            .find(|t| t.source == source)
            .unwrap()
            .clone()
    };
    assert_eq!(table("public.orders").copy.unwrap().state, "pending");
    assert_eq!(table("public.items").copy, None);

    assert_eq!(handle.take_resyncs(), vec!["public.orders"]);
    assert!(handle.take_resyncs().is_empty());
    // Taken by the engine but not copied yet: still refused.
    let copying = control
        .resync(with_token(resync_request("public.orders"), TOKEN))
        .await
        .unwrap_err();
    assert_eq!(copying.code(), tonic::Code::FailedPrecondition);

    // Once that copy is done, the table may be copied again.
    handle.copy_planned("public.orders", 10, 1, 0, 0);
    handle.copy_progressed("public.orders", 10, true);
    handle.copy_done("public.orders");
    control
        .resync(with_token(resync_request("public.orders"), TOKEN))
        .await
        .unwrap();
    assert_eq!(handle.take_resyncs(), vec!["public.orders"]);

    running.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_server_shows_snapshot_copy_progress() {
    let running = start(None).await;
    let handle = &running.handle;
    handle.add_table("public.orders", "orders");
    handle.add_table("public.items", "items");
    handle.set_phase(Phase::Snapshot);
    // Resumed: 2 of 10 chunks (200 rows) copied by an earlier run, then one more here.
    handle.copy_planned("public.orders", 1000, 10, 2, 200);
    tokio::time::sleep(Duration::from_millis(20)).await;
    handle.copy_progressed("public.orders", 100, true);

    let mut status = pb::status_client::StatusClient::new(running.channel().await);
    let answer = status
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.phase, pb::Phase::Snapshot as i32);
    let items = answer.tables.iter().find(|t| t.source == "public.items");
    assert_eq!(items.unwrap().copy, None, "no copy planned: absent");
    let orders = answer
        .tables
        .iter()
        .find(|t| t.source == "public.orders")
        .unwrap();
    let copy = orders.copy.as_ref().expect("copy progress");
    assert_eq!(copy.state, "copying");
    assert_eq!((copy.rows_copied, copy.rows_estimated), (300, 1000));
    assert_eq!((copy.chunks_done, copy.chunks_total), (3, 10));
    // 100 rows in at least 20 ms: at most 5000 rows/s, and 700 rows left at that rate.
    assert!(
        copy.rows_per_second > 0.0 && copy.rows_per_second <= 5000.0,
        "{copy:?}"
    );
    let eta = copy.eta_seconds.expect("an ETA once a rate is known");
    assert!(
        (eta - 700.0 / copy.rows_per_second).abs() < 1e-6,
        "{copy:?}"
    );

    // Prometheus: per-table gauges for the table with a copy only.
    let metrics_addr = running.addrs.metrics.expect("metrics enabled");
    let answer = http_get(
        metrics_addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    for expected in [
        "# TYPE starwal_snapshot_state gauge",
        "starwal_snapshot_state{table=\"public.orders\",state=\"copying\"} 1",
        "starwal_snapshot_state{table=\"public.orders\",state=\"pending\"} 0",
        "starwal_snapshot_state{table=\"public.orders\",state=\"done\"} 0",
        "# TYPE starwal_snapshot_rows_copied gauge",
        "starwal_snapshot_rows_copied{table=\"public.orders\"} 300",
        "starwal_snapshot_rows_estimated{table=\"public.orders\"} 1000",
        "starwal_snapshot_chunks_done{table=\"public.orders\"} 3",
        "starwal_snapshot_chunks_planned{table=\"public.orders\"} 10",
        "starwal_phase{phase=\"SNAPSHOT\"} 1",
    ] {
        assert!(
            body.lines().any(|l| l == expected),
            "missing `{expected}`:\n{body}"
        );
    }
    for family in [
        "starwal_snapshot_rows_per_second{table=\"public.orders\"} ",
        "starwal_snapshot_eta_seconds{table=\"public.orders\"} ",
    ] {
        assert!(
            body.lines().any(|l| l.starts_with(family)),
            "{family}:\n{body}"
        );
    }
    assert!(
        body.lines()
            .filter(|l| l.starts_with("starwal_snapshot_"))
            .all(|l| !l.contains("public.items")),
        "{body}"
    );

    // StreamMetrics: the copy's progress and its rate over the interval.
    let mut metrics = pb::metrics_client::MetricsClient::new(running.channel().await);
    let mut samples = metrics
        .stream_metrics(pb::StreamMetricsRequest { interval_ms: 100 })
        .await
        .unwrap()
        .into_inner();
    samples.message().await.unwrap().unwrap();
    handle.copy_progressed("public.orders", 50, false);
    let sample = samples.message().await.unwrap().unwrap();
    let orders = sample
        .tables
        .iter()
        .find(|t| t.source == "public.orders")
        .unwrap();
    assert!(orders.copied_rows_per_second > 0.0, "{sample:?}");
    assert_eq!(orders.copy.as_ref().unwrap().rows_copied, 350);
    drop(samples);

    // The CLI: one line per copy for people, the copy object for scripts.
    let url = running.url();
    let out = starwal(vec!["status".into(), "--addr".into(), url.clone()]).await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "public.orders: snapshot copy copying: 350 of 1000 rows (35.0%), 3/10 chunks, "
        ),
        "{text}"
    );
    assert!(text.contains(" rows/s, ETA "), "{text}");
    assert!(!text.contains("public.items: snapshot copy"), "{text}");
    let out = starwal(vec![
        "status".into(),
        "--json".into(),
        "--addr".into(),
        url.clone(),
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tables = json["tables"].as_array().unwrap();
    let orders = tables
        .iter()
        .find(|t| t["source"] == "public.orders")
        .unwrap();
    assert_eq!(orders["copy"]["state"], "copying");
    assert_eq!(orders["copy"]["rows_copied"], 350);
    assert_eq!(orders["copy"]["chunks_total"], 10);
    assert!(orders["copy"]["eta_seconds"].as_f64().unwrap() > 0.0);
    let items = tables
        .iter()
        .find(|t| t["source"] == "public.items")
        .unwrap();
    assert_eq!(items["copy"], serde_json::Value::Null);

    // Done: no ETA left, so neither the field nor the series.
    handle.copy_done("public.orders");
    let answer = status
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let orders = answer.tables.iter().find(|t| t.source == "public.orders");
    let copy = orders.unwrap().copy.clone().unwrap();
    assert_eq!(
        (copy.state.as_str(), copy.eta_seconds),
        ("done", None),
        "{answer:?}"
    );
    let answer = http_get(
        metrics_addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert!(
        answer.contains("starwal_snapshot_state{table=\"public.orders\",state=\"done\"} 1\n"),
        "{answer}"
    );
    assert!(!answer.contains("starwal_snapshot_eta_seconds"), "{answer}");

    running.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_server_cli_resync() {
    let running = start(Some(TOKEN)).await;
    running.handle.add_table("public.orders", "orders");
    let url = running.url();
    let resync = |table: &str, extra: &[&str]| {
        let mut args: Vec<String> = ["resync", "--addr", &url, "--table", table]
            .iter()
            .map(|a| (*a).to_owned())
            .collect();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        starwal(args)
    };

    // Without the token: refused, exit 1, and told how to pass it.
    let out = resync("public.orders", &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("--token"), "{stderr}");
    assert!(running.handle.take_resyncs().is_empty());

    // An unknown table: exit 1 with the agent's reason.
    let out = resync("public.nope", &["--token", TOKEN]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("Control.Resync") && stderr.contains("no replicated table"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN), "{stderr}");

    // By StarRocks name, for people.
    let out = resync("orders", &["--token", TOKEN]).await;
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("`public.orders`") && stdout.contains("other tables keep streaming"),
        "{stdout}"
    );

    // Already asked for: exit 1 saying so.
    let out = resync("public.orders", &["--token", TOKEN]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already being copied"),
        "{out:?}"
    );
    assert_eq!(running.handle.take_resyncs(), vec!["public.orders"]);

    // For scripts, once the previous copy is done.
    running.handle.copy_done("public.orders");
    let out = resync("public.orders", &["--token", TOKEN, "--json"]).await;
    assert!(out.status.success(), "{out:?}");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["rpc"], "Control.Resync");
    assert_eq!(answer["table"], "public.orders");
    assert_eq!(running.handle.take_resyncs(), vec!["public.orders"]);

    running.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_server_metrics_endpoint_and_stream() {
    let running = start(None).await;
    let handle = &running.handle;
    handle.add_table("public.orders", "orders");
    handle.set_phase(Phase::Cdc);
    handle.set_health(true, "streaming");
    let ops = OpCounts {
        inserted: 4,
        updated: 0,
        deleted: 2,
    };
    handle.record_load(
        "public.orders",
        ops,
        6,
        600,
        Duration::from_millis(3),
        false,
    );

    let metrics_addr = running.addrs.metrics.expect("metrics enabled");
    let answer = http_get(
        metrics_addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    for expected in [
        "starwal_rows_total{table=\"public.orders\",op=\"insert\"} 4",
        "starwal_rows_total{table=\"public.orders\",op=\"delete\"} 2",
        "starwal_rows_loaded_total{table=\"public.orders\"} 6",
        "starwal_bytes_loaded_total{table=\"public.orders\"} 600",
        "starwal_loads_total{table=\"public.orders\"} 1",
        "starwal_load_duration_seconds_bucket{table=\"public.orders\",le=\"0.005\"} 1",
        "starwal_load_duration_seconds_count{table=\"public.orders\"} 1",
        "starwal_phase{phase=\"CDC\"} 1",
        "starwal_up 1",
        "starwal_paused 0",
    ] {
        assert!(
            body.lines().any(|l| l == expected),
            "missing `{expected}`:\n{body}"
        );
    }
    #[cfg(target_os = "linux")]
    for family in [
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_start_time_seconds ",
    ] {
        assert!(
            body.lines().any(|l| l.starts_with(family)),
            "{family}:\n{body}"
        );
    }
    let not_found = http_get(metrics_addr, "GET /other HTTP/1.1\r\n\r\n").await;
    assert!(not_found.starts_with("HTTP/1.1 404 "), "{not_found}");
    let garbage = http_get(metrics_addr, "\u{1}\u{2}\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");

    // StreamMetrics: rates from counter deltas between samples.
    let mut metrics = pb::metrics_client::MetricsClient::new(running.channel().await);
    let mut samples = metrics
        .stream_metrics(pb::StreamMetricsRequest { interval_ms: 1 })
        .await
        .unwrap()
        .into_inner();
    let first = samples.message().await.unwrap().unwrap();
    // 1 ms asked, clamped to 100 ms.
    assert!(first.elapsed_seconds >= 0.09, "{first:?}");
    assert_eq!(first.phase, pb::Phase::Cdc as i32);
    handle.record_load(
        "public.orders",
        ops,
        6,
        600,
        Duration::from_millis(3),
        false,
    );
    let second = samples.message().await.unwrap().unwrap();
    assert!(second.rows_per_second > 0.0, "{second:?}");
    assert!(second.bytes_per_second > 0.0, "{second:?}");
    assert_eq!(second.tables.len(), 1);
    #[cfg(target_os = "linux")]
    assert!(second.rss_bytes.unwrap() > 0, "{second:?}");

    // Shutdown ends the stream rather than waiting for the client.
    running.shut_down().await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = samples.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "the metrics stream ends on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_server_cli_status_and_pause() {
    let running = start(Some(TOKEN)).await;
    running.handle.add_table("public.orders", "orders");
    running.handle.set_phase(Phase::Setup);
    let ops = OpCounts {
        inserted: 5,
        ..OpCounts::default()
    };
    running
        .handle
        .record_load("public.orders", ops, 5, 50, Duration::from_millis(1), false);
    let url = running.url();

    let out = starwal(vec![
        "status".into(),
        "--json".into(),
        "--addr".into(),
        url.clone(),
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "one JSON object: {stdout}"
    );
    let status: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(status["phase"], "SETUP");
    assert_eq!(status["serving"], false);
    assert_eq!(status["tables"][0]["source"], "public.orders");
    assert_eq!(status["tables"][0]["rows_inserted"], 5);

    let out = starwal(vec!["status".into(), "--addr".into(), url.clone()]).await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("SETUP") && text.contains("public.orders"),
        "{text}"
    );

    // Without the token: refused, exit 1, and told how to pass it.
    let out = starwal(vec!["pause".into(), "--addr".into(), url.clone()]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("--token"), "{stderr}");
    assert!(!running.handle.is_paused());

    let out = starwal(vec![
        "pause".into(),
        "--addr".into(),
        url.clone(),
        "--token".into(),
        TOKEN.into(),
        "--json".into(),
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["paused"], true);
    assert!(running.handle.is_paused());

    // Unreachable: exit 1 naming the address; malformed address: exit 2.
    let out = starwal(vec![
        "status".into(),
        "--addr".into(),
        "http://127.0.0.1:1".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://127.0.0.1:1"));
    let out = starwal(vec!["status".into(), "--addr".into(), "https://x:1".into()]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    running.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_server_reports_a_busy_port_by_variable() {
    let running = start(None).await;
    let config = Config::from_vars(vec![
        (
            "STARWAL_PG_URL".to_owned(),
            "postgres://u@localhost/db".to_owned(),
        ),
        ("STARWAL_TABLES".to_owned(), "public.t".to_owned()),
        (
            "STARWAL_CONTROL_ADDR".to_owned(),
            running.addrs.grpc.to_string(),
        ),
        ("STARWAL_METRICS_ADDR".to_owned(), "off".to_owned()),
    ])
    .unwrap();
    let handle = Arc::new(EngineHandle::new(&config));
    let err = ControlServer::bind(&config.control, handle)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("STARWAL_CONTROL_ADDR"), "{err}");
    running.shut_down().await;
}
