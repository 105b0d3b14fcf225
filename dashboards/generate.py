"""Generates vigil's Grafana dashboards with the Grafana Foundation SDK (grafana-foundation-sdk, pinned in
scripts/test-tools-requirements.txt): vigil-red.json (RED of the services vigil captures) and
vigil-coverage.json (which pods and processes vigil monitors, and vigil's own health).

    /opt/vigil-test-tools/bin/python dashboards/generate.py [OUTPUT_DIR]

OUTPUT_DIR defaults to this file's folder. The JSON is committed; integration/tests/dashboards.rs fails when
it differs from what this writes, and evaluates every panel query against a Prometheus scraping vigil.

Portable: the data source is the template variable `datasource` (type prometheus); the only uids are the
dashboards' own. Every label filter is a regex (`=~"$var"`) whose "All" value is `.*`, so that the empty
Kubernetes labels of processes outside Kubernetes match too.
"""

import json
import os
import sys

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DataTransformerConfig,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"

# gRPC statuses that are the server's fault (OBI's classification, docs/metrics.md).
GRPC_SERVER_ERRORS = "UNKNOWN|DEADLINE_EXCEEDED|UNIMPLEMENTED|INTERNAL|UNAVAILABLE|DATA_LOSS"

# The RED families the RED dashboard's variables take their values from.
RED_COUNTS = (
    "http_server_request_duration_seconds_count|http_client_request_duration_seconds_count|"
    "rpc_server_call_duration_seconds_count|rpc_client_call_duration_seconds_count"
)
# The RED dashboard's filter, in every selector.
RED_FILTER = 'k8s_namespace_name=~"$namespace", service_name=~"$service", k8s_pod_name=~"$pod"'
# The coverage dashboard's filter: vigil's node (its scrape target).
NODE_FILTER = 'instance=~"$instance"'


def datasource_variable():
    return (
        dash.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .description("The Prometheus that scrapes vigil.")
    )


def query_variable(name, label, query, description):
    """A multi-value variable with "All" = `.*` (matches the empty value too), from `label_values`."""
    return (
        dash.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def target(expr, legend, ref_id="A"):
    return (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref_id)
        .datasource(DATASOURCE)
    )


def instant_table_target(expr):
    return (
        prometheus.Dataquery()
        .expr(expr)
        .instant()
        .format(PromQueryFormat.TABLE)
        .ref_id("A")
        .datasource(DATASOURCE)
    )


def graph(title, description, unit, targets, span=12):
    """A time series panel; `targets` is a list of (expr, legend)."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .height(8)
        .span(span)
    )
    for index, (expr, legend) in enumerate(targets):
        panel = panel.with_target(target(expr, legend, chr(ord("A") + index)))
    return panel


def rate(selector):
    return f"rate({selector}[{RATE}])"


def ratio(by, errors, total):
    """errors / total by `by`; 0 (not "no data") where there are requests and no errors."""
    return (
        f"(sum by ({by}) ({rate(errors)}) or 0 * sum by ({by}) ({rate(total)}))\n"
        f"  / sum by ({by}) ({rate(total)})"
    )


def quantile(q, by, bucket):
    return f"histogram_quantile({q}, sum by ({by}, le) ({rate(bucket)}))"


def mean(by, family, filter_):
    return (
        f"sum by ({by}) ({rate(f'{family}_sum{{{filter_}}}')})\n"
        f"  / sum by ({by}) ({rate(f'{family}_count{{{filter_}}}')})"
    )


def http_panels(side):
    """The HTTP panels of `side` (server or client)."""
    family = f"http_{side}_request_duration_seconds"
    count = f"{family}_count{{{RED_FILTER}}}"
    errors = f'{family}_count{{{RED_FILTER}, http_response_status_code=~"5.."}}'
    bucket = f"{family}_bucket{{{RED_FILTER}}}"
    who = "served by the selected services" if side == "server" else "sent by the selected services"
    panels = [
        graph(
            f"HTTP {side} request rate",
            f"Requests per second {who}, by service (`{family}_count`).",
            "reqps",
            [(f"sum by (service_name) ({rate(count)})", "{{service_name}}")],
        ),
        graph(
            f"HTTP {side} error ratio (5xx)",
            f"Share of the requests {who} answered with a 5xx status, by service; 0 when there were "
            "requests and no 5xx.",
            "percentunit",
            [(ratio("service_name", errors, count), "{{service_name}}")],
        ),
        graph(
            f"HTTP {side} duration p50 / p90 / p99",
            f"Quantiles of the request duration ({family}), by service: "
            + (
                "from the read that brought the request line to the write of the response head."
                if side == "server"
                else "from the write of the request line to the read of the response head."
            ),
            "s",
            [
                (quantile(q, "service_name", bucket), f"{{{{service_name}}}} p{int(q * 100)}")
                for q in (0.5, 0.9, 0.99)
            ],
            span=24 if side == "client" else 12,
        ),
    ]
    if side == "server":
        panels.append(
            graph(
                "HTTP server request rate by route",
                "Requests per second by service and `http_route` (the path with identifiers replaced "
                "by `{id}`; `_overflow` past `metrics.max_routes_per_service`).",
                "reqps",
                [
                    (
                        f"sum by (service_name, http_route) ({rate(count)})",
                        "{{service_name}} {{http_route}}",
                    )
                ],
            )
        )
    for direction in ("request", "response"):
        body = f"http_{side}_{direction}_body_size_bytes"
        panels.append(
            graph(
                f"HTTP {side} {direction} body size (mean, p90)",
                f"Size of the {direction} bodies, by service (`{body}`): the mean and the 90th "
                "percentile (bucket-interpolated). Bodies behind heads over 1024 bytes are not "
                "measured (`vigil_http_unmeasured_bodies_total`).",
                "bytes",
                [
                    (mean("service_name", body, RED_FILTER), "{{service_name}} mean"),
                    (
                        quantile(0.9, "service_name", f"{body}_bucket{{{RED_FILTER}}}"),
                        "{{service_name}} p90",
                    ),
                ],
            )
        )
    return panels


def grpc_panels(side):
    """The gRPC panels of `side` (server or client)."""
    family = f"rpc_{side}_call_duration_seconds"
    count = f"{family}_count{{{RED_FILTER}}}"
    if side == "server":
        errors = f'{family}_count{{{RED_FILTER}, rpc_response_status_code=~"{GRPC_SERVER_ERRORS}"}}'
        error_meaning = f"a server-side failure status ({GRPC_SERVER_ERRORS.replace('|', ', ')})"
    else:
        errors = f'{family}_count{{{RED_FILTER}, rpc_response_status_code!="OK"}}'
        error_meaning = "any status but OK"
    bucket = f"{family}_bucket{{{RED_FILTER}}}"
    return [
        graph(
            f"gRPC {side} call rate by method",
            f"Calls per second by service and `rpc_method` (`package.Service/Method`), from `{family}`.",
            "reqps",
            [
                (
                    f"sum by (service_name, rpc_method) ({rate(count)})",
                    "{{service_name}} {{rpc_method}}",
                )
            ],
            span=8,
        ),
        graph(
            f"gRPC {side} error ratio",
            f"Share of the calls that ended with {error_meaning}, by service.",
            "percentunit",
            [(ratio("service_name", errors, count), "{{service_name}}")],
            span=8,
        ),
        graph(
            f"gRPC {side} duration p99 by method",
            f"99th percentile of the call duration by service and method (`{family}`), from the "
            "request headers to the end of the response.",
            "s",
            [
                (
                    quantile(0.99, "service_name, rpc_method", bucket),
                    "{{service_name}} {{rpc_method}}",
                )
            ],
            span=8,
        ),
    ]


def red_dashboard():
    builder = (
        dash.Dashboard("vigil / RED")
        .uid("vigil-red")
        .description(
            "Rate, errors and duration of the HTTP and gRPC traffic vigil captures, server and client side."
        )
        .tags(["vigil", "red"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(datasource_variable())
        .with_variable(
            query_variable(
                "namespace",
                "Namespace",
                f'label_values({{__name__=~"{RED_COUNTS}"}}, k8s_namespace_name)',
                "Kubernetes namespace (k8s_namespace_name); All also matches processes outside Kubernetes.",
            )
        )
        .with_variable(
            query_variable(
                "service",
                "Service",
                f'label_values({{__name__=~"{RED_COUNTS}", k8s_namespace_name=~"$namespace"}}, service_name)',
                "service_name: OTEL_SERVICE_NAME, the pod's app.kubernetes.io/name, its owner, or the executable.",
            )
        )
        .with_variable(
            query_variable(
                "pod",
                "Pod",
                f'label_values({{__name__=~"{RED_COUNTS}", k8s_namespace_name=~"$namespace", '
                f'service_name=~"$service"}}, k8s_pod_name)',
                "Kubernetes pod (k8s_pod_name); All also matches processes outside Kubernetes.",
            )
        )
    )
    sections = [
        ("HTTP server", http_panels("server")),
        ("HTTP client", http_panels("client")),
        ("gRPC server", grpc_panels("server")),
        ("gRPC client", grpc_panels("client")),
    ]
    for title, panels in sections:
        builder = builder.with_row(dash.Row(title))
        for panel in panels:
            builder = builder.with_panel(panel)
    return builder.build()


def coverage_dashboard():
    node = NODE_FILTER
    pods_table = (
        table.Panel()
        .title("Unmonitored pods")
        .description(
            "Pods vigil is expected to monitor and does not, with the reason (status) and, for "
            "unrecognized_protocol, what their traffic looks like (protocol): "
            '`vigil_pod_monitoring_status{status!="monitored"} == 1`. Needs vigil to watch the '
            "Kubernetes API; see the reasons in README.md."
        )
        .datasource(DATASOURCE)
        .height(8)
        .span(24)
        .with_target(
            instant_table_target(f'vigil_pod_monitoring_status{{{node}, status!="monitored"}} == 1')
        )
        .with_transformation(
            DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True, "Value": True, "__name__": True, "job": True},
                    "indexByName": {
                        "k8s_namespace_name": 0,
                        "k8s_pod_name": 1,
                        "status": 2,
                        "protocol": 3,
                        "instance": 4,
                    },
                    "renameByName": {
                        "k8s_namespace_name": "namespace",
                        "k8s_pod_name": "pod",
                        "status": "status",
                        "protocol": "protocol",
                        "instance": "node",
                    },
                },
            )
        )
    )
    probes_table = (
        table.Panel()
        .title("Probe status")
        .description(
            "vigil_probes_attached by program: 1 when an eBPF program is loaded and attached, 0 when "
            "not; for the TLS uprobes, the number of binaries they are attached to."
        )
        .datasource(DATASOURCE)
        .height(10)
        .span(12)
        .with_target(instant_table_target(f"vigil_probes_attached{{{node}}}"))
        .with_transformation(
            DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True, "__name__": True, "job": True},
                    "renameByName": {"instance": "node", "Value": "attached"},
                },
            )
        )
    )
    min_age = (
        stat.Panel()
        .title("Minimum process age")
        .description(
            "vigil_min_process_age_seconds: how old a matching process must be before its data is "
            "published (discovery.min_process_age; learned when auto)."
        )
        .datasource(DATASOURCE)
        .unit("s")
        .height(8)
        .span(6)
        .with_target(target(f"vigil_min_process_age_seconds{{{node}}}", "{{instance}}"))
    )
    sections = [
        (
            "Pods",
            [
                pods_table,
                graph(
                    "Unmonitored pods by reason",
                    "vigil_unmonitored_pods by namespace and reason: pods expected to be monitored that "
                    "are not. process_too_young and metadata_pending pass by themselves.",
                    "short",
                    [
                        (
                            f"sum by (k8s_namespace_name, reason) (vigil_unmonitored_pods{{{node}}})",
                            "{{k8s_namespace_name}} {{reason}}",
                        )
                    ],
                ),
                graph(
                    "Monitored pods",
                    "vigil_monitored_pods by namespace: expected pods at least one of whose processes "
                    "is instrumented.",
                    "short",
                    [
                        (
                            f"sum by (k8s_namespace_name) (vigil_monitored_pods{{{node}}})",
                            "{{k8s_namespace_name}}",
                        )
                    ],
                ),
            ],
        ),
        (
            "Processes",
            [
                graph(
                    "Instrumented vs discovered processes",
                    "vigil_discovered_processes by discovery state (candidate, pending_metadata, "
                    "provisional, instrumented, excluded), vigil_instrumented_processes, and all "
                    "processes in vigil's table (vigil_process_table_entries).",
                    "short",
                    [
                        (
                            f"sum by (state) (vigil_discovered_processes{{{node}}})",
                            "{{state}}",
                        ),
                        (f"sum(vigil_instrumented_processes{{{node}}})", "instrumented (published)"),
                        (f"sum(vigil_process_table_entries{{{node}}})", "process table"),
                    ],
                    span=10,
                ),
                graph(
                    "Exec → capture latency",
                    "vigil_instrumentation_latency_seconds: from the kernel event that made a process "
                    "match (exec, fork or listen) to its filter entry being in place, p50 and p99.",
                    "s",
                    [
                        (
                            quantile(0.5, "instance", f"vigil_instrumentation_latency_seconds_bucket{{{node}}}"),
                            "{{instance}} p50",
                        ),
                        (
                            quantile(0.99, "instance", f"vigil_instrumentation_latency_seconds_bucket{{{node}}}"),
                            "{{instance}} p99",
                        ),
                    ],
                    span=8,
                ),
                min_age,
                graph(
                    "Published and short-lived processes",
                    "Per second: matching processes that reached the minimum age "
                    "(vigil_published_processes_total) and those that died younger, their data dropped "
                    "(vigil_short_lived_processes_total).",
                    "ops",
                    [
                        (f"sum({rate(f'vigil_published_processes_total{{{node}}}')})", "published"),
                        (f"sum({rate(f'vigil_short_lived_processes_total{{{node}}}')})", "short-lived"),
                    ],
                    span=24,
                ),
            ],
        ),
        (
            "Discovery and capture health",
            [
                graph(
                    "Heartbeat failures",
                    "vigil_heartbeat_failures_total per second by reason: captured processes found gone "
                    "(process_gone), filter entries restored (filter_entry_missing), /proc read failures.",
                    "ops",
                    [
                        (
                            f"sum by (reason) ({rate(f'vigil_heartbeat_failures_total{{{node}}}')})",
                            "{{reason}}",
                        )
                    ],
                    span=8,
                ),
                graph(
                    "Reconcile corrections",
                    "vigil_reconcile_corrections_total per second by kind: what the /proc reconcile "
                    "corrected. Any increase means the kernel event path lost something.",
                    "ops",
                    [
                        (
                            f"sum by (kind) ({rate(f'vigil_reconcile_corrections_total{{{node}}}')})",
                            "{{kind}}",
                        )
                    ],
                    span=8,
                ),
                graph(
                    "eBPF events lost",
                    "vigil_ebpf_events_lost_total per second by source: records the kernel programs "
                    "could not deliver (ring buffer or map full).",
                    "ops",
                    [
                        (
                            f"sum by (source) ({rate(f'vigil_ebpf_events_lost_total{{{node}}}')})",
                            "{{source}}",
                        )
                    ],
                    span=8,
                ),
                probes_table,
                graph(
                    "Probe errors",
                    "vigil_probe_errors_total per second by program and stage (layout, load, attach).",
                    "ops",
                    [
                        (
                            f"sum by (program, stage) ({rate(f'vigil_probe_errors_total{{{node}}}')})",
                            "{{program}} {{stage}}",
                        )
                    ],
                ),
                graph(
                    "HTTP/2 desync",
                    "vigil_http2_desync_total per second by reason: HTTP/2 connection directions whose "
                    "state vigil lost (adopted, frames, headers, streams).",
                    "ops",
                    [
                        (
                            f"sum by (reason) ({rate(f'vigil_http2_desync_total{{{node}}}')})",
                            "{{reason}}",
                        )
                    ],
                    span=8,
                ),
                graph(
                    "Uncaptured connections",
                    "vigil_uncaptured_connections_total per second by reason: connections accepted on "
                    "captured ports with no request recognised (traffic_not_captured, "
                    "unrecognized_protocol).",
                    "ops",
                    [
                        (
                            f"sum by (reason) ({rate(f'vigil_uncaptured_connections_total{{{node}}}')})",
                            "{{reason}}",
                        )
                    ],
                    span=8,
                ),
                graph(
                    "Instrumentation errors",
                    "vigil_instrumentation_errors_total per second by stage and reason: failed steps, "
                    "each retried with backoff.",
                    "ops",
                    [
                        (
                            f"sum by (stage, reason) ({rate(f'vigil_instrumentation_errors_total{{{node}}}')})",
                            "{{stage}} {{reason}}",
                        )
                    ],
                    span=8,
                ),
            ],
        ),
        (
            "vigil itself",
            [
                graph(
                    "vigil CPU",
                    "CPU seconds per second of each vigil process (its own process_cpu_seconds_total, "
                    "user and system time).",
                    "percentunit",
                    [
                        (
                            f"rate(process_cpu_seconds_total[{RATE}]) and on (job, instance) "
                            f"vigil_build_info{{{node}}}",
                            "{{instance}}",
                        )
                    ],
                    span=8,
                ),
                graph(
                    "vigil memory",
                    "Resident memory of each vigil process (its own process_resident_memory_bytes). "
                    "README.md states what bounds it.",
                    "bytes",
                    [
                        (
                            "process_resident_memory_bytes and on (job, instance) "
                            f"vigil_build_info{{{node}}}",
                            "{{instance}}",
                        )
                    ],
                    span=8,
                ),
                graph(
                    "/metrics scrape cost",
                    "Prometheus's own measure of each vigil scrape: its duration and the samples it "
                    "returned (scrape_duration_seconds, scrape_samples_scraped of vigil's targets).",
                    "s",
                    [
                        (
                            f"scrape_duration_seconds and on (job, instance) vigil_build_info{{{node}}}",
                            "{{instance}} duration",
                        ),
                        (
                            f"scrape_samples_scraped and on (job, instance) vigil_build_info{{{node}}}",
                            "{{instance}} samples",
                        ),
                    ],
                    span=8,
                ).override_by_regexp(
                    ".* samples",
                    [{"id": "unit", "value": "short"}, {"id": "custom.axisPlacement", "value": "right"}],
                ),
                graph(
                    "Socket I/O records",
                    "vigil_io_events_total per second by kind: the socket I/O records of instrumented "
                    "processes vigil handles, its work per request.",
                    "ops",
                    [
                        (
                            f"sum by (kind) ({rate(f'vigil_io_events_total{{{node}}}')})",
                            "{{kind}}",
                        )
                    ],
                    span=24,
                ),
            ],
        ),
    ]
    builder = (
        dash.Dashboard("vigil / Coverage and discovery health")
        .uid("vigil-coverage")
        .description(
            "Which pods and processes vigil monitors and why not, and the health of its discovery, "
            "capture and eBPF probes."
        )
        .tags(["vigil", "coverage"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(datasource_variable())
        .with_variable(
            query_variable(
                "instance",
                "Node",
                "label_values(vigil_build_info, instance)",
                "The vigil scrape target (one per node).",
            )
        )
    )
    for title, panels in sections:
        builder = builder.with_row(dash.Row(title))
        for panel in panels:
            builder = builder.with_panel(panel)
    return builder.build()


def number_panels(model):
    """Panel ids 1, 2, … in layout order (rows and the panels they hold): stable across runs."""
    next_id = 0
    for panel in model.panels:
        next_id += 1
        panel.id_val = next_id
        for inner in getattr(panel, "panels", None) or []:
            next_id += 1
            inner.id_val = next_id
    return model


def write(directory, name, model):
    number_panels(model)
    text = json.dumps(model, cls=JSONEncoder, sort_keys=True, indent=2) + "\n"
    with open(os.path.join(directory, name), "w", encoding="utf-8") as out:
        out.write(text)


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    write(directory, "vigil-red.json", red_dashboard())
    write(directory, "vigil-coverage.json", coverage_dashboard())


if __name__ == "__main__":
    main()
