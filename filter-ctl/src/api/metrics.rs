//! `/metrics`: the controller's status and the kernel's counters in the
//! Prometheus (OpenMetrics) text format, made with prometheus-client from
//! one `status` and one `stats` answer per scrape.

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, MetricType, TypedMetric},
    registry::Registry,
};

use crate::service::ops::{StatsReport, StatusReport, CYCLE_BUCKETS_S};

/// The controller's cycle durations as it counted them (a histogram known
/// only as its buckets, not observed here).
#[derive(Debug)]
struct Snapshot {
    sum: f64,
    count: u64,
    /// (upper bound, count in that bucket alone); the last is +Inf.
    buckets: Vec<(f64, u64)>,
}

impl TypedMetric for Snapshot {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Snapshot {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn cycle_histogram(status: &StatusReport) -> Snapshot {
    let mut buckets = Vec::new();
    let mut below = 0;
    for (bound, cumulative) in CYCLE_BUCKETS_S.iter().zip(&status.cycle_buckets) {
        buckets.push((*bound, cumulative.saturating_sub(below)));
        below = *cumulative;
    }
    // prometheus-client writes f64::MAX as +Inf.
    buckets.push((f64::MAX, status.cycles.saturating_sub(below)));
    Snapshot {
        sum: status.cycle_sum_s,
        count: status.cycles,
        buckets,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Map {
    map: String,
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
    drops: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Name {
    name: String,
}

fn counter(r: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    r.register(name, help, c);
}

fn gauge(r: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    r.register(name, help, g);
}

fn gauge_f(r: &mut Registry, name: &str, help: &str, value: f64) {
    let g: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    g.set(value);
    r.register(name, help, g);
}

/// Adds the access log's write errors (the API's own) before the end mark.
pub fn append_access_errors(text: &mut String, errors: u64) {
    let mut r = Registry::with_prefix("filter");
    counter(
        &mut r,
        "access_log_write_errors",
        "API access log lines that could not be written",
        errors,
    );
    let mut more = String::new();
    let _ = encode(&mut more, &r);
    let eof = "# EOF\n";
    if let (Some(at), Some(body)) = (text.rfind(eof), more.strip_suffix(eof)) {
        text.insert_str(at, body);
    }
}

/// The metrics text for one scrape.
pub fn render(status: &StatusReport, stats: &StatsReport) -> String {
    let mut r = Registry::with_prefix("filter");
    let packets = Family::<Reason, Counter>::default();
    let bytes = Family::<Reason, Counter>::default();
    for s in &stats.reasons {
        let l = Reason {
            reason: s.reason.clone(),
            drops: s.drops.to_string(),
        };
        packets.get_or_create(&l).inc_by(s.packets);
        bytes.get_or_create(&l).inc_by(s.bytes);
    }
    r.register(
        "packets",
        "Packets by verdict reason (since the maps were created)",
        packets,
    );
    r.register("bytes", "Bytes by verdict reason", bytes);
    gauge(
        &mut r,
        "interfaces",
        "Interfaces the filter is attached to",
        stats.attached.len() as i64,
    );
    gauge(
        &mut r,
        "interfaces_lost",
        "Interfaces whose filter is gone, waiting to be attached again",
        status.lost_interfaces.len() as i64,
    );
    gauge(
        &mut r,
        "tracked_sources",
        "Sources with exact counters (entries added, up to the map's capacity)",
        status.tracked_sources as i64,
    );
    gauge(
        &mut r,
        "blocked_entries",
        "Live blocklist entries",
        status.blocked_entries as i64,
    );
    gauge(
        &mut r,
        "allowed_entries",
        "Live allowlist entries",
        status.allowed_entries as i64,
    );
    gauge(
        &mut r,
        "block_list_full",
        "1 while promotions are skipped for want of room",
        status.block_list_full as i64,
    );
    counter(
        &mut r,
        "promotions",
        "Offenders promoted by this controller",
        status.promotions,
    );
    counter(
        &mut r,
        "promotions_skipped",
        "Promotions skipped: no room in the block list",
        status.promotions_skipped,
    );
    counter(&mut r, "expiries", "List entries expired", status.expiries);
    counter(
        &mut r,
        "detection_events",
        "Sources the data path reported crossing a detection trigger",
        status.events,
    );
    counter(
        &mut r,
        "detection_events_lost",
        "Reports the data path could not push (ring full); each forces a full scan",
        status.events_lost,
    );
    counter(
        &mut r,
        "full_scans",
        "Cycles that judged every tracked source",
        status.full_scans,
    );
    counter(
        &mut r,
        "controller_cycles",
        "Control-loop cycles",
        status.cycles,
    );
    r.register(
        "controller_cycle_seconds",
        "Durations of the control-loop cycles",
        cycle_histogram(status),
    );
    let rates = Family::<Name, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (flag, rate) in &status.flag_rates {
        rates.get_or_create(&Name { name: flag.clone() }).set(*rate);
    }
    r.register(
        "tracked_packets_per_second",
        "Packets per second by flag class, tracked sources, last cycle",
        rates,
    );
    let by_reason = Family::<Name, Counter>::default();
    for (name, n) in &status.promotions_by_reason {
        by_reason
            .get_or_create(&Name { name: name.clone() })
            .inc_by(*n);
    }
    r.register(
        "promotions_by_reason",
        "Offenders promoted, by detection",
        by_reason,
    );
    let fill = Family::<Map, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let entries = Family::<Map, Gauge>::default();
    for (map, used, capacity) in &status.map_fill {
        let l = Map { map: map.clone() };
        entries.get_or_create(&l).set(*used as i64);
        fill.get_or_create(&l)
            .set(*used as f64 / (*capacity).max(1) as f64);
    }
    r.register(
        "map_entries",
        "Entries in the maps an operator sizes",
        entries,
    );
    r.register("map_fill_ratio", "Entries over capacity", fill);
    gauge_f(
        &mut r,
        "controller_last_cycle_seconds",
        "Duration of the last control-loop cycle",
        status.last_cycle_ms / 1e3,
    );
    gauge(
        &mut r,
        "controller_uptime_seconds",
        "Controller uptime",
        status.uptime_s as i64,
    );
    counter(
        &mut r,
        "audit_write_errors",
        "Audit records that could not be written",
        status.audit_write_errors,
    );
    counter(
        &mut r,
        "alerts_dropped",
        "Alerts dropped: the webhook's queue was full",
        status.alerts_dropped,
    );
    let thresholds = Family::<Name, Gauge>::default();
    for t in &status.thresholds {
        let name = serde_json::to_value(t.name)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        thresholds.get_or_create(&Name { name }).set(t.value as i64);
    }
    r.register("threshold", "Effective thresholds", thresholds);
    let v = &status.verification;
    gauge(
        &mut r,
        "verification_active",
        "1 while SYNs are challenged",
        v.active as i64,
    );
    gauge_f(
        &mut r,
        "verification_syn_rate",
        "SYNs per second, all sources",
        v.syn_rate,
    );
    counter(
        &mut r,
        "verification_cookies_sent",
        "SYN-ACKs with a cookie sent from XDP",
        v.cookies_sent,
    );
    counter(
        &mut r,
        "verification_first_syns_dropped",
        "First SYNs dropped as challenges",
        v.dropped_unverified,
    );
    counter(&mut r, "verification_passed", "Sources verified", v.passed);
    counter(&mut r, "verification_failed", "Challenges failed", v.failed);
    counter(
        &mut r,
        "verification_handed_over",
        "Cookie ACKs handed to a listener",
        v.handed_over,
    );
    counter(
        &mut r,
        "verification_handover_failed",
        "Cookie ACKs the kernel refused to hand over",
        v.handover_failed,
    );
    gauge(
        &mut r,
        "verified_sources",
        "Sources verified now",
        v.verified_sources as i64,
    );
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}
