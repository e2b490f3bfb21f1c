"""The bench's targets: which this run can judge, and whether each was met."""

from __future__ import annotations


def checks(report: dict) -> dict:
    """The targets that this run can judge, each with its figures.

    A run whose captures dropped frames (more than 1% of those read) ran the pipeline at its
    capacity: its throughput is judged against the baselines. A run without drops was below
    capacity: its latency is judged against the bare model's batch-1 latency.
    """
    found = {}
    overall, baselines, counts = report["overall"], report.get("baselines") or {}, report["counts"]
    throughput = overall["throughput_labels_per_s"]
    growth = report["latency_growth"]
    saturated = counts["dropped"]["total"] > 0.01 * max(1, counts["frames_captured"])
    if growth["judged"]:
        found["latency flat (last-tenth p99 <= 1.2x first-tenth)"] = {
            "met": not growth["grew"], "detail": f"ratio {growth['ratio']:.2f}"}
    if saturated and "lecture_loop" in baselines:
        ratio = throughput / baselines["lecture_loop"]["frames_per_s"]
        found["saturated throughput >= 8x lecture loop"] = {"met": ratio >= 8, "detail": f"{ratio:.2f}x"}
    if saturated and "model_ceiling" in baselines:
        name, ceiling = fastest_admissible(baselines)
        ratio = throughput / ceiling
        found["saturated throughput >= 0.8x the fastest admissible backend's bare ceiling"] = {
            "met": ratio >= 0.8, "detail": f"{ratio:.2f}x of {ceiling:.0f} frames/s ({name})"}
    if not saturated and "model_ceiling" in baselines:
        limit = 2 * baselines["model_ceiling"]["batch1_latency_ms"] + 10
        p99 = overall["latency_ms"]["p99"]
        dropped = counts["dropped"]["total"]
        found["below capacity: no drops, p99 <= 2x batch-1 latency + 10 ms"] = {
            "met": p99 <= limit and dropped == 0, "detail": f"p99 {p99:.1f} ms vs {limit:.1f} ms, {dropped} dropped"}
    if "lstm_advance" in baselines:
        lstm = baselines["lstm_advance"]
        found[f"LSTM step >= 2x recomputing ({lstm['streams']} streams, hidden {lstm['hidden']} x {lstm['layers']})"] = {
            "met": lstm["staggered_over_batched"] >= 2 and lstm["staggered_over_per_stream"] >= 2,
            "detail": f"{lstm['staggered_over_per_stream']:.2f}x recomputing per stream, "
                      f"{lstm['staggered_over_batched']:.2f}x recomputing batched"}
    return found


def fastest_admissible(baselines: dict) -> tuple[str, float]:
    """The highest bare-model frames/s of a backend the worker may use: its own choice (`model_ceiling`),
    and with `--backends` every backend whose features pass its guard (cosine to float32; int8: labels)."""
    ceiling = baselines["model_ceiling"]
    candidates = [(ceiling["backend"] if "backend" in ceiling else "the worker's backend", ceiling["frames_per_s"])]
    for row in baselines.get("backends") or []:
        if row.get("admissible"):
            rates = [value["frames_per_s"] for key, value in row.items() if key.startswith("batch_")]
            candidates.append((row["backend"], max(rates)))
    return max(candidates, key=lambda candidate: candidate[1])
