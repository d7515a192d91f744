"""Evaluation reports: the terminal tables of the official tools, CSV and JSON files, a per-sequence J&F chart.

Several prediction folders ("methods") can be evaluated against the same ground truth; every table and file
then holds them side by side. Files are written atomically (hfan.files), so an interrupted run never leaves a
complete-looking half file.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from hfan.config import DAVIS_COLUMNS
from hfan.evaluation.davis import DavisResult, evaluate_davis
from hfan.files import atomic_path, write_json, write_text
from hfan.datasets.davis import read_sequence_names
from hfan.evaluation.vsod import VsodResult, evaluate_vsod

VSOD_COLUMNS = ["S-measure", "maxE", "meanE", "adpE", "maxF", "meanF", "adpF", "MAE"]


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Right-aligned columns, floats with 6 decimals, one space apart after a leading space: the layout of
    `pandas.DataFrame.to_string(index=False)` that the official DAVIS script prints."""
    cells = [[f"{value:.6f}" if isinstance(value, float) else str(value) for value in row] for row in rows]
    widths = [max(len(str(name)), *(len(row[i]) for row in cells)) for i, name in enumerate(header)]
    lines = [[str(name) for name in header], *cells]
    return "\n".join(" " + " ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in lines)


def davis_text(results: dict[str, DavisResult], title: str) -> str:
    """The two tables of davis2017-evaluation's `evaluation_method.py`; a Method column when several."""
    several = len(results) > 1
    global_rows = [([name] if several else []) + [result.summary()[key] for key in DAVIS_COLUMNS]
                   for name, result in results.items()]
    header = (["Method"] if several else []) + list(DAVIS_COLUMNS)
    sequence_header = ["Sequence"] + [f"{measure}{f'[{name}]' if several else ''}"
                                      for name in results for measure in ("J-Mean", "F-Mean")]
    sequence_rows = []
    for sequence in _sequence_union(results):
        row: list[object] = [sequence]
        for result in results.values():
            scores = {seq.name: seq for seq in result.sequences}.get(sequence)
            row += [scores.j_stats.mean, scores.f_stats.mean] if scores else ["-", "-"]
        sequence_rows.append(row)
    return (f"--------------------------- Global results for {title} ---------------------------\n"
            f"{format_table(header, global_rows)}\n\n"
            f"---------- Per sequence results for {title} ----------\n"
            f"{format_table(sequence_header, sequence_rows)}")


def vsod_text(results: dict[str, VsodResult], title: str) -> str:
    rows = [[name] + [result.summary()[key] for key in VSOD_COLUMNS] for name, result in results.items()]
    return (f"--------------------------- VSOD results for {title} ---------------------------\n"
            f"{format_table(['Method'] + VSOD_COLUMNS, rows)}")


def _sequence_union(results: dict[str, DavisResult] | dict[str, VsodResult]) -> list[str]:
    return list(dict.fromkeys(seq.name for result in results.values() for seq in result.sequences))


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[f"{value:.10f}" if isinstance(value, float) else value for value in row] for row in rows])
    write_text(path, buffer.getvalue())


def plot_davis(results: dict[str, DavisResult], path: Path) -> None:
    """Grouped bars of per-sequence J&F, one colour per method (matplotlib is imported only here)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sequences = _sequence_union(results)
    figure = Figure(figsize=(max(6.0, 0.45 * len(sequences) * max(1, len(results)) + 2), 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(results)
    for offset, (name, result) in enumerate(results.items()):
        scores = {seq.name: seq.jf_mean for seq in result.sequences}
        positions = [i + (offset - (len(results) - 1) / 2) * width for i, seq in enumerate(sequences)
                     if seq in scores]
        axes.bar(positions, [scores[seq] for seq in sequences if seq in scores], width,
                 label=f"{name} (J&F {result.summary()['J&F-Mean']:.3f})")
    axes.set_xticks(range(len(sequences)), sequences, rotation=60, ha="right")
    axes.set_ylim(0, 1.15)  # headroom for the legend above the bars
    axes.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axes.set_ylabel("J&F mean")
    axes.set_title("DAVIS-2016 protocol: J&F per sequence")
    axes.legend(loc="upper center", ncol=min(len(results), 3), fontsize="small")
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120)


def write_davis_files(results: dict[str, DavisResult], out_dir: Path, plot: bool = True) -> list[Path]:
    """davis_global.csv, davis_per_sequence.csv, davis_per_frame.csv, davis_summary.json and the chart."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / name for name in ("davis_global.csv", "davis_per_sequence.csv", "davis_per_frame.csv",
                                           "davis_summary.json")]
    write_csv(written[0], ["Method", *DAVIS_COLUMNS],
              [[name, *result.summary().values()] for name, result in results.items()])
    sequence_columns = ["J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay", "J&F-Mean"]
    write_csv(written[1], ["Method", "Sequence", "Frames", *sequence_columns],
              [[name, seq.name, len(seq.frames), *_sequence_summary(seq).values()]
               for name, result in results.items() for seq in result.sequences])
    write_csv(written[2], ["Method", "Sequence", "Frame", "J", "F"],
              [[name, seq.name, frame, float(j), float(f)] for name, result in results.items()
               for seq in result.sequences for frame, j, f in zip(seq.frames, seq.j, seq.f)])
    write_json(written[3], indent=2, sort_keys=False, data={
        "protocol": "DAVIS-2016: first and last frame of each sequence excluded; dataset = mean over sequences",
        "methods": {name: {"pred": str(result.pred_dir), "gt": str(result.gt_dir), "frames": result.n_frames,
                           "global": result.summary(),
                           "sequences": {seq.name: _sequence_summary(seq) for seq in result.sequences}}
                    for name, result in results.items()}})
    if plot:
        try:
            plot_davis(results, out_dir / "davis_jf_per_sequence.png")
            written.append(out_dir / "davis_jf_per_sequence.png")
        except ImportError:
            print("note: matplotlib is not installed (pip install 'hfan[plots]'); no chart written")
    return written


def _sequence_summary(sequence) -> dict[str, float]:
    j, f = sequence.j_stats, sequence.f_stats
    return {"J-Mean": j.mean, "J-Recall": j.recall, "J-Decay": j.decay, "F-Mean": f.mean, "F-Recall": f.recall,
            "F-Decay": f.decay, "J&F-Mean": sequence.jf_mean}


def write_vsod_files(results: dict[str, VsodResult], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / name for name in ("vsod_global.csv", "vsod_per_sequence.csv", "vsod_summary.json")]
    write_csv(written[0], ["Method", *VSOD_COLUMNS],
              [[name, *result.summary().values()] for name, result in results.items()])
    write_csv(written[1], ["Method", "Sequence", "Frames", *VSOD_COLUMNS],
              [[name, seq.name, len(seq.frames), *seq.summary().values()]
               for name, result in results.items() for seq in result.sequences])
    write_json(written[2], indent=2, sort_keys=False, data={
        "protocol": "VSOD toolbox: first and last frame skipped; frame means per sequence, then sequence means",
        "methods": {name: {"pred": str(result.pred_dir), "gt": str(result.gt_dir), "frames": result.n_frames,
                           "global": result.summary(),
                           "sequences": {seq.name: seq.summary() for seq in result.sequences}}
                    for name, result in results.items()}})
    return written


def method_names(pred_dirs: Sequence[str | Path], names: Sequence[str] | None) -> list[str]:
    """Display names: `names` when given, else the prediction folder names (which must then differ)."""
    if names:
        if len(names) != len(pred_dirs):
            raise ValueError(f"--names gives {len(names)} name(s) for {len(pred_dirs)} prediction folder(s)")
        chosen = list(names)
    else:
        chosen = [Path(pred_dir).resolve().name for pred_dir in pred_dirs]
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"prediction folders need distinct names, got {chosen}: pass --names")
    return chosen


def default_out_dir(pred_dirs: Sequence[str | Path]) -> Path:
    """`<first prediction folder>-eval`, next to it (never inside: it would look like a sequence)."""
    first = Path(pred_dirs[0]).resolve()
    return first.with_name(first.name + "-eval")


def report(kind: str, pred_dirs: Sequence[str | Path], gt_dir: str | Path, out_dir: str | Path | None = None,
           names: Sequence[str] | None = None, sequences: Sequence[str] | None = None,
           only_present: bool = False, workers: int | None = None, plot: bool = True,
           progress: bool = True) -> str:
    """Evaluate each prediction folder (`kind` "davis" or "vsod"), write the files, return the tables.

    `sequences`: names, or text files listing them (DAVIS ImageSets work). See `evaluate_davis` for the rest.
    """
    chosen = method_names(pred_dirs, names)
    selected = read_sequence_names(sequences)
    evaluate = {"davis": evaluate_davis, "vsod": evaluate_vsod}[kind]
    results = {name: evaluate(pred_dir, gt_dir, selected, only_present, workers, progress)
               for name, pred_dir in zip(chosen, pred_dirs)}
    out_dir = Path(out_dir) if out_dir else default_out_dir(pred_dirs)
    title = Path(gt_dir).resolve().name
    if kind == "davis":
        text, written = davis_text(results, title), write_davis_files(results, out_dir, plot)
    else:
        text, written = vsod_text(results, title), write_vsod_files(results, out_dir)
    counts = "; ".join(f"{name}: {len(result.sequences)} sequences, {result.n_frames} frames"
                       for name, result in results.items())
    return (f"{text}\n\nscored ({counts}; the first and last frame of each sequence are not scored)\n"
            f"written: {', '.join(str(path) for path in written)}")
