import AssertionSources
import BrokerServer
import CoreMetrics
import FoundationEssentials
import Glibc
import Metrics
import Prometheus
import Synchronization
import TokenCache
import TokenExchange

/// The Prometheus side of the broker. Counters and histograms are recorded where
/// things happen, through swift-metrics (`tokenbroker_requests_total` here,
/// `tokenbroker_cache_*` and `tokenbroker_upstream_*` in the cache); gauges that
/// describe state (token expiry, assertion age, connections) are read at scrape time.
/// Names and meanings: docs/operations.md, "Metrics".
final class BrokerMetrics: MetricsExposition {
    let registry = PrometheusCollectorRegistry()
    private let runtime = Mutex<BrokerRuntime?>(nil)
    private let openConnections: Mutex<(@Sendable () -> Int)?> = Mutex(nil)
    private let requestCounters = Mutex<[String: CoreMetrics.Counter]>([:])
    private let stateGauges = Mutex<[String: Prometheus.Gauge]>([:])
    /// The successful socket ops, nearly every request there is: made up front (so they
    /// start at 0, as Prometheus advises) and counted without the lock.
    private let tokenOK: CoreMetrics.Counter
    private let statusOK: CoreMetrics.Counter
    private let pingOK: CoreMetrics.Counter

    /// Routes swift-metrics to this registry (once per process: `MetricsSystem` allows one).
    init() {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        tokenOK = Self.requestCounter(op: "token", outcome: "ok")
        statusOK = Self.requestCounter(op: "status", outcome: "ok")
        pingOK = Self.requestCounter(op: "ping", outcome: "ok")
    }

    /// The runtime whose state the gauges describe (created after the counters exist).
    func describe(_ runtime: BrokerRuntime) {
        self.runtime.withLock { $0 = runtime }
    }

    /// Where the open-connection count comes from (the server, once created).
    func countConnections(_ source: @escaping @Sendable () -> Int) {
        openConnections.withLock { $0 = source }
    }

    /// Counts one answered request: `tokenbroker_requests_total{op,outcome}`.
    /// The `op` label values: socket ops and the compatibility endpoints' protocols.
    static let operations: Set<String> = ["token", "status", "ping", "imds", "app_service", "aws_credentials"]

    func countRequests(op: String, outcome: String, count: Int = 1) {
        if outcome == "ok" {
            switch op {
            case "token": return tokenOK.increment(by: count)
            case "status": return statusOK.increment(by: count)
            case "ping": return pingOK.increment(by: count)
            default: break
            }
        }
        // Unknown ops are one label value, so a caller cannot grow the label set.
        let op = Self.operations.contains(op) ? op : "other"
        let key = op + "|" + outcome
        let counter = requestCounters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = Self.requestCounter(op: op, outcome: outcome)
            counters[key] = counter
            return counter
        }
        counter.increment(by: count)
    }

    private static func requestCounter(op: String, outcome: String) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: "tokenbroker_requests_total", dimensions: [("op", op), ("outcome", outcome)])
    }

    func prometheusText() -> String {
        refreshStateGauges()
        return registry.emitToString()
    }

    /// Sets the state gauges to their current values and unregisters those whose
    /// identity or scope is gone, so evicted scopes do not linger as series.
    private func refreshStateGauges() {
        let now = Date()
        var values: [String: (name: String, labels: [(String, String)], value: Double)] = [:]
        func put(_ name: String, _ labels: [(String, String)], _ value: Double) {
            values[name + labels.map { "|\($0.0)=\($0.1)" }.joined()] = (name, labels, value)
        }
        put("tokenbroker_open_connections", [], Double(openConnections.withLock { $0?() } ?? 0))
        guard let runtime = runtime.withLock({ $0 }) else { return }
        put("tokenbroker_cached_tokens", [], Double(runtime.cache.count))
        if let pods = runtime.broker.pods {
            // Node mode: bounded series (one per node, one per service account served).
            let counts = pods.registry.counts
            put("tokenbroker_kubernetes_pods", [], Double(counts.pods))
            put("tokenbroker_kubernetes_pod_tokens", [], Double(counts.tokens))
            for (account, cached) in pods.cachedTokensByAccount() {
                put("tokenbroker_kubernetes_cached_tokens", [("namespace", account.namespace), ("serviceaccount", account.name)], Double(cached))
            }
        }
        for sink in runtime.sinks.gaugeValues() {
            put("tokenbroker_sink_failing", [("path", sink.path)], sink.failing ? 1 : 0)
            if let left = sink.expiresIn { put("tokenbroker_sink_token_expires_in_seconds", [("path", sink.path)], left) }
        }
        for identity in runtime.broker.currentIdentities {
            let name = identity.configuration.name
            for entry in runtime.cache.snapshot(identity: name) {
                guard let left = entry.expiresIn else { continue }
                put("tokenbroker_token_expires_in_seconds", [("identity", name), ("scope", entry.scope.value)], Double(left.components.seconds))
            }
            let snapshot = identity.source.snapshot()
            if let claims = snapshot.claims {
                if let issued = claims.issuedAt ?? snapshot.loadedAt {
                    put("tokenbroker_assertion_age_seconds", [("identity", name)], now.timeIntervalSince(issued).rounded())
                }
                if let expires = claims.expiresAt {
                    put("tokenbroker_assertion_expires_in_seconds", [("identity", name)], expires.timeIntervalSince(now).rounded())
                }
            }
        }
        stateGauges.withLock { gauges in
            for (key, gauge) in gauges where values[key] == nil {
                registry.unregisterGauge(gauge)
                gauges.removeValue(forKey: key)
            }
            for (key, value) in values {
                let gauge =
                    gauges[key]
                    ?? registry.makeGauge(descriptor: MetricNameDescriptor(metricName: value.name, unitName: "", helpText: ""), labels: value.labels)
                gauges[key] = gauge
                gauge.set(value.value)
            }
        }
    }
}
