"""The scale benchmark's report (bench/scale.py): tables, issue 15's targets, JSON and chart."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.run import Target

# Issue 15's targets.
COST_RATIO_LIMIT = 1.15
SESSION_BYTES_LIMIT = 2048
SESSION_BYTES_DRIFT = 0.10  # bytes per session after many refreshes vs after the first
GROWTH_LIMIT = 5_000_000  # database bytes per million refreshes
PURGE_RATE_LIMIT = 100_000  # ended sessions deleted per second
PURGE_P99_LIMIT = 2.0


def targets(report: dict) -> list[Target]:
    out: list[Target] = []
    costs = report.get("costs")
    if costs:
        by_scenario: dict[str, list[dict]] = {}
        for row in costs["rows"]:
            by_scenario.setdefault(row["scenario"], []).append(row)
        for name, rows in by_scenario.items():
            worst = max(rows, key=lambda r: -math.inf if math.isnan(r["ratio"]) else r["ratio"])
            rounds = worst["ratio_by_round"]
            out.append(
                Target(
                    f"{name}: large/small server CPU per request <= {COST_RATIO_LIMIT}",
                    worst["ratio"] <= COST_RATIO_LIMIT,
                    f"{worst['ratio']:.2f} at c={worst['concurrency']} (small "
                    f"{worst['small']['cpu_ms_per_request']:.2f} ms, large "
                    f"{worst['large']['cpu_ms_per_request']:.2f} ms; rounds "
                    f"{min(rounds):.2f}-{max(rounds):.2f})"
                    if rounds
                    else "not measured",
                )
            )
        errors = sum(r["small"]["errors"] + r["large"]["errors"] for r in costs["rows"])
        out.append(Target("zero errors in the cost windows", errors == 0, f"{errors} error(s)"))
    else:
        out.append(Target("large/small cost ratio per endpoint", None, "not run"))

    storage = report.get("storage")
    if storage:
        points = storage["checkpoints"]
        worst = max(c["bytes_per_session"] for c in points)
        last = points[-1]
        out.append(
            Target(
                f"bytes per live session (all its tables and indexes) <= {SESSION_BYTES_LIMIT}",
                worst <= SESSION_BYTES_LIMIT,
                f"{points[0]['bytes_per_session']:.0f} B at sign-in, "
                f"{last['bytes_per_session']:.0f} B after {last['refreshes_per_session']:.1f} "
                f"refreshes each; worst {worst:.0f} B",
            )
        )
        g = storage["growth"]
        base = next(c for c in points if c["refreshes"] == g["from_refreshes"])
        drift = (last["bytes_per_session"] - base["bytes_per_session"]) / max(
            base["bytes_per_session"], 1.0
        )
        out.append(
            Target(
                "bytes per live session independent of how often it refreshed "
                f"(+{SESSION_BYTES_DRIFT:.0%} at most)",
                len(points) > 2 and drift <= SESSION_BYTES_DRIFT,
                f"{base['bytes_per_session']:.0f} B after {base['refreshes_per_session']:.1f} "
                f"refreshes each, {last['bytes_per_session']:.0f} B after "
                f"{last['refreshes_per_session']:.1f} ({drift:+.1%})",
            )
        )
        out.append(
            Target(
                f"database growth per million refreshes (not WAL) <= {GROWTH_LIMIT / 1e6:g} MB",
                not math.isnan(g["per_million"]) and g["per_million"] <= GROWTH_LIMIT,
                f"{g['per_million'] / 1e6:.2f} MB over refreshes {g['from_refreshes']:,}-"
                f"{g['to_refreshes']:,} ({g['bytes']:,} bytes); first refresh of each session "
                f"{g['first_refresh_bytes_per_session']:.0f} B once",
            )
        )
        check = storage["login_check"]
        out.append(
            Target(
                "the measured sign-ins write what a login through the server writes",
                check["same"],
                f"login {check['login']} (HTTP {check['login_status']}), "
                f"sign-in {check['sign_in']}",
            )
        )
    else:
        out.append(Target("bytes per live session, growth per million refreshes", None, "not run"))

    purge = report.get("purge")
    if purge:
        rate = purge["sessions_per_second"]
        out.append(
            Target(
                f"purge >= {PURGE_RATE_LIMIT:,} ended sessions per second",
                rate >= PURGE_RATE_LIMIT,
                f"{rate:,.0f}/s: {purge['sessions_deleted']:,} sessions in {purge['seconds']} s"
                + ("" if purge.get("completed", True) else " (stopped before the end)")
                + (
                    f"; --max-rate {purge['max_rate']:g}, "
                    f"{purge['sessions_per_working_second']:,.0f}/s between its sleeps"
                    if purge.get("max_rate")
                    else ""
                ),
            )
        )
        before, during = purge["refresh_before"]["p99_ms"], purge["refresh_during"]["p99_ms"]
        ratio = during / before if before else math.nan
        out.append(
            Target(
                f"refresh p99 during the purge <= {PURGE_P99_LIMIT:g} x without",
                ratio <= PURGE_P99_LIMIT,
                f"{during:.1f} ms during, {before:.1f} ms before ({ratio:.2f} x)",
            )
        )
    else:
        out.append(Target("purge rate and refresh p99 during the purge", None, "not run"))
    return out


def _ms(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def seeding_table(report: dict) -> str:
    lines = [
        f"{'database':<10}{'table':<18}{'rows':>14}{'COPY s':>9}{'index s':>9}",
        "-" * 60,
    ]
    for label, seeded in report["seeding"].items():
        for table in seeded["tables"]:
            lines.append(
                f"{label:<10}{table['table']:<18}{table['rows']:>14,}"
                f"{table['copy_seconds']:>9.0f}{table['index_seconds']:>9.0f}"
            )
        lines.append(
            f"{label:<10}{'(total)':<18}{'':>14}  {seeded['seconds']:.0f} s including VACUUM "
            f"ANALYZE {seeded['vacuum_analyze_seconds']:.0f} s; migrate "
            f"{seeded['migrate_seconds']:.0f} s; {seeded['indexes_checked']} indexes as migrate "
            f"made them; {seeded.get('audit_partitions_created', 0)} audit partitions created; "
            f"foreign-key checks {seeded['foreign_key_checks']}"
        )
    return "\n".join(lines)


def costs_table(costs: dict) -> str:
    header = (
        f"{'endpoint':<20}{'conc':>5}{'small ms':>10}{'(PG)':>7}{'large ms':>10}{'(PG)':>7}"
        f"{'large/small':>13}{'rounds':>13}{'small r/s':>11}{'large r/s':>11}{'errors':>8}"
    )
    lines = [header, "-" * len(header)]
    for row in costs["rows"]:
        small, large = row["small"], row["large"]
        rounds = row["ratio_by_round"]
        spread = f"{min(rounds):.2f}-{max(rounds):.2f}" if rounds else "-"
        lines.append(
            f"{row['scenario']:<20}{row['concurrency']:>5}"
            f"{_ms(small['cpu_ms_per_request']):>10}{_ms(small['postgres_ms_per_request']):>7}"
            f"{_ms(large['cpu_ms_per_request']):>10}{_ms(large['postgres_ms_per_request']):>7}"
            f"{row['ratio']:>13.2f}{spread:>13}{small['rps']:>11.1f}{large['rps']:>11.1f}"
            f"{small['errors'] + large['errors']:>8}"
        )
    return "\n".join(lines)


def storage_text(storage: dict) -> str:
    lines = [
        f"{storage['sign_ins']:,} sign-ins ({storage['sign_in_seconds']:.0f} s): "
        f"{storage['bytes_per_session']:.0f} bytes per live session, of which:"
    ]
    for name, value in sorted(storage["breakdown"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    {value:8.1f}  {name}")
    lines.append("refreshes of those sessions through the server (round robin):")
    lines.append(
        f"    {'refreshes':>10}{'per session':>13}{'bytes/session':>15}{'database':>18}"
        f"{'non-HOT':>9}{'held':>6}"
    )
    for point in storage["checkpoints"]:
        cold = point["updates"] - point["hot_updates"] if "updates" in point else None
        held = point.get("horizon", {}).get("other_databases_held_share")
        lines.append(
            f"    {point['refreshes']:>10,}{point['refreshes_per_session']:>13.1f}"
            f"{point['bytes_per_session']:>15.0f}{point['database']:>18,}"
            f"{'-' if cold is None else f'{cold:,}':>9}"
            f"{'-' if held is None else f'{held:.0%}':>6}"
        )
    lines.append(
        "    (non-HOT: updates of tokens_session in the window that moved the row to another "
        "page; held: share of the window in which a transaction in another database held a "
        "transaction id for over 1 s, which stops pruning here)"
    )
    g = storage["growth"]
    lines.append(
        f"growth: {g['per_million'] / 1e6:.2f} MB per million refreshes (refreshes "
        f"{g['from_refreshes']:,}-{g['to_refreshes']:,}); from the sign-ins on "
        f"{g['total_per_million'] / 1e6:.2f} MB per million, of which the first refresh of each "
        f"session {g['first_refresh_bytes_per_session']:.0f} B once"
    )
    hot = storage.get("session_updates")
    if hot and hot["all"]:
        lines.append(
            f"tokens_session updates during the refreshes: {hot['all']:,}, of which HOT "
            f"{hot['hot']:,} ({hot['hot'] / hot['all']:.1%})"
        )
    horizon = storage.get("horizon")
    if horizon and horizon.get("samples"):
        lines.append(
            "transaction ids held for over 1 s during the refreshes: in other databases "
            f"{horizon['other_databases_held_share']:.0%} of the time (longest "
            f"{horizon['other_databases_longest_s']:g} s), in this one (or a snapshot) "
            f"{horizon['this_database_held_share']:.0%} (longest "
            f"{horizon['this_database_longest_s']:g} s)"
        )
    grown = sorted(storage["after_refreshes_breakdown"].items(), key=lambda kv: -kv[1])[:6]
    lines.append(
        "bytes per session after the refreshes, largest: "
        + ", ".join(f"{name} {value:.0f}" for name, value in grown)
    )
    lines.append(
        f"plain VACUUM of {', '.join(storage['vacuum']) or 'nothing'} afterwards: "
        f"{storage['after_vacuum_bytes_per_session']:.0f} database bytes per session"
    )
    return "\n".join(lines)


def purge_text(purge: dict) -> str:
    lines = [f"purge_expired_sessions: {purge['output']}"]
    lines.append(
        f"  {purge['sessions_deleted']:,} sessions in {purge['seconds']} s = "
        f"{purge['sessions_per_second']:,.0f}/s; its PostgreSQL backend "
        f"{purge['purge_backend_cpu_seconds']} s of CPU "
        f"({_ms(purge['purge_backend_us_per_session'])} us per session deleted)"
    )
    if purge.get("max_rate"):
        lines.append(
            f"  --max-rate {purge['max_rate']:g}: slept {purge['slept_seconds']:.1f} s between "
            f"batches; {purge['sessions_per_working_second']:,.0f} sessions per second of work"
        )
    if "wal_bytes" in purge:
        lines.append(
            f"  WAL written meanwhile {purge['wal_bytes'] / 1e9:.2f} GB (server-wide); "
            f"checkpoints {purge['checkpoints_requested']} requested by WAL volume, "
            f"{purge['checkpoints_timed']} timed"
        )
    if purge.get("page_cache_dirty_peak_bytes") is not None:
        before, peak = purge["page_cache_dirty_before_bytes"], purge["page_cache_dirty_peak_bytes"]
        lines.append(
            f"  page cache waiting to be written: {(before or 0) / 1e6:,.0f} MB before, "
            f"at most {peak / 1e6:,.0f} MB meanwhile"
        )
    lines.append(f"  refresh at c={purge['concurrency']}:")
    for when in ("before", "during", "after"):
        s = purge[f"refresh_{when}"]
        lines.append(
            f"  {when:<7} {s['requests']:>8,} refreshes in {s['seconds']:>6.1f} s "
            f"{s['rps']:>7.1f}/s  p50 {_ms(s['p50_ms'])} ms  p99 {_ms(s['p99_ms'])} ms  "
            f"errors {s['errors']}"
        )
    return "\n".join(lines)


def write(report: dict, args) -> None:
    checks = targets(report)
    report["targets"] = [{"name": t.name, "passed": t.passed, "detail": t.detail} for t in checks]
    sizes = report["sizes"]
    print()
    print(
        f"authserver scale bench {report['started_at']}: small {sizes['small']}, "
        f"large {sizes['large']}"
    )
    print(f"{report['machine']['cores']}; {report['machine'].get('disk', '')}")
    if "database" in report:
        print("PostgreSQL: " + ", ".join(f"{k} {v}" for k, v in report["database"].items()))
    print(
        "load average at start {:.2f} {:.2f} {:.2f}, at end {:.2f} {:.2f} {:.2f}".format(
            *report["machine"]["load_average_start"], *report["machine"]["load_average_end"]
        )
    )
    print()
    print(seeding_table(report))
    if "costs" in report:
        print()
        print(
            f"server CPU per request (gunicorn + its PostgreSQL backends), medians of "
            f"{report['costs']['rounds']} alternating rounds of {report['costs']['seconds']:g} s"
        )
        print(costs_table(report["costs"]))
    if "storage" in report:
        print()
        print(storage_text(report["storage"]))
    if "purge" in report:
        print()
        print(purge_text(report["purge"]))
    print()
    for check in checks:
        print(check.line())
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {args.json}")
    if not args.no_chart:
        drawn = draw(report, Path(args.chart))
        print(f"wrote {args.chart}" if drawn else "no chart: matplotlib is not installed")


def draw(report: dict, path: Path) -> bool:
    """Three panels: cost ratio per endpoint, bytes per session as it refreshes, refresh p99
    around the purge."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cost_ax, bytes_ax, purge_ax) = plt.subplots(1, 3, figsize=(12, 3.8), dpi=100)
    costs = report.get("costs")
    if costs:
        top = max(r["concurrency"] for r in costs["rows"])
        rows = [r for r in costs["rows"] if r["concurrency"] == top]
        names = [r["scenario"] for r in rows]
        cost_ax.bar(names, [r["ratio"] for r in rows], color="tab:blue")
        cost_ax.axhline(COST_RATIO_LIMIT, color="tab:red", linestyle="--", label="target")
        cost_ax.axhline(1.0, color="grey", linewidth=0.8)
        cost_ax.set_ylabel("server CPU per request, large / small")
        cost_ax.set_title(
            f"cost at {report['sizes']['large']['users']:,} vs "
            f"{report['sizes']['small']['users']:,} users",
            fontsize=10,
        )
        cost_ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        cost_ax.set_ylim(0, max(1.3, max((r["ratio"] for r in rows), default=1) * 1.1))
        cost_ax.legend(fontsize=7)
    storage = report.get("storage")
    if storage:
        points = storage["checkpoints"]
        bytes_ax.plot(
            [p["refreshes_per_session"] for p in points],
            [p["bytes_per_session"] for p in points],
            marker="o",
        )
        bytes_ax.axhline(SESSION_BYTES_LIMIT, color="tab:red", linestyle="--", label="target")
        bytes_ax.set_xlabel("refreshes per session")
        bytes_ax.set_ylabel("database bytes per live session")
        bytes_ax.set_ylim(bottom=0)
        bytes_ax.set_title(
            f"{storage['growth']['per_million'] / 1e6:.1f} MB per million refreshes", fontsize=10
        )
        bytes_ax.legend(fontsize=7)
    purge = report.get("purge")
    if purge:
        labels = ["before", "during", "after"]
        purge_ax.bar(labels, [purge[f"refresh_{w}"]["p99_ms"] for w in labels], color="tab:green")
        purge_ax.set_ylabel("refresh p99, ms")
        purge_ax.set_title(
            f"purge: {purge['sessions_per_second']:,.0f} ended sessions/s", fontsize=10
        )
    fig.suptitle(f"authserver at scale ({report['started_at'][:10]})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True
