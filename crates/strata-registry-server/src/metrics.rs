//! Prometheus metrics and the structured access log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::server::AppState;

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<HashMap<(String, u16), u64>>,
    duration_sum_us: AtomicU64,
    duration_count: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
}

/// Filled by the handler with the signed-in account, read by the access log.
#[derive(Clone, Default)]
pub struct UserSlot(Arc<OnceLock<String>>);

impl UserSlot {
    pub fn set(&self, user: String) {
        let _ = self.0.set(user);
    }
}

impl Metrics {
    pub fn add_received(&self, n: u64) {
        self.bytes_received.fetch_add(n, Ordering::Relaxed);
    }

    fn record(&self, method: &str, status: u16, micros: u64, sent: u64) {
        *self.requests.lock().expect("metrics").entry((method.to_string(), status)).or_default() +=
            1;
        self.duration_sum_us.fetch_add(micros, Ordering::Relaxed);
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(sent, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format.
    pub fn render(&self, active_uploads: usize) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP strata_registry_http_requests_total HTTP requests by method and status.\n",
        );
        out.push_str("# TYPE strata_registry_http_requests_total counter\n");
        let mut rows: Vec<_> =
            self.requests.lock().expect("metrics").iter().map(|(k, v)| (k.clone(), *v)).collect();
        rows.sort();
        for ((m, s), v) in rows {
            out.push_str(&format!(
                "strata_registry_http_requests_total{{method=\"{m}\",status=\"{s}\"}} {v}\n"
            ));
        }
        let sum = self.duration_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        out.push_str(
            "# HELP strata_registry_http_request_duration_seconds Time spent answering requests.\n",
        );
        out.push_str("# TYPE strata_registry_http_request_duration_seconds summary\n");
        out.push_str(&format!("strata_registry_http_request_duration_seconds_sum {sum}\n"));
        out.push_str(&format!(
            "strata_registry_http_request_duration_seconds_count {}\n",
            self.duration_count.load(Ordering::Relaxed)
        ));
        out.push_str("# TYPE strata_registry_bytes_sent_total counter\n");
        out.push_str(&format!(
            "strata_registry_bytes_sent_total {}\n",
            self.bytes_sent.load(Ordering::Relaxed)
        ));
        out.push_str("# TYPE strata_registry_bytes_received_total counter\n");
        out.push_str(&format!(
            "strata_registry_bytes_received_total {}\n",
            self.bytes_received.load(Ordering::Relaxed)
        ));
        out.push_str("# TYPE strata_registry_upload_sessions gauge\n");
        out.push_str(&format!("strata_registry_upload_sessions {active_uploads}\n"));
        out
    }
}

/// Middleware: one access-log line per request and the request counters.
pub async fn access_log(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let peer =
        req.extensions().get::<crate::PeerAddr>().map(|p| p.0.to_string()).unwrap_or_default();
    let slot = UserSlot::default();
    req.extensions_mut().insert(slot.clone());
    let resp = next.run(req).await;
    let micros = start.elapsed().as_micros() as u64;
    let status = resp.status().as_u16();
    let sent = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|_| method != "HEAD")
        .unwrap_or(0);
    st.metrics.record(&method, status, micros, sent);
    let user = slot.0.get().map(String::as_str).unwrap_or("-");
    tracing::info!(target: "strata_registry::access", %peer, %method, %path, status, bytes = sent, micros, user, "request");
    resp
}
