"""The README chart: throughput and p99 latency against concurrency, one line per scenario."""

from __future__ import annotations

from pathlib import Path


def draw(report: dict, path: Path) -> bool:
    """Draw `report` (bench/run.py's JSON) to `path` (PNG); False without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios: dict[str, list[dict]] = {}
    for row in report["rows"]:
        scenarios.setdefault(row["scenario"], []).append(row)
    fig, (rate_ax, p99_ax) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    for name, rows in scenarios.items():
        rows.sort(key=lambda r: r["concurrency"])
        levels = [r["concurrency"] for r in rows]
        rate_ax.plot(levels, [r["rps"] for r in rows], marker="o", label=name)
        p99_ax.plot(levels, [r["p99_ms"] for r in rows], marker="o", label=name)
    levels = sorted({r["concurrency"] for r in report["rows"]})
    for ax, title, unit in ((rate_ax, "throughput", "requests/s"), (p99_ax, "p99 latency", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_xlabel("concurrent virtual users")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    rate_ax.legend(fontsize=7, loc="best")
    server = report["server"]
    fig.suptitle(
        f"authserver, gunicorn {server['worker_class']} x{server['workers']} on one core "
        f"({report['started_at'][:10]})",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True
